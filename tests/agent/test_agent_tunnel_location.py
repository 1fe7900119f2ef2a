"""Where am I: decided by a pinned TLS handshake with the gateway, round the tunnel.

Over a fake network (which addresses answer, and with which certificate), then over real
sockets on this machine: a TLS server with the school's CA is "on site", the same name
answered with another CA (a home network pretending) is "off site".
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.client import in_words
from agent.tunnel.location import Bypass, BypassError, SystemNetwork, gateway_host_port, locate
from tests.conftest import _self_signed

URL = "https://gateway.school.example:8081"


class FakeNetwork:
    """Each address answers with: "school" (the pinned CA), "other" (another CA), or "none"."""

    def __init__(self, names: dict[str, list[str]], answers: dict[str, str]) -> None:
        self.names, self.answers = names, answers
        self.tried: list[tuple[str, int, str, Bypass | None]] = []

    def resolve(self, host: str, port: int) -> list[str]:
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.names[host]

    def handshake(
        self,
        address: str,
        port: int,
        server_name: str,
        context: ssl.SSLContext,
        bypass: Bypass | None,
    ) -> None:
        self.tried.append((address, port, server_name, bypass))
        answer = self.answers.get(address, "none")
        if answer == "none":
            raise TimeoutError("timed out")
        if answer == "other":
            raise ssl.SSLCertVerificationError("certificate verify failed")
        if answer == "unreachable":
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        if answer == "nomark":
            raise BypassError("can't keep the probe off the tunnel: Operation not permitted")


MARK = Bypass("mark", 51820)


def where(network: FakeNetwork, bypass: Bypass | None = MARK, tunnel_up: bool = False) -> str:
    return locate(URL, ssl.create_default_context, bypass, tunnel_up, network).where


def test_on_site_when_the_gateway_answers_with_the_schools_certificate() -> None:
    network = FakeNetwork({"gateway.school.example": ["10.0.0.1"]}, {"10.0.0.1": "school"})
    place = locate(URL, ssl.create_default_context, MARK, True, network)
    assert place.where == "on_site" and "10.0.0.1:8081" in place.reason
    # Round the tunnel, to the name in the enrolment URL, on its port:
    assert network.tried == [("10.0.0.1", 8081, "gateway.school.example", MARK)]


def test_off_site_when_nothing_answers_or_the_name_does_not_resolve() -> None:
    assert where(FakeNetwork({"gateway.school.example": ["10.0.0.1"]}, {})) == "off_site"
    assert where(FakeNetwork({}, {})) == "off_site"


def test_reasons_are_in_words_not_python_error_numbers() -> None:
    """What `tunnel status` and the reports say is read by the IT provider: no '[Errno 101]'."""
    network = FakeNetwork({"gateway.school.example": ["10.0.0.1"]}, {"10.0.0.1": "unreachable"})
    place = locate(URL, ssl.create_default_context, MARK, False, network)
    assert place.reason == "the gateway didn't answer: 10.0.0.1: Network is unreachable"
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/state/ca.pem")
    assert in_words(missing) == "No such file or directory: /state/ca.pem"
    assert in_words(TimeoutError("timed out")) == "timed out"


def test_a_network_that_answers_the_name_with_another_certificate_is_not_school() -> None:
    """A home or hotel network can resolve the gateway's name to its own box: no matter."""
    network = FakeNetwork({"gateway.school.example": ["192.168.1.1"]}, {"192.168.1.1": "other"})
    place = locate(URL, ssl.create_default_context, MARK, False, network)
    assert place.where == "off_site" and "not from the school's CA" in place.reason


def test_every_address_is_tried_until_one_is_the_gateway() -> None:
    names = {"gateway.school.example": ["2001:db8::1", "10.0.0.1"]}
    network = FakeNetwork(names, {"10.0.0.1": "school"})
    assert where(network) == "on_site" and len(network.tried) == 2


def test_unknown_when_the_probe_cannot_go_round_the_tunnel() -> None:
    network = FakeNetwork({"gateway.school.example": ["10.0.0.1"]}, {"10.0.0.1": "school"})
    assert where(network, bypass=None, tunnel_up=True) == "unknown"  # Windows, tunnel up
    assert network.tried == []  # not tried through the tunnel, which would always answer
    assert where(network, bypass=None, tunnel_up=False) == "on_site"  # no tunnel: direct
    refused = FakeNetwork({"gateway.school.example": ["10.0.0.1"]}, {"10.0.0.1": "nomark"})
    assert where(refused) == "unknown"  # SO_MARK without root: not a reason to say off site


def test_a_ca_file_that_cannot_be_read_is_unknown_not_off_site(tmp_path: Path) -> None:
    network = FakeNetwork({"gateway.school.example": ["10.0.0.1"]}, {"10.0.0.1": "school"})
    missing = str(tmp_path / "ca.pem")
    place = locate(URL, lambda: ssl.create_default_context(cafile=missing), MARK, False, network)
    assert place.where == "unknown" and "CA file" in place.reason and network.tried == []


def test_the_gateway_url_gives_host_and_port() -> None:
    assert gateway_host_port("https://gw.example:8081/") == ("gw.example", 8081)
    assert gateway_host_port("https://gw.example") == ("gw.example", 443)


def test_bypass_socket_options() -> None:
    assert MARK.option() == (socket.SOL_SOCKET, 36, 51820)
    assert Bypass("bound_if", 4).option() == (socket.IPPROTO_IP, 25, 4)
    assert Bypass("unicast_if", 4).option() == (socket.IPPROTO_IP, 31, b"\x00\x00\x00\x04")


# -- real sockets ------------------------------------------------------------------------


def _ca(tmp: Path, name: str) -> tuple[Path, Path]:
    """A certificate for localhost that is its own CA (as the gateway's, in miniature)."""
    folder = tmp / name
    folder.mkdir()
    return _self_signed(folder)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS listener on localhost with its own CA; yields (port, CA file)."""
    cert, key = _ca(tmp_path, "gateway")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], cert
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_real_sockets_pinned_ca_on_site_other_ca_off_site(
    tls_server: tuple[int, Path], tmp_path: Path
) -> None:
    port, school_ca = tls_server
    url = f"https://localhost:{port}"

    def pinned(ca: Path) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(ca))

    network = SystemNetwork()
    assert locate(url, lambda: pinned(school_ca), None, False, network).where == "on_site"
    other_ca, _ = _ca(tmp_path, "someone-else")
    off = locate(url, lambda: pinned(other_ca), None, False, network)
    assert off.where == "off_site" and "not from the school's CA" in off.reason
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    url = f"https://localhost:{closed_port}"
    assert locate(url, lambda: pinned(school_ca), None, False, network).where == "off_site"

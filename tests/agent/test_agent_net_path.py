"""The agent's choice of network path (PAC, proxy settings, direct) and its tries, on loopback."""

from __future__ import annotations

import base64
import http.server
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.check_suite import CheckCase, Expect, Outcome, classify
from agent.net_path import ProxyFinder, Route, _pac_route, fetch
from tests.conftest import free_port

PAC = """
function FindProxyForURL(url, host) {
  if (dnsDomainIs(host, ".school.test") || isPlainHostName(host)) return "DIRECT";
  if (shExpMatch(host, "*.socks.test")) return "SOCKS5 10.0.0.1:1080";
  return "PROXY 10.0.0.9:3128; DIRECT";
}
"""


def test_environment_proxies_and_no_proxy() -> None:
    env = {
        "HTTP_PROXY": "http://10.0.0.9:3128",
        "https_proxy": "10.0.0.9:3129",
        "no_proxy": "intranet.test, .school.test",
    }
    finder = ProxyFinder(environ=env)
    assert finder.source == "proxy settings"
    assert finder.route("http://a.test/") == Route("http://10.0.0.9:3128")
    assert finder.route("https://a.test/") == Route("http://10.0.0.9:3129")
    assert finder.route("https://intranet.test/") == Route(None)
    assert finder.route("https://www.school.test/") == Route(None)
    assert ProxyFinder(environ=env, direct=True).route("http://a.test/") == Route(None)


def test_a_pac_file_decides_per_url(tmp_path: Path) -> None:
    path = tmp_path / "proxy.pac"
    path.write_text(PAC)
    finder = ProxyFinder(pac=str(path), environ={"HTTP_PROXY": "http://ignored:1"})
    assert finder.source == f"PAC {path}"
    assert finder.route("http://adult.test/") == Route("http://10.0.0.9:3128")
    assert finder.route("http://www.school.test/") == Route(None)
    assert finder.route("http://intranet/") == Route(None)
    socks = finder.route("http://x.socks.test/")
    assert socks.proxy is None and socks.unsupported and "SOCKS5" in socks.unsupported


def test_pac_answers() -> None:
    assert _pac_route("DIRECT") == Route(None)
    assert _pac_route("") == Route(None)
    assert _pac_route("PROXY gw.school.lan:8080; DIRECT") == Route("http://gw.school.lan:8080")
    assert _pac_route("HTTPS gw:443").unsupported


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: a time-out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def test_timeouts_and_refusals_are_errors_not_results(silent_server: int) -> None:
    case = CheckCase("c", "http://x/", "adult", frozenset(), Expect.BLOCKED)
    direct = ProxyFinder(direct=True)
    context = ssl.create_default_context()
    seen, route = fetch(f"http://127.0.0.1:{silent_server}/", direct, context, timeout=0.5)
    assert route == "direct" and seen.error == "timed out after 0.5 s"
    assert classify(case, seen) is Outcome.ERROR
    closed = free_port()
    seen, _ = fetch(f"http://127.0.0.1:{closed}/", direct, context, timeout=2)
    assert seen.error and "ConnectionRefusedError" in seen.error
    assert classify(case, seen) is Outcome.ERROR
    via = ProxyFinder(environ={"HTTP_PROXY": f"http://127.0.0.1:{closed}"})
    seen, route = fetch("http://adult.test/", via, context, timeout=2)
    assert route == f"via http://127.0.0.1:{closed}" and seen.error


class _SignInProxy(http.server.BaseHTTPRequestHandler):
    """A proxy that wants Basic sign-in as teacher:pw, and answers plain-http requests itself."""

    def _answer(self) -> None:
        wanted = "Basic " + base64.b64encode(b"teacher:pw").decode()
        if self.headers.get("Proxy-Authorization") != wanted:
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="proxy"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = f"proxied {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_CONNECT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def sign_in_proxy() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SignInProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_proxy_sign_in_is_an_error_unless_the_setting_has_it(sign_in_proxy: int) -> None:
    context = ssl.create_default_context()
    case = CheckCase("c", "http://adult.test/", "adult", frozenset(), Expect.BLOCKED)
    bare = ProxyFinder(
        environ={
            "HTTP_PROXY": f"http://127.0.0.1:{sign_in_proxy}",
            "HTTPS_PROXY": f"http://127.0.0.1:{sign_in_proxy}",
        }
    )
    for url in ("http://adult.test/", "https://adult.test/"):
        seen, _ = fetch(url, bare, context, timeout=5)
        assert seen.status == 407 and seen.error and "sign-in" in seen.error
        assert classify(case, seen) is Outcome.ERROR  # never a pass or a fail
    signed = ProxyFinder(environ={"HTTP_PROXY": f"http://teacher:pw@127.0.0.1:{sign_in_proxy}"})
    seen, route = fetch("http://adult.test/page", signed, context, timeout=5)
    assert (seen.status, seen.error) == (200, None)
    assert route == f"via http://127.0.0.1:{sign_in_proxy}"  # no password in the evidence

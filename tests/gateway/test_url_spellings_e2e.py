"""Spellings of a listed URL through a real mitmdump, sent with raw sockets as a pupil
would: over plain HTTP (absolute-form) and inside a decrypted tunnel (origin-form).

Every spelling some common server reads as the illegal-tier entry's path is blocked (403)
or refused (400, for a '..' or a '#'); the upstream's page never comes back. Unlisted
paths on the same host, near misses included, still arrive.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.conftest import Gateway, Upstream, copy_policy, start_mitmdump

HOST = "illegal.test"  # tests/data/policy/lists/illegal: /exact.html and /prefix/
SPELLINGS = [
    "/prefix/a.jpg",
    "/prefix",
    "//prefix//a.jpg",
    "/./prefix/a.jpg",
    "/x/../prefix/a.jpg",
    "/x/%2e%2E/prefix/a.jpg",
    "/x/..;/prefix/a.jpg",
    "/x%2F..%2Fprefix/a.jpg",
    "/x\\..\\prefix/a.jpg",
    "/%70refix/a.jpg",
    "/prefix;jsessionid=1/a.jpg",
    "/PREFIX/a.jpg",
    "/Prefix%2Fa.jpg",
    "/prefix\\a.jpg",
    "/prefix/a.jpg#frag",
    "/x#/../prefix/a.jpg",
    "/EXACT.html",
    "/exact.html/",
    "/exact%2Ehtml;v=1?q=2",
    # Read by a chain of servers (decoding twice, then ';' stripped) or by Windows (IIS):
    "/%2570refix/a.jpg",
    "/prefix%252fa.jpg",
    "/x/%25252e%25252e/prefix/a.jpg",
    "/x/..%3B/prefix/a.jpg",
    "/.%3B/prefix/a.jpg",
    "/prefix%3B/a.jpg",
    "/prefix./a.jpg",
    "/prefix%00/a.jpg",
    "/exact.html.",
    "/exact.html%20",
    "/exact.html::$DATA",
    "/exact.html%3Fx",
]
UNLISTED = ["/", "/other.html", "/prefixx", "/pre/fix", "/exact.htm"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("spellings")
    gw = start_mitmdump(copy_policy(tmp), tmp / "var", upstream)
    yield gw
    gw.stop()


def _read_all(sock: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def plain(gateway: Gateway, target: str, host_header: str = HOST) -> bytes:
    """GET http://HOST<target> through the proxy, with the Host header given."""
    request = f"GET http://{HOST}{target} HTTP/1.1\r\nHost: {host_header}\r\n"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(request.encode() + b"Connection: close\r\n\r\n")
        return _read_all(sock)


def tunnelled(gateway: Gateway, target: str, host_header: str = HOST) -> bytes:
    """CONNECT HOST:443, TLS trusting the school's CA, then GET <target> as written."""
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    sock.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    assert _status(answer) == 200, answer
    context = ssl.create_default_context(cafile=str(gateway.ca))
    with context.wrap_socket(sock, server_hostname=HOST) as tls:
        request = f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"
        tls.sendall(request.encode())
        return _read_all(tls)


SENDERS = {"http": plain, "https": tunnelled}


@pytest.mark.parametrize("scheme", SENDERS)
@pytest.mark.parametrize("target", SPELLINGS)
def test_no_spelling_of_an_illegal_url_gets_through(
    gateway: Gateway, scheme: str, target: str
) -> None:
    response = SENDERS[scheme](gateway, target)
    assert b"X-Upstream: local" not in response
    assert _status(response) in (400, 403), response[:200]


@pytest.mark.parametrize("scheme", SENDERS)
@pytest.mark.parametrize("junk", [":#", ":?", "/", ":80/x?"])
def test_a_host_header_cannot_hide_the_path(gateway: Gateway, scheme: str, junk: str) -> None:
    """'Host: name:#' once made the real path a fragment, and only '/' was judged."""
    response = SENDERS[scheme](gateway, "/prefix/a.jpg", HOST + junk)
    assert b"X-Upstream: local" not in response
    assert _status(response) in (400, 403)


@pytest.mark.parametrize("scheme", SENDERS)
@pytest.mark.parametrize("target", UNLISTED)
def test_unlisted_paths_on_the_host_still_arrive(
    gateway: Gateway, scheme: str, target: str
) -> None:
    response = SENDERS[scheme](gateway, target)
    assert _status(response) == 200 and b"X-Upstream: local" in response

"""No name a request carries takes it round the filter: a table of request variants
through a real mitmdump, sent with raw sockets as a pupil would.

Every upstream name the gateway may connect to has a marker server of its own
(tests/support/marker_upstream.py), so a response says which address the gateway really
reached. Whatever a variant writes in its request line, Host header, CONNECT target, SNI or
HTTP/2 `:authority`, the marker of a blocked destination must never come back; the
allowed controls must still get their site's page.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import pytest

from tests.conftest import (
    Gateway,
    Upstream,
    _self_signed,
    access_log,
    copy_policy,
    start_mitmdump,
)
from tests.support.marker_upstream import MarkerServer

# The addresses the gateway may connect to, as a client may write them, by marker name.
BLOCKED = {
    "chatter": ["www.chatter.test", "chatter.test", "WWW.CHATTER.TEST"],  # social: blocked
    "games": ["games.test"],  # games: blocked for the default (early years) profile
    "bareip": [
        "192.0.2.7",
        "3221225991",
        "0xc0.0.2.7",
        "0300.0.2.7",
        "192.0.519",
        "::ffff:192.0.2.7",
    ],
    "illegal": ["illegal.test"],
}
ALLOWED = {"plain": ["plain.test"], "other": ["other.test"]}
BLOCKED_MARKERS = [f"MARKER:{m}" for m in BLOCKED]
ALLOWED_SPELLINGS = ["plain.test", "PLAIN.TEST", "plain.test:80", "plain.test.", "plain.test:443"]
# Host headers that are not a valid host[:port]: each would turn the path into something else.
MALFORMED_HOSTS = [
    "plain.test:#",
    "plain.test:?",
    "plain.test/",
    "plain.test/x?",
    "plain.test@www.chatter.test",
    "plain.test www.chatter.test",
    "plain.test,www.chatter.test",
    "plain.test:80:80",
    "plain.test:8o",
    "[::1",
    "plain.test\\x",
]


@dataclass
class Lab:
    gateway: Gateway
    servers: dict[str, MarkerServer]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("names")
    cert, key = _self_signed(tmp)
    servers = {m: MarkerServer(m, cert, key) for m in (*BLOCKED, *ALLOWED)}
    mapping = ",".join(
        f"{name}={'127.0.0.1'}:{servers[m].port}"
        for m, names in (*BLOCKED.items(), *ALLOWED.items())
        for name in {n.lower() for n in names}
    )
    gw = start_mitmdump(
        copy_policy(tmp),
        tmp / "var",
        upstream,
        extra=["--set", f"local_upstream_hosts={mapping}"],
    )
    yield Lab(gw, servers)
    gw.stop()
    for server in servers.values():
        server.close()


# -- raw clients ---------------------------------------------------------------------------


def _read_all(sock: socket.socket, wait: float = 8) -> bytes:
    data = b""
    sock.settimeout(wait)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, OSError, ssl.SSLError):
        pass
    return data


def _connect(gw: Gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=8)


def plain(gw: Gateway, head: str) -> bytes:
    """One HTTP/1 request written by hand to the proxy port."""
    with _connect(gw) as sock:
        sock.sendall(head.encode("utf-8", "surrogateescape"))
        return _read_all(sock)


def _tunnel(gw: Gateway, target: str) -> tuple[socket.socket, bytes]:
    sock = _connect(gw)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return sock, answer


def _tls(sock: socket.socket, sni: str | None, alpn: list[str] | None = None) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a device that trusts the gateway's CA, in effect
    if alpn:
        context.set_alpn_protocols(alpn)
    return context.wrap_socket(sock, server_hostname=sni)


def tunnel(gw: Gateway, target: str, head: str, tls: bool = False, sni: str | None = None) -> bytes:
    """CONNECT to `target`, then (optionally TLS with `sni`) one HTTP/1 request."""
    sock, answer = _tunnel(gw, target)
    with sock:
        if not answer.startswith(b"HTTP/1.1 200"):
            return answer
        try:
            stream: socket.socket = _tls(sock, sni) if tls else sock
            stream.sendall(head.encode("utf-8", "surrogateescape"))
            return _read_all(stream)
        except (OSError, ssl.SSLError) as exc:
            return f"TLS refused: {exc}".encode()


def tunnel_raw(gw: Gateway, target: str, *chunks: bytes, tls: bool = False) -> bytes:
    """CONNECT to `target`, optionally TLS (no SNI), then `chunks`, a moment apart: bytes
    that look like HTTP to one reader and not to another."""
    sock, answer = _tunnel(gw, target)
    with sock:
        if not answer.startswith(b"HTTP/1.1 200"):
            return answer
        try:
            stream: socket.socket = _tls(sock, None) if tls else sock
            for i, chunk in enumerate(chunks):
                if i:
                    time.sleep(0.3)
                stream.sendall(chunk)
            # The gateway may wait for the rest of a request head that never comes; an
            # upstream on loopback would have answered well within this.
            return _read_all(stream, wait=1)
        except (OSError, ssl.SSLError) as exc:
            return f"refused: {exc}".encode()


def tunnel_odd_tls(gw: Gateway, target: str, version_byte: int = 0x04) -> bytes:
    """CONNECT, then a real TLS handshake whose first record says version 3.`version_byte`
    (OpenSSL servers accept it): TLS to the server, not to every reader of the bytes."""
    sock, answer = _tunnel(gw, target)
    out = b""
    with sock:
        if not answer.startswith(b"HTTP/1.1 200"):
            return answer
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing)
        sock.settimeout(1)  # as in tunnel_raw: the gateway may wait for more
        first = True
        try:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    data = outgoing.read()
                    if first and data:
                        data = data[:2] + bytes([version_byte]) + data[3:]
                        first = False
                    sock.sendall(data)
                    got = sock.recv(65536)
                    if not got:
                        return b"closed in the handshake"
                    incoming.write(got)
            tls.write(req("/", "plain.test").encode())
            sock.sendall(outgoing.read())
            while got := sock.recv(65536):
                incoming.write(got)
                try:
                    out += tls.read(65536)
                except ssl.SSLWantReadError:
                    continue
        except (OSError, ssl.SSLError) as exc:
            return out or f"refused: {exc}".encode()
        return out


def h2_tunnel(
    gw: Gateway,
    target: str,
    sni: str | None,
    authority: str,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """CONNECT, TLS with ALPN h2, then one HTTP/2 GET with the given `:authority`."""
    sock, answer = _tunnel(gw, target)
    with sock:
        if not answer.startswith(b"HTTP/1.1 200"):
            return answer
        try:
            stream = _tls(sock, sni, ["h2"])
        except (OSError, ssl.SSLError) as exc:
            return f"TLS refused: {exc}".encode()
        with stream:
            if stream.selected_alpn_protocol() != "h2":
                return b"no h2"
            config = h2.config.H2Configuration(
                client_side=True, header_encoding="utf-8", validate_outbound_headers=False
            )
            conn = h2.connection.H2Connection(config)
            conn.initiate_connection()
            headers = [(":method", "GET"), (":scheme", "https"), (":authority", authority)]
            conn.send_headers(1, [*headers, (":path", "/h2"), *extra], end_stream=True)
            stream.sendall(conn.data_to_send())
            out, stream_open = b"", True
            stream.settimeout(8)
            while stream_open:
                try:
                    data = stream.recv(65536)
                except (TimeoutError, OSError, ssl.SSLError):
                    break
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        out += f"HTTP/2 {dict(event.headers)[':status']}\r\n\r\n".encode()
                    elif isinstance(event, h2.events.DataReceived):
                        out += event.data
                        conn.acknowledge_received_data(len(event.data), event.stream_id)
                    elif isinstance(
                        event,
                        (
                            h2.events.StreamEnded,
                            h2.events.StreamReset,
                            h2.events.ConnectionTerminated,
                        ),
                    ):
                        stream_open = False
                stream.sendall(conn.data_to_send())
            return out


def req(target: str, host: str | None, version: str = "1.1", extra: str = "") -> str:
    lines = [f"GET {target} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.append("Connection: close")
    return "\r\n".join(lines) + "\r\n" + extra + "\r\n"


WS = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)

# -- the table -------------------------------------------------------------------------------

Send = Callable[[Gateway], bytes]


def _url_host(name: str) -> str:
    return f"[{name}]" if ":" in name else name


def _variants() -> Iterator[tuple[str, Send]]:
    """(id, how to send it) for requests whose real destination is blocked."""
    names = [(m, n) for m, spellings in BLOCKED.items() for n in spellings]
    for marker, name in names:
        url_host = _url_host(name)
        path = "/prefix/a" if marker == "illegal" else "/"
        for host in ("plain.test", "SCHOOLGATE.LOCAL", None):
            for version in ("1.0", "1.1"):
                yield (
                    f"absolute {name} host={host} http/{version}",
                    lambda gw, u=url_host, h=host, v=version, p=path: plain(
                        gw, req(f"http://{u}{p}", h, v)
                    ),
                )
        yield (
            f"connect {name}:80 plain host=plain.test",
            lambda gw, u=url_host, p=path: tunnel(gw, f"{u}:80", req(p, "plain.test")),
        )
        for sni in (None, "plain.test", "schoolgate.local"):
            yield (
                f"connect {name}:443 tls sni={sni} host=plain.test",
                lambda gw, u=url_host, s=sni, p=path: tunnel(
                    gw, f"{u}:443", req(p, "plain.test"), tls=True, sni=s
                ),
            )
            yield (
                f"connect {name}:443 h2 sni={sni} :authority=plain.test",
                lambda gw, u=url_host, s=sni: h2_tunnel(gw, f"{u}:443", s, "plain.test"),
            )
        yield (
            f"websocket absolute {name} host=plain.test",
            lambda gw, u=url_host: plain(gw, req(f"http://{u}/ws", "plain.test", extra=WS)),
        )
        yield (
            f"websocket connect {name}:443 sni=plain.test",
            lambda gw, u=url_host: tunnel(
                gw, f"{u}:443", req("/ws", "plain.test", extra=WS), tls=True, sni="plain.test"
            ),
        )
    # Bytes that mitmproxy takes for raw TCP but a server reads as HTTP or TLS.
    get = req("/", "plain.test").encode()
    for target in ("www.chatter.test:80", "www.chatter.test:443", "192.0.2.7:22", "games.test:443"):
        yield (
            f"connect {target} crlf-then-get",
            lambda gw, t=target: tunnel_raw(gw, t, b"\r\n" + get),
        )
        yield (
            f"connect {target} get-split",
            lambda gw, t=target: tunnel_raw(gw, t, get[:5], get[5:]),
        )
        yield (
            f"connect {target} ssh-banner",
            lambda gw, t=target: tunnel_raw(gw, t, b"SSH-2.0-OpenSSH_9.6\r\n"),
        )
    for target in ("www.chatter.test:443", "illegal.test:443", "192.0.2.7:443"):
        for byte in (0x04, 0x05):
            yield (
                f"connect {target} tls record 3.{byte}",
                lambda gw, t=target, b=byte: tunnel_odd_tls(gw, t, b),
            )
        yield (
            f"connect {target} decrypted then crlf-then-get",
            lambda gw, t=target: tunnel_raw(gw, t, b"\r\n" + get, tls=True),
        )
    for bad in MALFORMED_HOSTS:
        yield (
            f"connect chatter:443 tls host={bad!r}",
            lambda gw, b=bad: tunnel(gw, "www.chatter.test:443", req("/", b), tls=True),
        )
    # The illegal tier's prefix, with a Host header that would make the path a fragment.
    for bad in ("illegal.test:#", "illegal.test:?", "illegal.test/"):
        yield (
            f"illegal https host={bad!r}",
            lambda gw, b=bad: tunnel(
                gw, "illegal.test:443", req("/prefix/a", b), tls=True, sni="illegal.test"
            ),
        )
    # Two Host headers: one allowed, one blocked, either order.
    for first, second in (("plain.test", "www.chatter.test"), ("www.chatter.test", "plain.test")):
        yield (
            f"two hosts {first},{second}",
            lambda gw, a=first, b=second: plain(gw, req(f"http://{a}/", a, extra=f"Host: {b}\r\n")),
        )


VARIANTS = list(_variants())


@pytest.mark.parametrize("send", [v[1] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_no_variant_reaches_a_blocked_destination(lab: Lab, send: Send) -> None:
    answer = send(lab.gateway).decode("utf-8", "replace")
    for marker in BLOCKED_MARKERS:
        assert marker not in answer, answer[:400]
    assert not answer.startswith(("HTTP/1.1 2", "HTTP/1.0 2", "HTTP/2 2")), answer[:400]


def _refused() -> Iterator[tuple[str, Send]]:
    """Requests that connect to an allowed site but name a blocked one or a different
    site elsewhere: refused, not served."""
    yield (
        "absolute plain host=chatter",
        lambda gw: plain(gw, req("http://plain.test/", "www.chatter.test")),
    )
    yield "absolute plain host=other", lambda gw: plain(gw, req("http://plain.test/", "other.test"))
    yield (
        "absolute plain host=portal",
        lambda gw: plain(gw, req("http://plain.test/", "schoolgate.local")),
    )
    yield (
        "connect plain:80 absolute chatter",
        lambda gw: tunnel(gw, "plain.test:80", req("http://www.chatter.test/", "plain.test")),
    )
    yield (
        "connect plain:443 sni=chatter",
        lambda gw: tunnel(
            gw, "plain.test:443", req("/", "plain.test"), tls=True, sni="www.chatter.test"
        ),
    )
    yield (
        "connect plain:443 host=chatter",
        lambda gw: tunnel(
            gw, "plain.test:443", req("/", "www.chatter.test"), tls=True, sni="plain.test"
        ),
    )
    yield (
        "connect plain:443 h2 :authority=chatter",
        lambda gw: h2_tunnel(gw, "plain.test:443", "plain.test", "www.chatter.test"),
    )
    yield (
        "connect plain:443 h2 host header=chatter",
        lambda gw: h2_tunnel(
            gw, "plain.test:443", "plain.test", "plain.test", (("host", "www.chatter.test"),)
        ),
    )
    # An allowed destination, and bytes mitmproxy alone would relay undecided: a Host header
    # naming a blocked site must still be decided (a shared front end routes by it).
    fronted = req("/", "www.chatter.test").encode()
    for target, tls in (("plain.test:80", False), ("plain.test:443", True)):
        yield (
            f"connect {target} crlf-then-get host=chatter",
            lambda gw, t=target, x=tls: tunnel_raw(gw, t, b"\r\n" + fronted, tls=x),
        )
        yield (
            f"connect {target} get-split host=chatter",
            lambda gw, t=target, x=tls: tunnel_raw(gw, t, fronted[:5], fronted[5:], tls=x),
        )
        yield (
            f"connect {target} cr-alone-then-get host=chatter",
            lambda gw, t=target, x=tls: tunnel_raw(gw, t, b"\r", fronted, tls=x),
        )
    # Names that resolve to the gateway itself: never an upstream connection there.
    for url in ("http://localhost/", "http://LOCALHOST./metrics", "http://localhost:22/"):
        yield f"absolute {url}", lambda gw, u=url: plain(gw, req(u, None))
    yield "connect localhost:22", lambda gw: tunnel_raw(gw, "localhost:22", b"SSH-2.0-x\r\n")
    yield (
        "absolute plain folded host",
        lambda gw: plain(
            gw, req("http://plain.test/", "plain.test", extra="X: y\r\n Host: www.chatter.test\r\n")
        ),
    )
    for sni in ("xn--zz.chatter.test", "xn--zz.plain.test"):  # names mitmproxy can't read
        yield (
            f"connect plain:443 sni={sni}",
            lambda gw, s=sni: tunnel(gw, "plain.test:443", req("/", "plain.test"), tls=True, sni=s),
        )
    for bad in MALFORMED_HOSTS:
        yield (
            f"absolute plain host={bad!r}",
            lambda gw, b=bad: plain(gw, req("http://plain.test/", b)),
        )


REFUSED = list(_refused())


@pytest.mark.parametrize("send", [v[1] for v in REFUSED], ids=[v[0] for v in REFUSED])
def test_names_of_another_site_are_refused(lab: Lab, send: Send) -> None:
    answer = send(lab.gateway).decode("utf-8", "replace")
    assert "MARKER:" not in answer, answer[:400]
    for marker in BLOCKED_MARKERS:
        assert marker not in answer


def _controls() -> Iterator[tuple[str, Send]]:
    for host in ALLOWED_SPELLINGS:
        yield f"absolute host={host}", lambda gw, h=host: plain(gw, req("http://plain.test/", h))
    yield "absolute http/1.0 no host", lambda gw: plain(gw, req("http://plain.test/", None, "1.0"))
    yield "connect :80 plain", lambda gw: tunnel(gw, "plain.test:80", req("/", "plain.test"))
    yield (
        "connect :443 tls",
        lambda gw: tunnel(gw, "plain.test:443", req("/", "plain.test"), tls=True, sni="plain.test"),
    )
    yield (
        "connect :443 tls no sni",
        lambda gw: tunnel(gw, "plain.test:443", req("/", "plain.test"), tls=True),
    )
    yield "connect :443 h2", lambda gw: h2_tunnel(gw, "plain.test:443", "plain.test", "plain.test")
    yield "websocket", lambda gw: plain(gw, req("http://plain.test/ws", "plain.test", extra=WS))


CONTROLS = list(_controls())


@pytest.mark.parametrize("send", [v[1] for v in CONTROLS], ids=[v[0] for v in CONTROLS])
def test_allowed_controls_still_reach_their_site(lab: Lab, send: Send) -> None:
    answer = send(lab.gateway).decode("utf-8", "replace")
    assert "MARKER:plain" in answer, answer[:400]


def test_raw_bytes_in_a_host_header_are_refused_and_the_access_log_goes_on(lab: Lab) -> None:
    """A raw 0xFF in a Host header: a 400, and the access log keeps writing after it."""
    head = "GET http://plain.test/ HTTP/1.1\r\nHost: \udcffplain.test\r\nConnection: close\r\n\r\n"
    assert plain(lab.gateway, head).startswith(b"HTTP/1.1 400")
    after = plain(lab.gateway, req("http://www.chatter.test/after-raw-bytes", None))
    assert after.startswith(b"HTTP/1.1 403")
    records = access_log(
        lab.gateway.var, lambda rs: any("after-raw-bytes" in str(r.get("url")) for r in rs)
    )
    assert any("after-raw-bytes" in str(r.get("url")) for r in records)
    assert any("\\udcff" in str(r.get("host")) for r in records)

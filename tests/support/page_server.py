"""A local upstream that serves fixed pages, for the content-filter tests and benchmark.

The conftest's echo upstream answers every request with what it saw; content filtering needs
real pages instead: HTML, JSON, a binary file, a gzip-encoded page and a generative-AI style
answer streamed as server-sent events in separate chunks. Plain HTTP and HTTPS (self-signed;
the gateway runs with ssl_insecure) on free loopback ports.
"""

from __future__ import annotations

import gzip
import http.server
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    gzip: bool = False  # sent with Content-Encoding: gzip
    chunks: tuple[bytes, ...] = ()  # sent one by one (chunked transfer), instead of `body`
    chunk_delay: float = 0.0  # seconds between chunks
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering: a server and network further away


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 for chunked answers, but one response per connection: tests/support/
    # local_upstream.py re-addresses upstream connections, so with the gateway's lazy
    # connection strategy mitmproxy never reuses them (each request opens a new one).
    protocol_version = "HTTP/1.1"
    pages: dict[str, Page] = {}

    def do_GET(self) -> None:
        page = self.pages.get(self.path.split("?", 1)[0])
        if page is None:
            self.send_error(404)
            return
        self.close_connection = True
        if page.delay:
            time.sleep(page.delay)
        self.send_response(200)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", page.content_type)
        for name, value in page.headers.items():
            self.send_header(name, value)
        if page.chunks:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in page.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                if page.chunk_delay:
                    time.sleep(page.chunk_delay)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = gzip.compress(page.body) if page.gzip else page.body
        if page.gzip:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackServers:
    """`handler` served on an HTTP and an HTTPS (self-signed) loopback port until `stop`."""

    def __init__(
        self, handler: type[http.server.BaseHTTPRequestHandler], cert: Path, key: Path
    ) -> None:
        self.plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        self.secure.socket = tls.wrap_socket(self.secure.socket, server_side=True)
        for server in (self.plain, self.secure):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def http_port(self) -> int:
        return int(self.plain.server_address[1])

    @property
    def https_port(self) -> int:
        return int(self.secure.server_address[1])

    def stop(self) -> None:
        for server in (self.plain, self.secure):
            server.shutdown()
            server.server_close()


class PageServer(LoopbackServers):
    """Serves `pages` (path -> Page) on HTTP and HTTPS until `stop`."""

    def __init__(self, pages: dict[str, Page], cert: Path, key: Path) -> None:
        super().__init__(type("Handler", (_Handler,), {"pages": dict(pages)}), cert, key)

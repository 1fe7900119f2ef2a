"""A local upstream for large bodies, for tests/gateway/test_large_bodies.py and
bench/large_bodies_bench.py.

Downloads of any size are made as they are sent and uploads are hashed as they arrive, so
neither end holds a body in memory and the gateway's memory is all that grows.

    GET /<name>?size=N[&type=html|bin][&head=TEXT][&enc=gzip,...][&chunked=1]

N bytes (of the body before any encoding): `head`, then filler (paragraphs of harmless HTML
for type=html, a byte pattern for type=bin). `enc` is sent as the Content-Encoding; each
"gzip" in it is applied (in memory: keep those bodies modest), other names are sent as
they are. `chunked=1` sends it without a Content-Length.

    POST|PUT /<anything>   ->  {"length": ..., "sha256": ...} of the body received
"""

from __future__ import annotations

import hashlib
import http.server
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.support.page_server import LoopbackServers

BLOCK = 1 << 16
PARA = b"<p>The river flows to the sea and the class draws a map of it.</p>\n"
PATTERN = bytes(range(256)) * (BLOCK // 256)


def body_blocks(size: int, kind: str = "html", head: bytes = b"") -> Iterator[bytes]:
    """The body GET serves, a block at a time (tests hash it the same way)."""
    if kind == "html":
        head = b"<!doctype html><html><head><title>Big</title></head><body>" + head
    filler = PARA * (BLOCK // len(PARA) + 1) if kind == "html" else PATTERN
    sent = 0
    first = head[:size]
    if first:
        yield first
        sent = len(first)
    while sent < size:
        block = filler[: min(BLOCK, size - sent)]
        yield block
        sent += len(block)


def body_sha256(size: int, kind: str = "html", head: bytes = b"") -> str:
    digest = hashlib.sha256()
    for block in body_blocks(size, kind, head):
        digest.update(block)
    return digest.hexdigest()


def _gzip(blocks: Iterator[bytes]) -> Iterator[bytes]:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for block in blocks:
        out = packer.compress(block)
        if out:
            yield out
    yield packer.flush()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    uploads: list[str] = []  # set per server (BulkServer)

    def do_GET(self) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        size = int(query.get("size", "0"))
        kind = query.get("type", "html")
        blocks = body_blocks(size, kind, query.get("head", "").encode())
        coding = query.get("enc", "")
        for name in [n.strip() for n in coding.split(",") if n.strip()]:
            if name == "gzip":
                blocks = _gzip(blocks)
        chunked = query.get("chunked") == "1"
        body = b"" if chunked or not coding else b"".join(blocks)
        self.send_response(200)
        self.send_header("Connection", "close")
        ctype = "text/html; charset=utf-8" if kind == "html" else "application/octet-stream"
        self.send_header("Content-Type", ctype)
        if coding:
            self.send_header("Content-Encoding", coding)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body) if coding else size))
        self.end_headers()
        self.close_connection = True
        try:
            if coding and not chunked:
                self.wfile.write(body)
                return
            for block in blocks:
                if block:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway cut it (a blocked head): nothing more to send

    def do_POST(self) -> None:
        self.uploads.append(self.path)
        digest, length = hashlib.sha256(), 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                left = size
                while left:
                    block = self.rfile.read(min(BLOCK, left))
                    digest.update(block)
                    length += len(block)
                    left -= len(block)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                block = self.rfile.read(min(BLOCK, left))
                if not block:
                    break
                digest.update(block)
                length += len(block)
                left -= len(block)
        answer = json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.close_connection = True

    do_PUT = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


class BulkServer(LoopbackServers):
    """Serves large bodies on HTTP and HTTPS (self-signed) loopback ports until `stop`."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.uploads: list[str] = []  # the paths of the uploads that arrived
        super().__init__(type("Handler", (_Handler,), {"uploads": self.uploads}), cert, key)

"""Upstream servers that answer with a marker naming the address they stand for.

One server a name: plain HTTP and TLS on the same port (told apart by the first byte),
every request answered `200` with `MARKER:<name>` in the body and an `X-Marker` header, then
the connection closed. With local_upstream.py's `local_upstream_hosts` mapping each name
to its server, a response carrying a marker says exactly which address the gateway
connected to, whatever the client wrote in its Host header, SNI or `:authority`.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path


class MarkerServer:
    def __init__(self, name: str, cert: Path, key: Path) -> None:
        self.name = name
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def marker(self) -> str:
        return f"MARKER:{self.name}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
            if first == b"\x16":
                conn = self.tls.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
            self.requests.append(head)
            body = f"{self.marker}\n".encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Marker: "
                + self.name.encode()
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()

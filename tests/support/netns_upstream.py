"""The "internet" of the transparent-mode test, run inside its upstream network namespace.

python netns_upstream.py CERT KEY EVENTS ADDRESS[,ADDRESS...]

Serves HTTP on 80 and HTTPS on 443 (CERT names the test's hosts), a bare TCP listener on
853 (DNS-over-TLS) on every address, and UDP echoes on 53, 123 and 443 on each ADDRESS
(bound one by one, so each answers from the address it was asked on).
Everything that arrives is appended to EVENTS as one JSON line (what, port, peer, SNI or
Host), so the test can tell what the firewall and the gateway let through; every HTTP(S)
answer names the address it was reached on, so the test can tell where the gateway went.
Prints "ready" once listening.
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import sys
import threading
from typing import Any

_lock = threading.Lock()


def record(events: str, **event: Any) -> None:
    with _lock, open(events, "a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\n")


def make_handler(events: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
            peer = self.client_address[0]
            record(events, what=scheme, host=self.headers.get("Host"), path=self.path, peer=peer)
            address = self.connection.getsockname()[0]  # which of our addresses was reached
            body = json.dumps(
                {
                    "upstream": "netns",
                    "host": self.headers.get("Host"),
                    "path": self.path,
                    "address": address,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def udp_socket(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    return sock


def serve_udp(sock: socket.socket, address: str, port: int, events: str) -> None:
    while True:
        data, peer = sock.recvfrom(2048)
        record(events, what="udp", port=port, peer=peer[0], local=address)
        sock.sendto(b"echo:" + data, peer)


def serve_tcp_bare(sock: socket.socket, port: int, events: str) -> None:
    while True:
        conn, peer = sock.accept()
        record(events, what="tcp", port=port, peer=peer[0])
        conn.close()


def main() -> None:
    cert, key, events, addresses = sys.argv[1:5]
    handler = make_handler(events)
    plain = http.server.ThreadingHTTPServer(("0.0.0.0", 80), handler)
    secure = http.server.ThreadingHTTPServer(("0.0.0.0", 443), handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)

    def saw_sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        record(events, what="sni", sni=name)

    tls.sni_callback = saw_sni  # type: ignore[assignment]
    secure.socket = tls.wrap_socket(secure.socket, server_side=True)
    for server in (plain, secure):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    for address in addresses.split(","):
        for port in (53, 123, 443):
            args = (udp_socket(address, port), address, port, events)
            threading.Thread(target=serve_udp, args=args, daemon=True).start()
    dot = socket.create_server(("0.0.0.0", 853))
    threading.Thread(target=serve_tcp_bare, args=(dot, 853, events), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()

"""A WSGI app served on a loopback port from a thread, for tests that drive it with a real
browser: `served = serve(app)`, open `served.url`, and `served.stop()` when done."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import make_server


class Served:
    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)
        self.server.server_close()


def serve(app: Any) -> Served:
    return Served(app)

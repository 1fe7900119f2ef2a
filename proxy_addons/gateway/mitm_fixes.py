"""A fix for mitmproxy 12: a connection closed by a hook must really be closed.

When an add-on's hook ends a connection (a flow killed, a TLS connection refused) while the
client is still sending, the close comes from the hook's task and cancels the connection's
own task as it waits to hand on the data just read. That CancelledError leaves
`ConnectionHandler.handle_connection` before its `writer.close()`: the socket stays open,
unread, for ever. A pupil sending an upload to a blocked site in a loop would use up the
gateway's file descriptors. `install` wraps the method so the transport is closed however
it ends (tests/gateway/test_large_bodies.py counts the gateway's sockets).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from mitmproxy.proxy import server

_MARK = "_schoolgate_closes_on_cancel"


def install() -> None:
    """Idempotent: wrap `ConnectionHandler.handle_connection` once per process."""
    handler = server.ConnectionHandler
    original = handler.handle_connection
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    async def handle_connection(self: Any, connection: Any) -> None:
        try:
            await original(self, connection)
        except asyncio.CancelledError:
            io = self.transports.pop(connection, None)  # still there only if it leaked
            if io is not None and io.writer is not None:
                io.writer.close()
            raise

    setattr(handle_connection, _MARK, True)
    handler.handle_connection = handle_connection  # type: ignore[method-assign]

"""A proxy layer that refuses a TLS connection cleanly, without decrypting it.

Used when a blocked site is decided on its host name only: the client gets a TLS
`access_denied` alert and the connection closes, so the browser shows an error
at once instead of hanging, and nothing ever reaches the upstream server.
"""

from __future__ import annotations

from mitmproxy.proxy import commands, events, layer

# TLS record: alert (21), TLS 1.2 (3,3), length 2, fatal (2), access_denied (49).
TLS_ACCESS_DENIED = bytes([21, 3, 3, 0, 2, 2, 49])


class RefuseLayer(layer.Layer):
    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            yield commands.SendData(self.context.client, TLS_ACCESS_DENIED)
            yield commands.CloseConnection(self.context.client)

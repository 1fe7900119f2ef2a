"""mitmdump test script: say how each flow's bodies went through, after the gateway's add-ons.

One JSON line per finished flow in the file named by `body_probe_file`: whether mitmproxy
streamed the request and the response (True, or the stream callable's class name), and how
many body bytes it held in the flow at the end (None when it held none). At start-up one
line with the `stream_large_bodies` in force.
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader


def _stream(message: http.Message | None) -> Any:
    stream = message.stream if message is not None else None
    return type(stream).__name__ if callable(stream) else bool(stream)


def _held(message: http.Message | None) -> int | None:
    content = message.raw_content if message is not None else None
    return None if content is None else len(content)


class BodyProbe:
    def load(self, loader: Loader) -> None:
        loader.add_option("body_probe_file", str, "", "where to write one JSON line per flow")

    def _write(self, record: dict[str, Any]) -> None:
        if ctx.options.body_probe_file:
            with open(ctx.options.body_probe_file, "a") as out:
                out.write(json.dumps(record) + "\n")

    def running(self) -> None:
        self._write({"stream_large_bodies": ctx.options.stream_large_bodies})

    def response(self, flow: http.HTTPFlow) -> None:
        self._write(
            {
                "path": flow.request.path,
                "request_stream": _stream(flow.request),
                "request_held": _held(flow.request),
                "response_stream": _stream(flow.response),
                "response_held": _held(flow.response),
            }
        )


addons = [BodyProbe()]

"""A response body the content filter holds back and scores as it streams, then releases.

mitmproxy's stream callables (`response.stream`) for bodies that are not buffered: larger
than the cap, of unknown length (generative-AI server-sent events) or streamed by
`stream_large_bodies`. The judging (the threshold, the verdict for the recorder, the notice)
is the add-on's (gateway/addons/content_filter.py), reached through the small `Judge` interface.
"""

from __future__ import annotations

import logging
from typing import Protocol

from mitmproxy import http

from proxy_addons.core.content.page_text import Decoder
from proxy_addons.core.content.scoring import ContentScanner
from proxy_addons.core.content.weighted_lists import Score, WeightedLists
from proxy_addons.gateway.content_plan import Plan

logger = logging.getLogger(__name__)


class Judge(Protocol):
    """What a held body asks of the content filter."""

    @property
    def lists(self) -> WeightedLists | None: ...
    def decide(self, flow: http.HTTPFlow, plan: Plan, score: Score) -> None: ...
    def unscanned(self, flow: http.HTTPFlow, plan: Plan, why: str) -> None: ...
    def refuse(self, flow: http.HTTPFlow, plan: Plan, why: str) -> None: ...
    def block_notice(self, flow: http.HTTPFlow, plan: Plan) -> bytes: ...


class HeldBody:
    """mitmproxy's stream callable for a body that is not buffered: hold, score, then release.

    Called with each chunk as it arrives and with b"" at the end (mitmproxy's contract); what
    it returns is sent. While holding it returns an empty list, never b"": mitmproxy would
    send an empty chunk, which in HTTP/1.1 chunked encoding ends the body. It holds at most
    `cap` bytes (raw and decoded); then the head is judged, and the rest passes or is dropped.
    """

    def __init__(self, addon: Judge, flow: http.HTTPFlow, plan: Plan, cap: int) -> None:
        self.addon = addon
        self.flow = flow
        self.plan = plan
        self.cap = cap
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.decoder = Decoder(plan.content_encoding)
        lists = addon.lists
        assert lists is not None
        self.scanner = ContentScanner(lists, plan.kind, plan.charset)
        self.mode = "hold"  # hold | pass | drop

    def __call__(self, chunk: bytes) -> list[bytes]:
        try:
            return self._step(chunk)
        except Exception as exc:  # unreadable: blocked, never passed unread
            if self.mode != "hold":
                logger.exception("Content filter: a released body failed")
                return [] if self.mode == "drop" else some(chunk)
            self.addon.refuse(self.flow, self.plan, f"body could not be read: {exc}")
            return self._drop()

    def _step(self, chunk: bytes) -> list[bytes]:
        if self.mode == "pass":
            return some(chunk)
        if self.mode == "drop":
            return []
        if chunk:
            self.held.append(chunk)
            self.held_bytes += len(chunk)
            room = self.cap + 1 - self.scanner.scanned_bytes
            self.scanner.feed(self.decoder.decompress(chunk, room))
            over = self.scanner.scanned_bytes > self.cap or self.held_bytes > self.cap
            if not over and not self.decoder.cut:
                return []
            # The cap is read: decide on the head; the rest passes unscanned or is dropped.
            self.addon.decide(self.flow, self.plan, self.scanner.finish())
            if self.plan.outcome == "blocked":
                return self._drop()
            self.addon.unscanned(
                self.flow, self.plan, f"streamed body over the {self.cap} cap: the rest unscanned"
            )
            return self._release()
        # The end of the body: decide, then release or replace.
        self.addon.decide(self.flow, self.plan, self.scanner.finish())
        if self.plan.outcome == "blocked":
            return self._drop()
        return self._release()

    def _drop(self) -> list[bytes]:
        self.mode = "drop"
        self.held.clear()
        return [self.addon.block_notice(self.flow, self.plan)]

    def _release(self) -> list[bytes]:
        self.mode = "pass"
        out = b"".join(self.held)
        self.held.clear()
        return some(out)


class Instead:
    """A stream callable that sends `body` in place of whatever the site sends."""

    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = body

    def __call__(self, chunk: bytes) -> list[bytes]:
        body, self.body = self.body, None
        return some(body or b"")


def body_may_stream(request: http.Request) -> bool:
    """Over stream_large_bodies already, or of a length nobody said (chunked; HTTP/2 and 3
    uploads without a Content-Length), so it may be."""
    if request.stream or "transfer-encoding" in request.headers:
        return True
    return (
        request.http_version in ("HTTP/2.0", "HTTP/3")
        and "content-length" not in request.headers
        and request.method in ("POST", "PUT", "PATCH")
    )


def some(data: bytes) -> list[bytes]:
    """What a stream callable returns for `data`: never an empty chunk (see HeldBody)."""
    return [data] if data else []

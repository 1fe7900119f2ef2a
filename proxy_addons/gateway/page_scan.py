"""Risk phrases in the pages pupils read: the alerting add-on's page scan, off the event loop.

The alerting add-on offers the allowed HTML pages of the profiles the policy names
(`monitoring.scan_page_text`); each is scanned on one background thread, so nobody's page
waits on the scan. Pages queue up to `MAX_SCAN_BACKLOG` bytes; beyond, they go unscanned
(counted, and logged at most once a minute).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy.net import encoding
from mitmproxy.net.http.headers import infer_content_encoding

from proxy_addons.alerts.events import Event
from proxy_addons.alerts.request_events import phrase_event
from proxy_addons.core.background import Worker
from proxy_addons.core.content.page_text import html_text
from proxy_addons.core.content.phrases import PhraseMatcher
from proxy_addons.core.policy.model import Policy

logger = logging.getLogger(__name__)

MAX_SCAN_BACKLOG = 32_000_000  # bytes of pages waiting to be scanned; beyond, pages go unscanned
SCAN_PACE = 0.05  # seconds the scan thread rests between runs of work (background.py)


@dataclass(frozen=True, slots=True)
class Page:
    """A page to scan: the two headers it needs and the (immutable) body, not a copy of the
    response, which costs the event loop more than the scan of a small page does."""

    record: dict[str, Any]  # the request's verdict record (a copy)
    url: str  # without its query string or fragment
    content_encoding: str
    content_type: str
    raw: bytes
    cap: int  # the largest body scanned, once decoded (bytes)


class PageScanner:
    """Scans pages for the matcher's phrases and raises what it finds."""

    def __init__(
        self,
        matcher: Callable[[], PhraseMatcher | None],
        policy: Callable[[], Policy | None],
        raise_event: Callable[[Event], None],
    ) -> None:
        self.matcher = matcher
        self.policy = policy
        self.raise_event = raise_event
        self._worker = Worker("alerts-scan", pace=SCAN_PACE)
        self._backlog = 0  # bytes
        self._skipped = 0  # pages not scanned because the backlog was full
        self._skip_warned_at = -60.0
        self._lock = threading.Lock()

    def offer(self, page: Page) -> None:
        """Scan this page's text unless the backlog is full."""
        raw = page.raw
        with self._lock:
            if self._backlog + len(raw) > MAX_SCAN_BACKLOG:
                self._skipped += 1
                now = time.monotonic()
                if now >= self._skip_warned_at + 60:  # at most a line a minute, with a count
                    self._skip_warned_at = now
                    logger.warning(
                        "Page scans skipped: %d pages so far (%d bytes of pages waiting)",
                        self._skipped,
                        self._backlog,
                    )
                return
            self._backlog += len(raw)
        if not self._worker.submit(self._scan, page):
            with self._lock:  # shutting down
                self._backlog -= len(raw)

    def close(self) -> None:
        self._worker.close(wait=False, drop_pending=True)

    def _scan(self, page: Page) -> None:
        try:
            matcher, policy = self.matcher(), self.policy()
            if matcher is None or policy is None:
                return
            content = decoded(page.raw, page.content_encoding)
            if len(content) > page.cap:
                return
            text = visible_text(as_text(content, page.content_type))
            if not matcher.categories_in(text):  # most pages: no phrase, found in a fraction
                return  # of the time `match` takes to say so
            hits = matcher.match(text)
            event = phrase_event(page.record, policy, hits, page=page.url)
            if event is not None:
                self.raise_event(event)
        except Exception:
            logger.exception("Page scan failed")
        finally:
            with self._lock:
                self._backlog -= len(page.raw)


def decoded(raw: bytes, content_encoding: str) -> bytes:
    """The body without its Content-Encoding; as sent if that can't be undone (as
    mitmproxy's `get_content(strict=False)`)."""
    if not content_encoding:
        return raw
    try:
        content = encoding.decode(raw, content_encoding)
    except ValueError:
        return raw
    return content if isinstance(content, bytes) else raw


def as_text(content: bytes, content_type: str) -> str:
    """The body as text, in the charset mitmproxy infers (`get_text(strict=False)`)."""
    charset = infer_content_encoding(content_type, content)
    try:
        return str(encoding.decode(content, charset))
    except ValueError:
        return content.decode("utf8", "surrogateescape")


def visible_text(html: str) -> str:
    """The page's visible words, one space apart (content_scoring's one-pass extraction)."""
    return " ".join(html_text(html).split())

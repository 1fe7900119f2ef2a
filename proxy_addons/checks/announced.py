"""Check windows: an agent's termly check announced to the gateway, so its canaries don't alert.

An agent's check run sends ordinary requests through the gateway (it must: that is the path
being checked), so on a learner device the adult canary, the illegal tier's test entries and
the circumvention cases would reach the DSL as if the pupil had tried them. Before it starts,
the agent opens a window (`POST /api/v1/checks/windows`): the device API stores the address it
sees the device at, the suite's URLs for the device's profile (worked out by the gateway, not
taken from the device) and an expiry of a few minutes; posting the run closes it.

The gateway's check marker (gateway/addons/check_marker.py) reads the open windows through
a `WindowBook`: the gateway's services refresh it from the store every few seconds (a
`core.periodic` job), the request path only looks in a dict. A request is a check request
only if it comes from the window's address, during the window, for one of the suite's URLs
(or, where only the host name is known - a CONNECT or a TLS hello - for one of their hosts).
Fail safe: if the store can't be read, or the book has not been refreshed lately, no request
is exempt and alerts are raised as usual.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from proxy_addons.core.hosts import HostError, canonical_url
from proxy_addons.store import Store
from proxy_addons.store.schema import check_windows

logger = logging.getLogger(__name__)

DEFAULT_SECONDS = 300
MIN_SECONDS = 60
MAX_SECONDS = 900  # a run longer than this alerts for its later cases (fail safe)
REFRESH_SECONDS = 2.0
STALE_SECONDS = 15.0  # a book not refreshed for this long exempts nothing
KEEP_CLOSED = timedelta(days=1)  # closed and expired windows are deleted after this
WINDOW_MARK = "check_window"


def request_url(url: str) -> str | None:
    """A URL as the Filter's decision record writes it (`scheme://host/path?query`)."""
    try:
        parsed = canonical_url(url)
    except HostError:
        return None
    query = f"?{parsed.query}" if parsed.query else ""
    return f"{parsed.scheme}://{parsed.host.name}{parsed.path}{query}"


@dataclass(frozen=True, slots=True)
class Window:
    id: int
    device_id: str
    ip: str
    urls: frozenset[str]
    hosts: frozenset[str]
    expires_at: datetime

    def covers(self, record: dict[str, Any], now: datetime) -> bool:
        """A decision record for one of this window's URLs (or hosts, when that is all known)."""
        if now >= self.expires_at:
            return False
        url = record.get("url")
        if url:
            return str(url) in self.urls
        return str(record.get("host") or "") in self.hosts


def _hosts(urls: Iterable[str]) -> frozenset[str]:
    return frozenset(u.split("://", 1)[1].split("/", 1)[0] for u in urls)


def open_window(
    store: Store, device_id: str, ip: str, urls: Iterable[str], now: datetime, seconds: int
) -> tuple[int, datetime, int]:
    """Store a window for `device_id` at `ip`; (id, expiry, number of URLs). Closes the
    device's earlier windows: one run at a time per device."""
    wanted = sorted({u for u in (request_url(x) for x in urls) if u})
    expires = now + timedelta(seconds=max(MIN_SECONDS, min(MAX_SECONDS, seconds)))
    with store.begin() as conn:
        conn.execute(check_windows.delete().where(check_windows.c.expires_at < now - KEEP_CLOSED))
        _close(conn, device_id, now)
        row = conn.execute(
            check_windows.insert().values(
                device_id=device_id,
                ip=ip,
                urls=json.dumps(wanted),
                opened_at=now,
                expires_at=expires,
            )
        )
        window_id = int(row.inserted_primary_key[0])  # type: ignore[index]
    return window_id, expires, len(wanted)


def close_windows(store: Store, device_id: str, now: datetime) -> int:
    """Close the device's open windows (its run is posted); how many were open."""
    with store.begin() as conn:
        return _close(conn, device_id, now)


def _close(conn: sa.Connection, device_id: str, now: datetime) -> int:
    result = conn.execute(
        check_windows.update()
        .where(
            check_windows.c.device_id == device_id,
            check_windows.c.closed_at.is_(None),
            check_windows.c.expires_at > now,
        )
        .values(closed_at=now, expires_at=now)
    )
    return int(result.rowcount or 0)


def open_windows(store: Store, now: datetime) -> list[Window]:
    """The windows open at `now`."""
    query = sa.select(check_windows).where(
        check_windows.c.closed_at.is_(None), check_windows.c.expires_at > now
    )
    with store.connect() as conn:
        rows = conn.execute(query).all()
    out = []
    for row in rows:
        urls = frozenset(str(u) for u in json.loads(row.urls))
        out.append(Window(row.id, row.device_id, row.ip, urls, _hosts(urls), row.expires_at))
    return out


class WindowBook:
    """The open windows by address, refreshed off the request path; exempts nothing when stale."""

    def __init__(
        self,
        store: Callable[[], Store | None],
        clock: Callable[[], datetime] | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.refresh_seconds = refresh_seconds
        self.stale_seconds = stale_seconds
        self._by_ip: dict[str, tuple[Window, ...]] = {}
        self._fresh_at = float("-inf")  # time.monotonic() of the last good read

    def covering(self, ip: str | None, record: dict[str, Any]) -> Window | None:
        """The open window this request (from `ip`, decided as `record`) belongs to, if any."""
        if not ip or not self._by_ip:
            return None
        if time.monotonic() - self._fresh_at > self.stale_seconds:
            return None  # the store could not be read lately: alert as usual
        now = self.clock()
        for window in self._by_ip.get(ip, ()):
            if window.covers(record, now):
                return window
        return None

    def refresh(self) -> None:
        store = self.store()
        if store is None:
            return
        try:
            found = open_windows(store, self.clock())
        except Exception as exc:
            self._by_ip = {}  # fail safe: nothing exempt
            logger.error("Check windows could not be read from the store: %s", exc)
            return
        by_ip: dict[str, list[Window]] = {}
        for window in found:
            by_ip.setdefault(window.ip, []).append(window)
        self._by_ip = {ip: tuple(ws) for ip, ws in by_ip.items()}
        self._fresh_at = time.monotonic()


__all__ = [
    "WINDOW_MARK",
    "Window",
    "WindowBook",
    "close_windows",
    "open_window",
    "open_windows",
    "request_url",
]

"""Fetching the illegal tier's licensed feeds (`illegal.feeds`), as `schoolgate lists update`
does on its timer: each feed that is due is downloaded over HTTPS (the provider's token as a
bearer header, or a client certificate; the provider's own CA if it names one), checked, and
written over the last good list in one rename. A feed that fails keeps the last good list;
the failure is written beside it, where the doctor, the gateway's watch and the metric read.

A list is taken only when it is not empty, every line reads (a URL a browser could open, or
64 hex digits for a hashed feed), it matches the provider's published SHA-256 when the feed
names one, and it has not shrunk below half the entries of the last good one (a cut-off
download or a broken upstream would otherwise quietly unblock illegal content; `--force`
takes it). The lists' entries are never printed or logged: only counts and checksums.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import ssl
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy_addons.core.hosts import HostError, canonical_url_entry
from proxy_addons.core.illegal_hashes import HEX_DIGEST, is_hashed_entry
from proxy_addons.core.policy.illegal_feed import IllegalFeed, read_feed_state
from proxy_addons.ops.atomic_file import write_atomic

logger = logging.getLogger(__name__)

MAX_FEED_BYTES = 256 << 20
TIMEOUT_SECONDS = 60
MIN_FRACTION = 0.5


class FeedError(Exception):
    """The feed was not taken; the message says why (never an entry of the list)."""


@dataclass(frozen=True)
class FeedResult:
    name: str
    ok: bool
    message: str
    entries: int = 0
    skipped: bool = False  # not due yet


def fetch_due_feeds(
    feeds: tuple[IllegalFeed, ...], *, now: datetime | None = None, force: bool = False
) -> list[FeedResult]:
    """Fetch every feed whose refresh interval has passed (all of them with `force`)."""
    now = now or datetime.now(UTC)
    results = []
    for feed in feeds:
        state = read_feed_state(feed)
        last = feed_time(state.get("fetched_at"))
        if not force and last is not None and now - last < timedelta(hours=feed.refresh_hours):
            results.append(
                FeedResult(feed.name, True, f"fetched {last:%H:%M} UTC; not due", skipped=True)
            )
            continue
        results.append(fetch_feed(feed, now=now, force=force))
    return results


def fetch_feed(
    feed: IllegalFeed, *, now: datetime | None = None, force: bool = False
) -> FeedResult:
    """Fetch, check and swap in one feed; on failure keep the last good list and say why."""
    now = now or datetime.now(UTC)
    state = read_feed_state(feed)
    try:
        body, published = _download(feed, feed.url)
        entries = check_list(feed, body)
        _check_published_digest(feed, body)
        before = int(state.get("entries") or 0) if feed.list_file.exists() else 0
        if before and entries < before * MIN_FRACTION and not force:
            raise FeedError(
                f"the new list has {entries} entries where the last good one has {before} "
                f"(below {MIN_FRACTION:.0%}): refused; `schoolgate lists update --force` takes it"
            )
    except FeedError as exc:
        state.update(last_attempt_at=_iso(now), last_error=str(exc))
        _write_state(feed, state)
        logger.warning(
            "Illegal-tier feed %s not taken, the last good list stays: %s", feed.name, exc
        )
        return FeedResult(feed.name, False, str(exc))
    feed.folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    write_atomic(feed.list_file, body, 0o640)
    state = {
        "fetched_at": _iso(now),
        "published_at": _iso(published) if published else None,
        "sha256": hashlib.sha256(body).hexdigest(),
        "entries": entries,
        "format": feed.format,
        "last_attempt_at": _iso(now),
        "last_error": None,
    }
    _write_state(feed, state)
    logger.info("Illegal-tier feed %s taken: %d entries", feed.name, entries)
    return FeedResult(feed.name, True, f"{entries} entries taken", entries)


def check_list(feed: IllegalFeed, body: bytes) -> int:
    """The number of entries, if every line reads; FeedError (with the line number) if not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FeedError("the list is not UTF-8 text") from None
    entries = 0
    for n, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        if feed.format == "hashed":
            if not is_hashed_entry(item):
                raise FeedError(f"line {n} is not a SHA-256 hash (64 hex digits)")
        else:
            try:
                canonical_url_entry(item)
            except HostError:
                raise FeedError(f"line {n} is not a URL a browser could open") from None
        entries += 1
    if not entries:
        raise FeedError("the list is empty")
    return entries


def _check_published_digest(feed: IllegalFeed, body: bytes) -> None:
    if not feed.checksum_url:
        return
    published, _ = _download(feed, feed.checksum_url, max_bytes=1 << 16)
    words = published.decode("ascii", "replace").split()
    if not words or not HEX_DIGEST.fullmatch(words[0].lower()):
        raise FeedError(f"{feed.checksum_url} does not start with a SHA-256 checksum")
    got = hashlib.sha256(body).hexdigest()
    if words[0].lower() != got:
        raise FeedError(f"the list's SHA-256 {got} is not the published {words[0].lower()}")


def _context(feed: IllegalFeed) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(feed.ca_file) if feed.ca_file else None)
    if feed.client_cert and feed.client_key:
        try:
            context.load_cert_chain(str(feed.client_cert), str(feed.client_key))
        except (OSError, ssl.SSLError) as exc:
            raise FeedError(f"the client certificate can't be loaded: {exc}") from None
    return context


def _download(
    feed: IllegalFeed, url: str, max_bytes: int = MAX_FEED_BYTES
) -> tuple[bytes, datetime | None]:
    """The body and its Last-Modified time (when the provider says it)."""
    headers = {"User-Agent": "schoolgate-lists-update"}
    if feed.secret_file:
        try:
            token = feed.secret_file.read_text().strip()
        except OSError as exc:
            raise FeedError(f"the feed's secret file can't be read: {exc.strerror}") from None
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(
            request, timeout=TIMEOUT_SECONDS, context=_context(feed)
        ) as resp:
            body = resp.read(max_bytes + 1)
            modified = resp.headers.get("Last-Modified")
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise FeedError(f"{url}: download failed: {_reason(exc)}") from None
    if len(body) > max_bytes:
        raise FeedError(f"{url}: larger than {max_bytes >> 20} MiB, refused")
    published = None
    if modified:
        try:
            published = email.utils.parsedate_to_datetime(modified).astimezone(UTC)
        except (TypeError, ValueError):
            published = None
    return body, published


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    code = getattr(exc, "code", None)
    return f"HTTP {code}" if code else str(reason or exc)


def _write_state(feed: IllegalFeed, state: dict[str, Any]) -> None:
    feed.folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    write_atomic(feed.state_file, (json.dumps(state, indent=2) + "\n").encode(), 0o640)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def feed_time(value: object) -> datetime | None:
    """A time the fetcher wrote (ISO 8601), or None."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)

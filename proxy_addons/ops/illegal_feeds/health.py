"""Is the illegal tier fit to protect children today? One answer, read by `schoolgate doctor`
(a FAIL), the gateway's watch (a technical alert, once per state) and its metrics
(`schoolgate_illegal_list_age_seconds`), so the three never disagree.

The tier is unfit when a feed's list is older than its `max_age_hours` (its age is that of
its content: the provider's Last-Modified when it sends one, else when it was fetched), when
a feed was never fetched, or, on a production install, when it holds nothing but
placeholder entries (the shipped test entries, on names reserved for examples and tests).
A production install is one whose schoolgate.env says SCHOOLGATE_PRODUCTION=yes, as
deploy/install.sh writes it; a development checkout only gets warnings.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.core.policy.illegal_feed import read_feed_state
from proxy_addons.core.policy.model import IllegalTier
from proxy_addons.ops.illegal_feeds.fetch import feed_time

PRODUCTION_SETTING = "SCHOOLGATE_PRODUCTION"
DEFAULT_MAX_AGE_HOURS = 24.0  # a tier of files with no feed: the DfE's "kept up to date"
# Names reserved for examples and tests (RFC 2606, RFC 6761): never a real site.
_PLACEHOLDER_TLDS = (".example", ".test", ".invalid", ".localhost")
_PLACEHOLDER_DOMAINS = ("example.com", "example.net", "example.org")


class TierState(enum.StrEnum):
    OK = "ok"
    STALE = "stale"  # older than the policy allows
    NEVER_FETCHED = "never_fetched"  # a feed has never been fetched
    PLACEHOLDER = "placeholder"  # only test entries, on a production install


@dataclass(frozen=True)
class TierHealth:
    state: TierState
    age_seconds: float | None  # the oldest list's age; None when no list has an age
    problems: tuple[str, ...] = ()  # why it is unfit (FAIL)
    warnings: tuple[str, ...] = ()  # worth knowing, not unfit (WARN)
    notes: tuple[str, ...] = field(default=(), compare=False)  # how each feed stands (OK)

    @property
    def fit(self) -> bool:
        return self.state is TierState.OK


def is_production(values: Mapping[str, str] | None = None) -> bool:
    """Whether these settings (schoolgate.env's, else this process's environment) say
    this is a production install."""
    source = os.environ if values is None else values
    return source.get(PRODUCTION_SETTING, "").strip().lower() in ("yes", "true", "1", "on")


def is_placeholder(entry: str) -> bool:
    host = entry.split("/", 1)[0].rstrip(".")
    return host.endswith(_PLACEHOLDER_TLDS) or any(
        host == d or host.endswith("." + d) for d in _PLACEHOLDER_DOMAINS
    )


def placeholder_only(tier: IllegalTier) -> bool:
    """Nothing in the tier but test entries: no hashed entry, no real site's URL."""
    entries = [*tier.exact, *(p for p, _ in tier.prefixes)]
    return not tier.hashed and all(is_placeholder(e) for e in entries)


def tier_health(tier: IllegalTier, *, production: bool, now: datetime | None = None) -> TierHealth:
    """How the tier stands now; reads each feed's record beside its list (cheap: a few
    small JSON files), so it is current between policy reloads too."""
    now = now or datetime.now(UTC)
    problems: list[str] = []
    warnings: list[str] = []
    notes: list[str] = []
    ages: list[float] = []
    state = TierState.OK
    for feed in tier.feeds:
        record = read_feed_state(feed)
        fetched = feed_time(record.get("fetched_at"))
        if fetched is None or not feed.list_file.exists():
            problems.append(f"feed '{feed.name}' has never been fetched")
            state = TierState.NEVER_FETCHED
            continue
        published = feed_time(record.get("published_at"))
        made = min(fetched, published) if published else fetched
        age = max(0.0, (now - made).total_seconds())
        ages.append(age)
        hours = age / 3600
        if hours > feed.max_age_hours:
            since = "published" if published and published < fetched else "fetched"
            problems.append(
                f"feed '{feed.name}' is {hours:.0f} h old ({since} {made:%Y-%m-%d %H:%M} UTC); "
                f"the policy allows {feed.max_age_hours:g} h"
            )
            state = TierState.STALE
        else:
            notes.append(f"feed '{feed.name}': {record.get('entries')} entries, {hours:.1f} h old")
        error = record.get("last_error")
        if error:
            warnings.append(
                f"feed '{feed.name}': the last fetch failed ({error}); the last good list is kept"
            )
    if not tier.feeds:
        files_age = _files_age(tier.sources, now)
        if files_age is not None:
            ages.append(files_age)
        if production and files_age is not None and files_age / 3600 > DEFAULT_MAX_AGE_HOURS:
            problems.append(
                f"the illegal tier's files were last changed {files_age / 3600:.0f} h ago "
                "and no feed keeps them current"
            )
            state = TierState.STALE
        elif not production:
            warnings.append(
                "no illegal.feeds: the tier's files are only as current as whoever replaces them"
            )
    if placeholder_only(tier):
        message = "the illegal tier holds only placeholder (test) entries, not a provider's list"
        if production:
            problems.append(message)
            state = state if state is not TierState.OK else TierState.PLACEHOLDER
        else:
            warnings.append(message + " (fine for a trial, not for a school)")
    return TierHealth(
        state, max(ages) if ages else None, tuple(problems), tuple(warnings), tuple(notes)
    )


def _files_age(paths: tuple[Path, ...], now: datetime) -> float | None:
    times = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    if not times:
        return None
    return max(0.0, now.timestamp() - min(times))

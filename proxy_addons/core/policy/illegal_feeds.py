"""`illegal.feeds`: the school's (or its provider's) licensed illegal-content feeds, which
`schoolgate lists update` fetches into the feeds folder (ops/illegal_feeds/) and the tier
loads from there. The lists are licensed, so Schoolgate never ships them: docs/illegal-content.md.

A feed's list lives outside the policy's folder (default /var/lib/schoolgate/illegal), so
no policy diff, backup of the configuration or `git` checkout of it ever holds its URLs.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from proxy_addons.core.policy.checker import Checker
from proxy_addons.core.policy.illegal_feed import DEFAULT_FOLDER, IllegalFeed
from proxy_addons.core.policy.yaml_reader import LMap, Where

FORMATS = ("plain", "hashed")
MATCHES = ("exact", "prefix")
_FEED_KEYS = [
    "name",
    "url",
    "format",
    "match",
    "secret_file",
    "client_cert",
    "client_key",
    "ca_file",
    "checksum_url",
    "refresh_hours",
    "max_age_hours",
]


def load_feeds(ck: Checker, tier: LMap) -> tuple[IllegalFeed, ...]:
    """`illegal.feeds` (and `illegal.feeds_folder`), each feed checked field by field."""
    folder = DEFAULT_FOLDER
    if tier.get("feeds_folder") is not None:
        text = ck.text(tier["feeds_folder"], tier.at("feeds_folder"), "illegal.feeds_folder")
        folder = (ck.base / text).resolve() if text else folder
    raw = tier.get("feeds")
    if raw is None:
        return ()
    items = ck.listing(raw, tier.at("feeds"), "illegal.feeds")
    feeds: list[IllegalFeed] = []
    names: set[str] = set()
    for i, item in enumerate(items or []):
        at = items.at(i) if items is not None else tier.at("feeds")
        fm = ck.mapping(item, at, "an illegal-tier feed", _FEED_KEYS)
        if fm is None:
            continue
        feed = _feed(ck, fm, at, folder)
        if feed is None:
            continue
        if feed.name in names:
            ck.fail(at, f"two feeds are named '{feed.name}'")
            continue
        names.add(feed.name)
        feeds.append(feed)
    return tuple(feeds)


def _feed(ck: Checker, fm: LMap, at: Where, folder: Path) -> IllegalFeed | None:
    name = ck.text(fm.get("name"), fm.at("name") if "name" in fm else at, "a feed's name")
    url = ck.text(fm.get("url"), fm.at("url") if "url" in fm else at, "a feed's url")
    if not name or not url:
        return None
    if not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
        ck.fail(fm.at("name"), "a feed's name is letters, digits, '-' and '_' (it names files)")
        return None
    if urlparse(url).scheme != "https":
        ck.fail(fm.at("url"), "an illegal-tier feed is fetched over https:// only")
        return None
    fmt = str(fm.get("format", "plain"))
    if fmt not in FORMATS:
        ck.fail(fm.at("format"), f"a feed's format is {' or '.join(FORMATS)}, not '{fmt}'")
        return None
    match = str(fm.get("match", "exact"))
    if match not in MATCHES:
        ck.fail(fm.at("match"), f"a feed's match is {' or '.join(MATCHES)}, not '{match}'")
        return None
    checksum_url = str(fm.get("checksum_url") or "")
    if checksum_url and urlparse(checksum_url).scheme != "https":
        ck.fail(fm.at("checksum_url"), "a feed's checksum_url is https:// only")
        return None
    files = {k: ck.file_read_when_used(fm, k) for k in ("secret_file", "client_cert", "client_key")}
    if (files["client_cert"] is None) != (files["client_key"] is None):
        ck.fail(at, "a client certificate needs both client_cert and client_key")
        return None
    return IllegalFeed(
        name=name,
        url=url,
        folder=folder,
        format=fmt,  # type: ignore[arg-type]
        match=match,  # type: ignore[arg-type]
        secret_file=files["secret_file"],
        client_cert=files["client_cert"],
        client_key=files["client_key"],
        ca_file=ck.file_read_when_used(fm, "ca_file"),
        checksum_url=checksum_url,
        refresh_hours=_hours(ck, fm, "refresh_hours", 6.0),
        max_age_hours=_hours(ck, fm, "max_age_hours", 24.0),
    )


def _hours(ck: Checker, fm: LMap, key: str, default: float) -> float:
    value = fm.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 24 * 30:
        ck.fail(fm.at(key), f"{key} is a number of hours, more than 0 and at most 720")
        return default
    return float(value)

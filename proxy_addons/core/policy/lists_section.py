"""The policy's lists: `categories:` (the list files behind each category) and `illegal:`
(the provider's illegal-tier lists), and the check that no allow rule or decryption
exemption reaches an illegal-tier entry (the tier cannot be weakened).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from proxy_addons.core.hosts import HostError, canonical_url_entry
from proxy_addons.core.illegal_hashes import hashed_hit, is_hashed_entry
from proxy_addons.core.lists.layout import CategorySources
from proxy_addons.core.lists.sources import ListSource
from proxy_addons.core.policy.checker import RESERVED_CATEGORY, Checker
from proxy_addons.core.policy.illegal_feed import IllegalFeed
from proxy_addons.core.policy.illegal_feeds import load_feeds
from proxy_addons.core.policy.model import Action, Category, Decryption, IllegalTier, Profile
from proxy_addons.core.policy.yaml_reader import LMap, Where
from proxy_addons.core.url_keys import illegal_key, key_host

_SOURCE_KINDS = ("ut1", "domains", "hosts", "urls")


def load_categories(ck: Checker, raw: Any, where: Where) -> dict[str, Category]:
    out: dict[str, Category] = {}
    if not isinstance(raw, LMap):
        ck.fail(where, "the policy needs a 'categories:' section naming the lists it uses")
        return out
    ck.declared_categories.update(raw)
    for name, value in raw.items():
        at = raw.at(name)
        if name.lower() == RESERVED_CATEGORY:
            ck.fail(at, "'illegal' is reserved for the illegal tier, which has its own section")
            continue
        cm = ck.mapping(value, at, f"category '{name}'", ["label", "sources"])
        if cm is None:
            continue
        label = ck.text(cm.get("label", name), cm.at("label"), f"the label of '{name}'") or name
        sources: list[ListSource] = []
        items = ck.listing(cm.get("sources"), cm.at("sources"), f"the sources of '{name}'")
        for i, item in enumerate(items or []):
            sat = items.at(i) if items is not None else at
            if not (isinstance(item, LMap) and len(item) == 1):
                ck.fail(sat, f"a source is one of {', '.join(_SOURCE_KINDS)}: followed by a path")
                continue
            kind, target = next(iter(item.items()))
            if kind not in _SOURCE_KINDS:
                ck.fail(sat, f"'{kind}' is not a kind of list; use {', '.join(_SOURCE_KINDS)}")
                continue
            path = ck.path(target, sat, f"the {kind} list")
            if path is not None:
                if (kind == "ut1") != path.is_dir():
                    want = "a folder" if kind == "ut1" else "a file"
                    ck.fail(sat, f"the {kind} list should be {want}: {path}")
                    continue
                sources.append(ListSource(kind, path))  # type: ignore[arg-type]
        if not sources and items:
            continue
        if not sources:
            ck.fail(at, f"category '{name}' has no sources")
            continue
        out[name] = Category(name, label, CategorySources(name, tuple(sources)), at)
    return out


def load_illegal(ck: Checker, raw: Any, where: Where) -> IllegalTier:
    """`illegal:` as a list of files, or a mapping of `lists:` (the files) and `feeds:`
    (licensed feeds fetched into the feeds folder, illegal_feeds.py)."""
    exact: dict[str, str] = {}
    prefixes: list[tuple[str, str]] = []
    sources: list[Path] = []
    if raw is None:
        ck.fail(where, "the policy needs an 'illegal:' section with the provider's lists")
    feeds: tuple[IllegalFeed, ...] = ()
    if isinstance(raw, LMap):
        tier = ck.mapping(raw, where, "the illegal tier", ["lists", "feeds", "feeds_folder"])
        feeds = load_feeds(ck, tier) if tier is not None else ()
        where, raw = (raw.at("lists"), raw.get("lists")) if "lists" in raw else (where, [])
    items = ck.listing(raw, where, "the illegal tier") if raw is not None else None
    for i, item in enumerate(items or []):
        at = items.at(i) if items is not None else where
        if not (
            isinstance(item, LMap) and len(item) == 1 and next(iter(item)) in ("exact", "prefix")
        ):
            ck.fail(at, "an illegal-tier list is 'exact: FILE' or 'prefix: FILE'")
            continue
        kind, target = next(iter(item.items()))
        path = ck.path(target, at, "the illegal-tier list")
        if path is None:
            continue
        sources.append(path)
        for entry, _line in _read_url_list(ck, path):
            if kind == "exact":
                exact[entry] = str(path)
            else:
                prefixes.append((entry, str(path)))
    hashed: dict[str, str] = {}
    digests: dict[str, str] = {}
    for feed in feeds:
        digest = _load_feed(ck, feed, exact, prefixes, hashed)
        if digest:
            digests[feed.name] = digest
    if feeds and feeds[0].folder.is_dir():
        sources.append(feeds[0].folder)  # watched: a fetched list is taken at once
    hosts = frozenset(e.split("/", 1)[0] for e in (*exact, *(p for p, _ in prefixes)))
    return IllegalTier(exact, tuple(prefixes), hosts, tuple(sources), hashed, feeds, digests)


def _load_feed(
    ck: Checker,
    feed: IllegalFeed,
    exact: dict[str, str],
    prefixes: list[tuple[str, str]],
    hashed: dict[str, str],
) -> str:
    """A feed's last good list, if it was ever fetched; returns its SHA-256 ("" if none).

    Not there yet is no error (the doctor and an alert say so); the fetcher only ever
    puts a checked list there, so a line that doesn't read is reported like a file's."""
    try:
        data = feed.list_file.read_bytes()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        ck.fail(Where(str(feed.list_file), 0), f"cannot read the feed's list ({exc.strerror})")
        return ""
    source = str(feed.list_file)
    if feed.format == "hashed":
        for n, text in enumerate(_lines(data.decode("utf-8", "replace")), 1):
            if is_hashed_entry(text):
                hashed[text.lower()] = source
            elif text:
                ck.fail(Where(source, n), "a hashed feed's line is 64 hex digits")
    else:
        for entry, _n in _read_url_list(ck, feed.list_file):
            if feed.match == "exact":
                exact[entry] = source
            else:
                prefixes.append((entry, source))
    return hashlib.sha256(data).hexdigest()


def _lines(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines()]


def _read_url_list(ck: Checker, path: Path) -> Iterable[tuple[str, int]]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        ck.fail(Where(str(path), 0), f"cannot read the list ({exc.strerror})")
        return
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            yield canonical_url_entry(text), n
        except HostError as exc:
            ck.fail(Where(str(path), n), f"'{text}' is not a URL a browser could open ({exc})")


def _covers(domains: frozenset[str], host: str) -> bool:
    parts = host.split(".")
    return any(".".join(parts[i:]) in domains for i in range(len(parts)))


def protect_illegal_tier(
    ck: Checker,
    illegal: IllegalTier,
    profiles: dict[str, Profile],
    decryption: Decryption,
    categories: dict[str, Category],
) -> None:
    """Reject any allow rule or decryption exemption that would reach an illegal entry.

    Compared by case-folded match keys, as the illegal tier matches requests.
    """
    entries = [(illegal.exact_keys[k], k) for k in sorted(illegal.exact_keys)]
    entries += [(entry, key) for key, entry, _source, _b in illegal.prefix_keys]
    seen: set[tuple[str, int]] = set()
    for profile in profiles.values():
        for rule in profile.rules:
            if rule.action is not Action.ALLOW or (rule.profile, rule.index) in seen:
                continue
            seen.add((rule.profile, rule.index))
            urls = [illegal_key(u) for u in rule.urls]
            hashed = [d for d in (*urls, *rule.domains) if hashed_hit(illegal.hashed, d)]
            if hashed:
                ck.fail(
                    rule.where,
                    "this allow rule would reach a hashed entry of the illegal tier's feed; "
                    "the illegal tier cannot be overridden, so narrow the rule",
                )
                continue
            for entry, key in entries:
                hit = _covers(rule.domains, key_host(key)) or any(
                    key.startswith(u) or u.startswith(key) for u in urls
                )
                if hit:
                    ck.fail(
                        rule.where,
                        f"this allow rule would reach '{entry}' on the illegal tier; "
                        "the illegal tier cannot be overridden, so narrow the rule",
                    )
                    break
    for host in sorted(illegal.hosts):
        if _covers(decryption.host_only_domains, host):
            ck.fail(
                decryption.where,
                f"'{host}' has illegal-tier entries, so it must be decrypted; "
                "remove it from decryption.host_only",
            )

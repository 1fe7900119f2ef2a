"""Reading the policy's content-filter settings (called by load.py and profiles_section.py).

Two places in the policy:

    content_filter:                       # top level: the weighted phrase lists
      lists: [phrases/weighted/en.yaml, phrases/weighted/pl.yaml]
    profiles:
      ks2:
        content_filter:
          threshold: 100                  # a category scoring more blocks the page; off: none
          categories: [pornography, ...]  # the categories counted (default: all in the lists)
          scan: {generative_ai: 60}       # sites of these categories always scanned, with
                                          # their own (usually lower) threshold

A profile without `content_filter` takes its parent's (`extends`). Here so the loader only
calls in; each mistake is reported with its file and line, like the rest of the policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxy_addons.core.content.phrase_library import PhraseError
from proxy_addons.core.content.weighted_lists import load_weighted_lists
from proxy_addons.core.policy.checker import Checker
from proxy_addons.core.policy.model import Category, ContentFilter, Profile
from proxy_addons.core.policy.yaml_reader import LList, LMap, Where

MAX_THRESHOLD = 100_000


def _threshold(ck: Checker, value: Any, where: Where, what: str) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THRESHOLD:
        ck.fail(where, f"{what} should be a whole number from 1 to {MAX_THRESHOLD}, or off")
        return None
    return value


def profile_content_filter(
    ck: Checker, pm: LMap, parent: Profile | None, categories: dict[str, Category]
) -> ContentFilter:
    """A profile's `content_filter:`; without one, its parent's (or none)."""
    if "content_filter" not in pm:
        return parent.content_filter if parent is not None else ContentFilter()
    raw, where = pm["content_filter"], pm.at("content_filter")
    if raw is False or raw == "off":
        return ContentFilter()
    if not isinstance(raw, LMap):
        ck.fail(where, "content_filter should be settings such as {threshold: 100}, or off")
        return ContentFilter()
    for key in raw:
        if key not in ("threshold", "categories", "scan"):
            ck.fail(
                raw.at(key),
                f"'{key}' is not a setting of content_filter (threshold, categories, scan)",
            )
    threshold = None
    if raw.get("threshold", "off") not in ("off", False, None):
        threshold = _threshold(ck, raw["threshold"], raw.at("threshold"), "threshold")
    counted: list[str] = []
    if raw.get("categories") is not None:
        items = raw["categories"]
        if isinstance(items, LList) and all(isinstance(c, str) for c in items):
            counted = [c.strip() for c in items]
        else:
            ck.fail(raw.at("categories"), "categories should be a list of category names")
    scan: list[tuple[str, int]] = []
    if raw.get("scan") is not None:
        sites = raw["scan"]
        if not isinstance(sites, LMap):
            ck.fail(
                raw.at("scan"),
                "scan should map site categories to thresholds, e.g. {generative_ai: 60}",
            )
        else:
            for site, value in sites.items():
                if site not in categories:
                    ck.fail(sites.at(site), f"category '{site}' is not defined under 'categories:'")
                    continue
                limit = _threshold(ck, value, sites.at(site), f"scan.{site}")
                if limit is not None:
                    scan.append((site, limit))
    return ContentFilter(threshold, frozenset(counted), tuple(scan))


def content_lists(
    ck: Checker, raw: Any, where: Where, profiles: dict[str, Profile]
) -> tuple[Path, ...]:
    """The top-level `content_filter: {lists: [...]}`, checked, and the profiles against it."""
    paths: list[Path] = []
    if raw is not None:
        if not isinstance(raw, LMap) or set(raw) - {"lists"}:
            ck.fail(where, "content_filter (at the top) has one setting: lists: [files]")
        else:
            items = raw.get("lists")
            if not isinstance(items, LList) or not items:
                ck.fail(raw.at("lists"), "lists should name weighted phrase list files")
            else:
                for k, item in enumerate(items):
                    path = ck.path(item, items.at(k), f"weighted phrase list {k + 1}")
                    if path is not None:
                        paths.append(path)
    known: frozenset[str] = frozenset()
    if paths:
        try:
            known = load_weighted_lists(paths).categories
        except PhraseError as exc:  # a broken list is a broken policy, said with its line
            ck.fail(Where(exc.file, exc.line), f"{exc.field}: {exc.message}")
            return tuple(paths)
    for profile in profiles.values():
        cf = profile.content_filter
        if cf.threshold is None and not cf.scan:
            continue
        if not paths:
            ck.fail(
                profile.where,
                f"profile '{profile.name}' filters content, but no weighted "
                "lists are given: add 'content_filter: {lists: [...]}' at the top",
            )
            break
        for name in sorted(cf.categories - known):
            ck.fail(
                profile.where,
                f"profile '{profile.name}' content_filter: '{name}' is not a "
                f"category of the weighted lists ({', '.join(sorted(known))})",
            )
    return tuple(paths)

"""The policy reader's checker: collects every problem with its file and line.

Each section of the policy is read by its own module (`*_section.py`); they share this
checker and its helpers for the shapes that recur (a mapping of settings, a list, a file,
an enum, domain names), so every mistake is reported the same way and all of them at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

from proxy_addons.core.hosts import HostError, canonical_host
from proxy_addons.core.policy.model import Action, Audience, Decrypt, UntrustedClients
from proxy_addons.core.policy.yaml_reader import LList, LMap, Where

RESERVED_CATEGORY = "illegal"


class Checker:
    """Collects problems while reading; helpers return None on bad input."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.problems: list[tuple[Where, str]] = []
        self.files: list[Path] = []
        self.declared_categories: set[str] = set()  # named, even if their lists failed

    def fail(self, where: Where, message: str) -> None:
        self.problems.append((where, message))

    def mapping(self, value: Any, where: Where, what: str, allowed: Iterable[str]) -> LMap | None:
        if value is None:
            return empty_map(where)
        if not isinstance(value, LMap):
            self.fail(where, f"{what} should be a set of 'name: value' settings")
            return None
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                tip = f" Did you mean '{hint[0]}'?" if hint else f" Expected: {', '.join(allowed)}."
                self.fail(value.at(key), f"'{key}' is not a setting of {what}.{tip}")
        return value

    def text(self, value: Any, where: Where, what: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.fail(where, f"{what} should be some text")
        return None

    def listing(self, value: Any, where: Where, what: str) -> LList | None:
        if value is None:
            return empty_list(where)
        if isinstance(value, str):
            value = _single(value, where)
        if not isinstance(value, LList):
            self.fail(where, f"{what} should be a list, e.g. [a, b]")
            return None
        return value

    def day(self, value: Any, where: Where, what: str) -> date | None:
        if isinstance(value, date):
            return value
        self.fail(where, f"{what} should be a date written YYYY-MM-DD")
        return None

    def path(self, value: Any, where: Where, what: str) -> Path | None:
        text = self.text(value, where, what)
        if text is None:
            return None
        path = (self.base / text).resolve()
        if not path.exists():
            self.fail(where, f"{what} '{text}' does not exist (looked for {path})")
            return None
        self.files.append(path)
        return path

    def file_read_when_used(self, m: LMap, key: str) -> Path | None:
        """`m[key]`, a file the gateway reads when it needs it (a secret, a table): checked
        to exist, but not added to `files`, whose hashes go into the audit log."""
        if m.get(key) is None:
            return None
        at = m.at(key)
        text = self.text(m[key], at, key)
        path = (self.base / text).resolve() if text else None
        if path is not None and not path.is_file():
            self.fail(at, f"{key} '{text}' does not exist (looked for {path})")
            return None
        return path

    def whole(self, m: LMap, key: str, default: int, low: int, high: int) -> int:
        """`m[key]` (else `default`), a whole number from `low` to `high`."""
        value = m.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(m.at(key), f"{key} should be a whole number from {low} to {high}")
            return default
        return value


def empty_map(where: Where) -> LMap:
    out = LMap()
    out.where, out.member_where = where, {}
    return out


def empty_list(where: Where) -> LList:
    out = LList()
    out.where, out.member_where = where, {}
    return out


def _single(value: str, where: Where) -> LList:
    out = empty_list(where)
    out.append(value)
    return out


def name_set(ck: Checker, raw: Any, where: Where, what: str) -> frozenset[str]:
    return frozenset(str(n).strip().lower() for n in ck.listing(raw, where, what) or [])


def enum_setting[E: (Action, Audience, Decrypt, UntrustedClients)](
    ck: Checker, kind: type[E], m: LMap, key: str, default: E | None
) -> E | None:
    if key not in m:
        return default
    try:
        return kind(str(m[key]).lower())
    except ValueError:
        words = ", ".join(e.value for e in kind)
        ck.fail(m.at(key), f"{key} should be one of {words}, not '{m[key]}'")
        return default


def domain_names(ck: Checker, raw: Any, where: Where) -> frozenset[str]:
    out: set[str] = set()
    items = ck.listing(raw, where, "domains")
    for i, item in enumerate(items or []):
        try:
            out.add(canonical_host(str(item).strip()).name)
        except HostError:
            at = items.at(i) if items is not None else where
            ck.fail(at, f"'{item}' is not a domain name or IP address")
    return frozenset(out)

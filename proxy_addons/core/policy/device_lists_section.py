"""The school's device lists under `devices:`: `software:` (approved and banned
applications), `accounts:` (approved local administrators) and `removable_storage:` (the
devices allowed USB storage).

The DfE cyber security standard asks that no software is installed without the consent of
SLT/IT, that accounts with admin rights are used only for admin work, and that removable
storage is blocked unless approved; these lists are how a school says what it consents to.
Software and account patterns are shell-style (`Microsoft *`) and matched without regard to
case by the agent (agent/checks/judge.py). A long list may live in a text file beside the
policy (`approved_file:`/`banned_file:`), one pattern a line, `#` starting a comment.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.checks.thresholds import Thresholds
from proxy_addons.core.policy.checker import Checker
from proxy_addons.core.policy.yaml_reader import LMap, Where

MAX_PATTERNS = 500  # per list, as the agent accepts (agent/checks/thresholds.py)
MAX_PATTERN = 200  # characters
MAX_NAMES = 5000  # devices allowed USB storage
_EVERYTHING = frozenset({"*", "**", "*.*"})


def _pattern(ck: Checker, value: Any, where: Where, what: str) -> str | None:
    """One pattern as the agent takes it, or None (named with its place) if it can't be."""
    text = str(value).strip() if isinstance(value, (str, int, float)) else ""
    if not text or len(text) > MAX_PATTERN or not text.isprintable():
        ck.fail(where, f"{what}: a pattern is one line of 1 to {MAX_PATTERN} characters")
        return None
    if text in _EVERYTHING:
        ck.fail(where, f"{what}: '{text}' matches every name; leave the list out instead")
        return None
    return text


def _from_file(ck: Checker, path: Path, what: str) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        ck.fail(Where(str(path), 0), f"cannot read {what} ({exc.strerror})")
        return []
    found = []
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            found.append(_pattern(ck, text, Where(str(path), n), what))
    return [p for p in found if p is not None]


def _patterns(ck: Checker, m: LMap, key: str, what: str) -> tuple[str, ...]:
    """`m[key]` (a list) and `m[key + '_file']` (a file of patterns), as one list with each
    pattern once (compared without regard to case, as they are matched)."""
    found: list[str] = []
    items = ck.listing(m.get(key), m.at(key), what)
    for i, item in enumerate(items or []):
        pattern = _pattern(ck, item, items.at(i) if items is not None else m.at(key), what)
        if pattern is not None:
            found.append(pattern)
    file_key = f"{key}_file"
    if m.get(file_key) is not None:
        path = ck.path(m[file_key], m.at(file_key), f"the {what} file")
        found += _from_file(ck, path, what) if path is not None else []
    seen: set[str] = set()
    unique = []
    for pattern in found:
        if pattern.casefold() not in seen:
            seen.add(pattern.casefold())
            unique.append(pattern)
    if len(unique) > MAX_PATTERNS:
        ck.fail(m.at(key), f"{what} has {len(unique)} patterns; at most {MAX_PATTERNS}")
        return ()
    return tuple(unique)


def with_lists(ck: Checker, m: LMap, thresholds: Thresholds) -> Thresholds:
    """`thresholds` with the policy's software and administrator lists in them."""
    keys = ["approved", "banned", "approved_file", "banned_file"]
    sw = ck.mapping(m.get("software"), m.at("software"), "devices.software", keys)
    approved = _patterns(ck, sw, "approved", "software.approved") if sw is not None else ()
    banned = _patterns(ck, sw, "banned", "software.banned") if sw is not None else ()
    both = {p.casefold() for p in approved} & {p.casefold() for p in banned}
    for pattern in sorted(both):
        ck.fail(m.at("software"), f"software: '{pattern}' is both approved and banned")
    acc = ck.mapping(m.get("accounts"), m.at("accounts"), "devices.accounts", ["approved_admins"])
    admins = _patterns(ck, acc, "approved_admins", "accounts.approved_admins") if acc else ()
    return replace(
        thresholds,
        software_approved=approved,
        software_banned=banned,
        admin_accounts_approved=admins,
    )


def load_usb_allowed(ck: Checker, raw: Any, where: Where) -> frozenset[str]:
    """`removable_storage.allowed`: device ids, hostnames or asset tags (any case) whose
    devices may use USB storage; every other device should block it."""
    m = ck.mapping(raw, where, "devices.removable_storage", ["allowed"])
    if m is None:
        return frozenset()
    items = ck.listing(m.get("allowed"), m.at("allowed"), "removable_storage.allowed")
    names: set[str] = set()
    for i, item in enumerate(items or []):
        text = str(item).strip() if isinstance(item, (str, int)) else ""
        if not text or len(text) > 200 or not text.isprintable() or "*" in text:
            at = items.at(i) if items is not None else m.at("allowed")
            ck.fail(at, "removable_storage.allowed names a device: its id, hostname or asset tag")
            continue
        names.add(text.casefold())
    if len(names) > MAX_NAMES:
        ck.fail(m.at("allowed"), f"removable_storage.allowed names over {MAX_NAMES} devices")
        return frozenset()
    return frozenset(names)


def usb_storage_allowed(allowed: frozenset[str], *names: str | None) -> bool:
    """Whether a device known by any of `names` (id, hostname, asset tag) is on the list."""
    return any(n is not None and n.strip().casefold() in allowed for n in names)


__all__ = ["load_usb_allowed", "usb_storage_allowed", "with_lists"]

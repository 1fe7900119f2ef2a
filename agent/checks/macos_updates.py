"""macOS patches: what `softwareupdate --list` has pending, which of it carries security
fixes, and the Software Update settings; judged by the oldest pending security update's age.

Apple doesn't tag updates as "security" or date them in `softwareupdate`'s output, so a
security update is recognised by what Apple ships security fixes in: an update of the
installed macOS (same major version, "Action: restart"), a Rapid Security Response or
Background Security Improvement, a "Security Update", XProtect. An upgrade to a new major
macOS is offered the same way but is not a pending patch, so it is left out. Its age is
when this agent first saw it pending (checks/memory.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.checks.base import (
    Context,
    Pending,
    clip,
    describe,
    judge_patches,
    unknown,
    version_tuple,
)
from agent.report import CheckResult

SU_PREFS = "/Library/Preferences/com.apple.SoftwareUpdate"
_SECURITY_TITLE = re.compile(
    r"Security Response|Security Update|Background Security|XProtect|\(a\)|\(b\)|\(c\)", re.I
)
_OS_TITLE = re.compile(r"^macOS [A-Za-z ]+?(\d+)(?:\.\d+)*")


@dataclass(frozen=True)
class Update:
    """One pending item of `softwareupdate --list`."""

    label: str
    title: str
    recommended: bool
    restart: bool


def parse_list(text: str) -> list[Update] | None:
    """The pending updates, [] for "No new software available.", None for anything else.

    Since macOS 10.15 each item is a `* Label: <label>` line followed by a tab-indented
    `Title: <title>, Version: ..., Size: ..., Recommended: YES, Action: restart,` line.
    """
    labels = re.findall(r"^\* Label: (.+?)\s*$", text, re.M)
    if not labels:
        return [] if "No new software available." in text else None
    details = re.findall(r"^\s+Title: (.+?)\s*$", text, re.M)
    if len(details) != len(labels):
        return None
    out = []
    for label, detail in zip(labels, details, strict=True):
        title = detail.split(", Version:")[0]
        out.append(
            Update(
                label=label,
                title=title,
                recommended="Recommended: YES" in detail,
                restart="Action: restart" in detail,
            )
        )
    return out


def is_security(update: Update, os_major: int | None) -> bool:
    """Whether Apple ships security fixes in it (see the module's docstring)."""
    if _SECURITY_TITLE.search(update.title) or _SECURITY_TITLE.search(update.label):
        return True
    m = _OS_TITLE.match(update.title)
    if m and update.restart:
        # an update of the installed macOS; a new major version is an upgrade, not a patch
        return os_major is not None and int(m.group(1)) == os_major
    return False


def defaults_read(ctx: Context, domain: str, key: str) -> str | None:
    """`defaults read DOMAIN KEY`'s value, None when it isn't set or can't be read."""
    res = ctx.runner.run(["defaults", "read", domain, key], timeout=10)
    return res.stdout.strip() if res.ok else None


def os_major(ctx: Context) -> int | None:
    """The installed macOS major version from `sw_vers`, None when unreadable."""
    res = ctx.runner.run(["sw_vers"], timeout=10)
    m = re.search(r"^ProductVersion:\s*(\S+)\s*$", res.stdout, re.M) if res.ok else None
    have = version_tuple(m.group(1)) if m and re.fullmatch(r"[\d.]+", m.group(1)) else None
    return have[0] if have else None


def _auto_updates(ctx: Context) -> tuple[bool | None, dict[str, str | None]]:
    flags = {
        k: defaults_read(ctx, SU_PREFS, k)
        for k in (
            "AutomaticCheckEnabled",
            "AutomaticallyInstallMacOSUpdates",
            "CriticalUpdateInstall",
        )
    }
    if (
        any(v not in ("0", "1", None) for v in flags.values())
        or flags["AutomaticCheckEnabled"] is None
    ):
        return None, flags
    # an absent install flag means macOS's default, which is on for critical updates
    return flags["AutomaticCheckEnabled"] == "1" and flags["CriticalUpdateInstall"] != "0", flags


def _last_update(ctx: Context) -> str | None:
    last = defaults_read(ctx, SU_PREFS, "LastFullSuccessfulDate")
    if not last:
        return None
    try:
        return datetime.strptime(last, "%Y-%m-%d %H:%M:%S %z").astimezone(UTC).isoformat()
    except ValueError:
        return None


def patches(ctx: Context) -> CheckResult:
    cid = "patches"
    res = ctx.runner.run(["softwareupdate", "--list"], timeout=180)
    text = res.stdout + res.stderr  # the header and "No new software" go to stderr
    if not res.ok:
        return unknown(cid, f"softwareupdate failed ({describe(res)}).")
    updates = parse_list(text)
    if updates is None:
        return unknown(cid, "softwareupdate printed something we don't recognise.", raw=clip(text))
    major = os_major(ctx)
    security = [u for u in updates if is_security(u, major)]
    auto, flags = _auto_updates(ctx)
    ev: dict[str, object] = {
        "manager": "softwareupdate",
        "pending": len(updates),
        "security": len(security),
        "updates": [u.title for u in updates][:10],
        "os_major": major,
        "auto_updates": auto,
        "auto_flags": flags,
        "last_update": _last_update(ctx),
        "reboot_required": None,
    }
    os_updates = [u for u in updates if _OS_TITLE.match(u.title) and u.restart]
    if os_updates and major is None:
        return unknown(
            cid,
            "A macOS update is pending but the installed version couldn't be read, so "
            "whether it is a security update or an upgrade can't be told.",
            **ev,
        )
    return judge_patches(cid, ev, ctx, [Pending(u.label) for u in security])

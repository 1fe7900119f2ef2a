"""The judgements the DfE standard's device checks share on every platform.

Each platform's probe reads what its OS says (and says "couldn't read" as None); these
functions turn that into pass, fail or unknown by the school's thresholds and lists, so a
Windows laptop and a Mac are judged by the same rule in the same words. A part that
couldn't be read makes the whole unknown unless another part already fails: unknown is
never a pass.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import date
from fnmatch import fnmatchcase
from typing import Any, Literal

from agent.checks.base import Context, fail, ok, unknown
from agent.report import CheckResult

Kind = Literal["laptop", "desktop", "tablet"]
# SMBIOS 3.x chassis types (System Enclosure, type 3): Linux's /sys/class/dmi/id/chassis_type
# and Windows' Win32_SystemEnclosure.ChassisTypes both give them.
LAPTOP_CHASSIS = {8, 9, 10, 14, 31, 32}  # portable ... sub notebook, convertible, detachable
TABLET_CHASSIS = {30}
DESKTOP_CHASSIS = {3, 4, 5, 6, 7, 13, 15, 16, 24, 35, 36}  # desktop ... sealed-case, mini, stick
_LISTED = 30  # names listed in evidence at most; counts say the rest


def _plain(text: str) -> str:
    """A name as a person reads it: compatibility forms folded (full-width letters, a
    no-break space), invisible format characters (zero-width spaces, direction marks)
    dropped, runs of white space made one space, any case; so a zero-width space inside
    "Tor Browser" or a doubled space can't slip past a banned "tor browser*"."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return " ".join(text.split()).casefold()


def matches(name: str, patterns: Iterable[str]) -> str | None:
    """The first pattern (shell-style, any case) the whole name matches, or None. The name's
    own `*?[` are plain characters: only the policy's patterns are patterns."""
    folded = _plain(name)
    for pattern in patterns:
        if fnmatchcase(folded, _plain(pattern)):
            return pattern
    return None


def _verdict(cid: str, failed: list[str], unread: list[str], passed: str, **ev: Any) -> CheckResult:
    if failed:
        return fail(cid, " ".join(failed), **ev)
    if unread:
        return unknown(cid, " ".join(unread), **ev)
    return ok(cid, passed, **ev)


def judge_software(
    cid: str, installed: Iterable[str] | None, ctx: Context, **ev: Any
) -> CheckResult:
    """Installed applications against the school's banned and approved lists, and what is
    new since the last report (remembered by the agent; None on its first report)."""
    if installed is None:
        return unknown(cid, "Couldn't read the installed applications.", **ev)
    names = sorted(set(installed), key=str.casefold)
    if not names:
        return unknown(cid, "The list of installed applications came back empty.", **ev)
    t = ctx.thresholds
    before = ctx.memory.previous("software")
    ctx.memory.remember("software", names)
    banned = [n for n in names if matches(n, t.software_banned)]
    unapproved = (
        [n for n in names if not matches(n, t.software_approved) and n not in banned]
        if t.software_approved
        else []
    )
    new = None if before is None else [n for n in names if n not in before]
    ev = {
        **ev,
        "installed": len(names),
        "banned": banned[:_LISTED],
        "unapproved": unapproved[:_LISTED],
        "unapproved_count": len(unapproved),
        "new_since_last_report": None if new is None else new[:_LISTED],
        "approved_list": bool(t.software_approved),
    }
    failed = []
    if banned:
        failed.append(f"Banned software installed: {', '.join(banned[:5])}.")
    if unapproved:
        failed.append(
            f"{len(unapproved)} applications not on the approved list, e.g. "
            f"{', '.join(unapproved[:5])}."
        )
    if t.software_approved:
        passed = f"All {len(names)} applications are on the approved list; none banned."
    else:
        passed = f"{len(names)} applications, none banned (the policy has no approved list)."
    return _verdict(cid, failed, [], passed, **ev)


def judge_accounts(
    cid: str,
    ctx: Context,
    *,
    user: str | None,
    admins: Iterable[str] | None,
    autologin: bool | None,
    guest: bool | None,
    **ev: Any,
) -> CheckResult:
    """The signed-in user is not an administrator for routine work, the only local
    administrators are the approved ones, automatic sign-in and the guest account are off.
    `admins` are the enabled local administrator accounts (built-in ones the OS can't
    remove, like root, left out by the platform); None means couldn't read. `user` is ""
    when no one is signed in: that part has nothing to judge (the rest still does)."""
    approved = ctx.thresholds.admin_accounts_approved
    admin_list = None if admins is None else sorted(set(admins), key=str.casefold)
    unexpected = [a for a in admin_list or [] if not matches(a, approved)]
    ev = {
        **ev,
        "user": user,
        "admins": admin_list,
        "unapproved_admins": unexpected,
        "autologin": autologin,
        "guest": guest,
    }
    failed, unread = [], []
    if admin_list is None:
        unread.append("Couldn't read the local administrators.")
    else:
        if unexpected:
            failed.append(f"Local administrators not approved: {', '.join(unexpected[:5])}.")
        if user is None:
            unread.append("Couldn't read who is signed in.")
        elif user == "":
            pass  # no one signed in (a lab PC at night): nothing to judge in this part
        elif user in admin_list and not matches(user, approved):
            failed.append(f"The signed-in user {user} is a local administrator.")
    if autologin is True:
        failed.append("Automatic sign-in is on.")
    elif autologin is None:
        unread.append("Couldn't tell whether automatic sign-in is on.")
    if guest is True:
        failed.append("The guest account is on.")
    elif guest is None:
        unread.append("Couldn't tell whether the guest account is on.")
    who = f"{user} is not an administrator" if user else "No one is signed in"
    passed = f"{who}; administrators are approved; no automatic sign-in; no guest."
    return _verdict(cid, failed, unread, passed, **ev)


def judge_password_policy(
    cid: str, ctx: Context, *, min_length: int | None, lockout: int | None, **ev: Any
) -> CheckResult:
    """The local account policy: at least the school's minimum length, and a lockout after at
    most `lockout_max_attempts` failures (0 or None from the OS: never locks / unread)."""
    t = ctx.thresholds
    ev = {
        **ev,
        "min_length": min_length,
        "lockout_attempts": lockout,
        "want_min_length": t.password_min_length,
        "want_lockout_max": t.lockout_max_attempts,
    }
    failed, unread = [], []
    if min_length is None:
        unread.append("Couldn't read the minimum password length.")
    elif min_length == 0:
        failed.append(
            f"No minimum password length is set; the school asks for {t.password_min_length}."
        )
    elif min_length < t.password_min_length:
        failed.append(
            f"Passwords may be {min_length} characters; the school asks for at least "
            f"{t.password_min_length}."
        )
    if lockout is None:
        unread.append("Couldn't read the lockout after failed sign-ins.")
    elif lockout == 0:
        failed.append("Accounts never lock after failed sign-ins.")
    elif lockout > t.lockout_max_attempts:
        failed.append(
            f"Accounts lock after {lockout} failed sign-ins; at most "
            f"{t.lockout_max_attempts} is allowed."
        )
    passed = f"Passwords of at least {min_length} characters; locks after {lockout} failures."
    return _verdict(cid, failed, unread, passed, **ev)


def chassis_kind(types: Iterable[int]) -> Kind | None:
    """The kind of device SMBIOS chassis types say (a tablet wins: it has 3 years, not 5);
    None for types that say nothing (other, unknown, a server's)."""
    found = set(types)
    if found & TABLET_CHASSIS:
        return "tablet"
    if found & LAPTOP_CHASSIS:
        return "laptop"
    if found & DESKTOP_CHASSIS:
        return "desktop"
    return None


def judge_hardware_age(
    cid: str, ctx: Context, *, made: date | None, kind: Kind | None, basis: str, **ev: Any
) -> CheckResult:
    """Hardware within the years of security support the standard plans (5 for laptops and
    desktops, 3 for tablets). `made` is the best date the device gives (firmware release,
    model year) and `basis` says which."""
    t = ctx.thresholds
    years = t.tablet_support_years if kind == "tablet" else t.laptop_support_years
    ev = {**ev, "made": made.isoformat() if made else None, "kind": kind, "basis": basis}
    if made is None:
        return unknown(cid, f"Couldn't tell how old the hardware is ({basis}).", **ev)
    age = (ctx.now.date() - made).days / 365.25
    ev["age_years"] = round(age, 1)
    what = kind or "device"
    if age > years:
        return fail(
            cid,
            f"This {what} dates from {made.year} ({basis}), {age:.1f} years old: beyond the "
            f"{years} years of security support planned.",
            **ev,
        )
    return ok(cid, f"This {what} dates from {made.year} ({basis}), within {years} years.", **ev)


def judge_removable_storage(
    cid: str, ctx: Context, *, blocked: bool | None, how: str, **ev: Any
) -> CheckResult:
    """USB mass storage blocked unless the gateway says this device is on the approved list;
    `how` names the rule read (udev/modprobe, the registry policy, the profile)."""
    ev = {
        **ev,
        "blocked": blocked,
        "how": how,
        "allowed_by_policy": ctx.thresholds.usb_storage_allowed,
    }
    if ctx.thresholds.usb_storage_allowed:
        return ok(cid, "This device is on the school's approved list for USB storage.", **ev)
    if blocked is None:
        return unknown(cid, f"Couldn't tell whether USB storage is blocked ({how}).", **ev)
    if blocked:
        return ok(cid, f"USB storage is blocked ({how}).", **ev)
    return fail(cid, f"USB storage is not blocked ({how}).", **ev)

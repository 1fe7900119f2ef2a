"""macOS software and accounts: the applications in /Applications, the local administrators,
the signed-in user, automatic sign-in and the guest account, and the password policy.

What these read is the same in every language: `dscl` and `defaults` print the stored values
(account names, 0/1), `defaults` says "does not exist" in English for an absent key, and
`pwpolicy` prints a property list whose policy expressions are not translated. Anything
else (an error, a changed format) is unknown.
"""

from __future__ import annotations

import plistlib
import re
from xml.parsers.expat import ExpatError

from agent.checks.base import Context, clip, describe
from agent.checks.judge import judge_accounts, judge_password_policy, judge_software
from agent.checks.macos_updates import os_major
from agent.report import CheckResult

LOGINWINDOW = "/Library/Preferences/com.apple.loginwindow"
APP_FOLDERS = ("/Applications", "/Applications/Utilities")
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_MAX_SUBFOLDERS = 200  # folders under /Applications looked into; more is noted, not read
ADMIN_GID = "80"  # the admin group: an account whose primary group it is, is an admin too
_MAX_FAILED = "policyAttributeMaximumFailedAuthentications"
_MIN_LENGTH = re.compile(r"policyAttributePassword matches '(\^\$\|)?\.\{(\d+),\d*\}\+?'")


def console_user(ctx: Context) -> str | None:
    """Who is signed in at the screen: "" at the login window (root owns the console then),
    None when it can't be read."""
    res = ctx.runner.run(["stat", "-f%Su", "/dev/console"], timeout=10)
    user = res.stdout.strip()
    if not res.ok or not _NAME.fullmatch(user):
        return None
    return "" if user == "root" else user


def installed_apps(ctx: Context) -> tuple[list[str] | None, dict[str, object]]:
    """Application bundles in /Applications, its Utilities folder and the folders one level
    down (suites like "Adobe Photoshop 2024/" keep their apps there, and so can anyone who
    wants an app missed), by name; the names on disk are the developers' (English) ones
    whatever the Finder shows."""
    names: list[str] = []
    read: dict[str, object] = {}
    top = ctx.runner.listdir(APP_FOLDERS[0])
    read[APP_FOLDERS[0]] = None if top is None else len(top)
    if top is None:
        return None, read
    names += [e.removesuffix(".app") for e in top if e.endswith(".app")]
    subfolders = [e for e in top if not e.endswith(".app") and not e.startswith(".")]
    for sub in subfolders[:_MAX_SUBFOLDERS]:
        folder = f"{APP_FOLDERS[0]}/{sub}"
        entries = ctx.runner.listdir(folder)  # None: a file, not a folder
        if entries is not None:
            read[folder] = len(entries)
            names += [e.removesuffix(".app") for e in entries if e.endswith(".app")]
    if len(subfolders) > _MAX_SUBFOLDERS:
        read["subfolders_not_read"] = len(subfolders) - _MAX_SUBFOLDERS
    return names, read


def software(ctx: Context) -> CheckResult:
    apps, read = installed_apps(ctx)
    return judge_software("software", apps, ctx, folders=read)


def admin_members(ctx: Context) -> tuple[list[str] | None, str]:
    """Members of the local admin group, root left out (it is built in and disabled)."""
    res = ctx.runner.run(["dscl", ".", "-read", "/Groups/admin", "GroupMembership"], timeout=10)
    text = res.stdout.strip()
    if not res.ok:
        return None, describe(res)
    m = re.fullmatch(r"GroupMembership:((?:\s+\S+)*)", text)
    if text.startswith("No such key: GroupMembership"):
        members: list[str] = []
    elif m:
        members = m.group(1).split()
    else:
        return None, clip(text, 200)
    if not all(_NAME.fullmatch(n) for n in members):
        return None, clip(text, 200)
    primary = ctx.runner.run(["dscl", ".", "-list", "/Users", "PrimaryGroupID"], timeout=10)
    if not primary.ok:  # an admin by primary group would be missed: not a pass
        return None, f"primary groups not read ({describe(primary)})"
    for line in primary.stdout.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1] == ADMIN_GID and _NAME.fullmatch(fields[0]):
            members.append(fields[0])
    return [n for n in dict.fromkeys(members) if n != "root"], clip(text, 200)


def _loginwindow(ctx: Context, key: str) -> tuple[str | None, bool, str]:
    """(value, absent, raw) of a loginwindow preference; absent means the key isn't set."""
    res = ctx.runner.run(["defaults", "read", LOGINWINDOW, key], timeout=10)
    raw = clip(res.stdout.strip() or res.stderr.strip(), 200)
    if res.ok:
        return res.stdout.strip(), False, raw
    absent = res.returncode == 1 and f"{key}) does not exist" in res.stderr + res.stdout
    return None, absent, raw


def accounts(ctx: Context) -> CheckResult:
    admins, dscl = admin_members(ctx)
    login, login_absent, login_raw = _loginwindow(ctx, "autoLoginUser")
    autologin = True if login else (False if login_absent else None)
    guest_value, guest_absent, guest_raw = _loginwindow(ctx, "GuestEnabled")
    guest: bool | None = {"1": True, "0": False}.get(guest_value or "")
    major = None
    if guest_value is None and guest_absent:
        major = os_major(ctx)  # the guest account is off by default since macOS 14
        guest = False if major is not None and major >= 14 else None
    return judge_accounts(
        "accounts",
        ctx,
        user=console_user(ctx),
        admins=admins,
        autologin=autologin,
        guest=guest,
        dscl=dscl,
        autoLoginUser=login_raw,
        GuestEnabled=guest_raw,
        os_major=major,
    )


def _policies(text: str) -> dict[str, object] | None:
    start = text.find("<?xml")
    if start < 0:
        start = text.find("<plist")
    if start < 0:
        return None
    try:
        data = plistlib.loads(text[start:].encode())
    except (plistlib.InvalidFileException, ExpatError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _items(policies: dict[str, object], category: str) -> list[dict[str, object]]:
    items = policies.get(category, [])
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def read_password_policy(text: str) -> tuple[int, int] | None:
    """(minimum length, failed sign-ins before lockout; 0 = never) from `pwpolicy
    -getaccountpolicies`, or None when the output isn't the property list it prints.

    Every policy must hold, so the longest minimum and the fewest attempts count; a
    minimum written '^$|.{4,}+' also lets the password be empty, so it is 0.
    """
    if "<plist" not in text:
        # with no policy at all pwpolicy prints only its header line
        return (0, 0) if text.strip() == "Getting global account policies" else None
    policies = _policies(text)
    if policies is None:
        return None
    lengths = [0]
    for item in _items(policies, "policyCategoryPasswordContent"):
        m = _MIN_LENGTH.search(str(item.get("policyContent", "")))
        if m:
            lengths.append(0 if m.group(1) else int(m.group(2)))
    attempts = []
    for item in _items(policies, "policyCategoryAuthentication"):
        params = item.get("policyParameters")
        content = str(item.get("policyContent", ""))
        value = params.get(_MAX_FAILED) if isinstance(params, dict) else None
        counted = "policyAttributeFailedAuthentications < policyAttributeMaximum" in content
        if counted and isinstance(value, int) and value > 0:
            attempts.append(value)
    return max(lengths), min(attempts, default=0)


def password_policy(ctx: Context) -> CheckResult:
    cid = "password_policy"
    res = ctx.runner.run(["pwpolicy", "-getaccountpolicies"], timeout=20)
    rules = re.findall(r"<string>(\(?policyAttribute[^<]*)</string>", res.stdout)
    ev: dict[str, object] = {"rules": [clip(r, 120) for r in rules[:8]]}
    if not rules:
        ev["pwpolicy"] = clip(res.stdout or res.stderr, 300)
    if not res.ok:
        ev["why"] = f"pwpolicy failed ({describe(res)}); it needs root"
        return judge_password_policy(cid, ctx, min_length=None, lockout=None, **ev)
    read = read_password_policy(res.stdout)
    if read is None:
        ev["why"] = "pwpolicy printed something we don't recognise"
        return judge_password_policy(cid, ctx, min_length=None, lockout=None, **ev)
    return judge_password_policy(cid, ctx, min_length=read[0], lockout=read[1], **ev)

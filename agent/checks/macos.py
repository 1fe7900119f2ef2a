"""macOS probes: fdesetup, sysadminctl/defaults, socketfilterfw, XProtect, sw_vers here;
patches (softwareupdate) in macos_updates, hardware age and removable storage in
macos_hardware, software, accounts and the password policy in macos_accounts.

Apple's tools print English to scripts, but anything we don't recognise word for word
(another language, a changed format, garbage) is reported as unknown, never as a pass.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from agent.checks.base import (
    Check,
    Context,
    clip,
    days_text,
    describe,
    fail,
    ok,
    os_support,
    unknown,
)
from agent.checks.macos_accounts import accounts, console_user, password_policy, software
from agent.checks.macos_hardware import hardware_age, removable_storage
from agent.checks.macos_updates import defaults_read, patches
from agent.report import CheckResult

XPROTECT_META = "/Library/Apple/System/Library/CoreServices/XProtect.bundle/Contents/Info.plist"


def disk_encryption(ctx: Context) -> CheckResult:
    cid = "disk_encryption"
    res = ctx.runner.run(["fdesetup", "status"], timeout=20)
    out = res.stdout.strip()
    ev = {"fdesetup": clip(out or res.stderr)}
    if not res.ok:
        return unknown(cid, f"fdesetup failed ({describe(res)}).", **ev)
    first = out.splitlines()[0] if out else ""
    if first == "FileVault is On.":
        return ok(cid, "FileVault is on.", **ev)
    if first == "FileVault is Off.":
        return fail(cid, "FileVault is off.", **ev)
    if "Encryption in progress" in out or "Decryption in progress" in out:
        return fail(cid, "FileVault is still converting the disk.", **ev)
    return unknown(cid, "fdesetup printed something we don't recognise.", **ev)


def screen_lock(ctx: Context) -> CheckResult:
    cid = "screen_lock"
    t = ctx.thresholds
    res = ctx.runner.run(["sysadminctl", "-screenLock", "status"], timeout=20)
    text = (res.stderr + res.stdout).strip()  # sysadminctl logs to stderr
    ev: dict[str, object] = {"sysadminctl": clip(text, 300)}
    if not res.ok:
        return unknown(cid, f"sysadminctl failed ({describe(res)}).", **ev)
    if re.search(r"screenLock is off", text):
        return fail(cid, "The screen does not lock when the screen saver starts.", **ev)
    m = re.search(r"screenLock delay is (immediate|(\d+) seconds?)", text)
    if not m:
        return unknown(cid, "sysadminctl printed something we don't recognise.", **ev)
    delay = 0 if m.group(1) == "immediate" else int(m.group(2))
    ev["lock_delay_s"] = delay
    user = console_user(ctx)
    if not user:
        return unknown(cid, "No signed-in console user, so no idle time to read.", **ev)
    ev["user"] = user
    argv = [
        "sudo",
        "-u",
        user,
        "defaults",
        "-currentHost",
        "read",
        "com.apple.screensaver",
        "idleTime",
    ]
    idle_res = ctx.runner.run(argv, timeout=10)
    ev["idleTime"] = clip(idle_res.stdout or idle_res.stderr, 200)
    if not idle_res.ok or not re.fullmatch(r"\d+", idle_res.stdout.strip()):
        return unknown(cid, "Couldn't read the screen saver idle time.", **ev)
    idle = int(idle_res.stdout.strip())
    ev["idle_s"] = idle
    if idle <= 0 or idle > t.idle_lock_max_s:
        return fail(
            cid,
            f"The screen saver starts after {idle} s (0 = never), over {t.idle_lock_max_s} s.",
            **ev,
        )
    if delay > t.lock_delay_max_s:
        return fail(
            cid,
            f"The lock comes {delay} s after the screen saver, over {t.lock_delay_max_s} s.",
            **ev,
        )
    return ok(cid, f"The screen locks after {idle} s idle.", **ev)


def firewall(ctx: Context) -> CheckResult:
    cid = "firewall"
    res = ctx.runner.run(["/usr/libexec/ApplicationFirewall/socketfilterfw", "--getglobalstate"])
    ev = {"socketfilterfw": clip(res.stdout or res.stderr, 200)}
    m = re.search(r"\(State = (\d)\)", res.stdout)
    if not res.ok or not m:
        return unknown(cid, "Couldn't read the application firewall's state.", **ev)
    if m.group(1) in ("1", "2"):
        return ok(cid, "The application firewall is on.", **ev)
    return fail(cid, "The application firewall is off.", **ev)


def antimalware(ctx: Context) -> CheckResult:
    """XProtect is built in and always on; what can go stale is its definitions."""
    cid = "antimalware"
    version = defaults_read(ctx, XPROTECT_META.removesuffix(".plist"), "CFBundleShortVersionString")
    stat = ctx.runner.run(["stat", "-f%m", XPROTECT_META], timeout=10)
    ev: dict[str, object] = {"xprotect_version": version, "stat": clip(stat.stdout, 50)}
    if version is None or not stat.ok or not stat.stdout.strip().isdigit():
        return unknown(cid, "Couldn't read XProtect's version and date.", **ev)
    updated = datetime.fromtimestamp(int(stat.stdout.strip()), UTC)
    age = (ctx.now - updated).days
    ev.update(updated=updated.isoformat(), signature_age_days=age)
    if age > ctx.thresholds.xprotect_max_days:
        return fail(cid, f"XProtect definitions are {days_text(age)} old.", **ev)
    return ok(cid, f"XProtect {version}, definitions {days_text(age)} old.", **ev)


def os_supported(ctx: Context) -> CheckResult:
    res = ctx.runner.run(["sw_vers"], timeout=10)
    fields = dict(re.findall(r"^(\w+):\s*(.+)$", res.stdout, re.M)) if res.ok else {}
    version = fields.get("ProductVersion", "")
    return os_support(
        "os_supported",
        "macos" if version else "",
        version,
        ctx,
        build=fields.get("BuildVersion", ""),
    )


CHECKS = (
    Check("disk_encryption", "macos", disk_encryption),
    Check("screen_lock", "macos", screen_lock, ("idle_lock_max_s", "lock_delay_max_s")),
    Check("patches", "macos", patches, ("security_update_max_days",)),
    Check("firewall", "macos", firewall),
    Check("antimalware", "macos", antimalware, ("xprotect_max_days",)),
    Check("os_supported", "macos", os_supported, ("min_os_versions", "eol")),
    Check("hardware_age", "macos", hardware_age, ("laptop_support_years", "tablet_support_years")),
    Check("removable_storage", "macos", removable_storage, ("usb_storage_allowed",)),
    Check("software", "macos", software, ("software_approved", "software_banned")),
    Check("accounts", "macos", accounts, ("admin_accounts_approved",)),
    Check(
        "password_policy", "macos", password_policy, ("password_min_length", "lockout_max_attempts")
    ),
)

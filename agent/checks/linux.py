"""Linux probes: dm-crypt via sysfs, GNOME/KDE screen lock, ufw/firewalld/nft, ClamAV, and
the table of every Linux check; the others are in linux_*.py (patches, hardware age, USB
storage, software, accounts, password policy)."""

from __future__ import annotations

import configparser
import getpass
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
from agent.checks.linux_accounts import accounts_check
from agent.checks.linux_hardware import hardware_age
from agent.checks.linux_password import password_policy
from agent.checks.linux_patches import patches
from agent.checks.linux_software import software
from agent.checks.linux_usb import removable_storage
from agent.checks.linux_users import console_user
from agent.checks.linux_users import home as home_of
from agent.report import CheckResult
from agent.runner import Runner

# ---- disk encryption ------------------------------------------------------------------------


def _root_device(ctx: Context) -> tuple[str, str] | None:
    found = None
    for line in (ctx.runner.read("/proc/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "/":
            found = (fields[0], fields[2])  # the last "/" mount wins, like the kernel
    return found


def _kernel_name(ctx: Context, device: str) -> str | None:
    """/dev/mapper/<name> and /dev/<kname> to the kernel name used in /sys/class/block."""
    if device.startswith("/dev/mapper/"):
        wanted = device.removeprefix("/dev/mapper/")
        for kname in ctx.runner.listdir("/sys/class/block") or []:
            name = ctx.runner.read(f"/sys/class/block/{kname}/dm/name")
            if name is not None and name.strip() == wanted:
                return kname
        return None
    if device.startswith("/dev/"):
        kname = device.removeprefix("/dev/").replace("/", "!")
        if ctx.runner.read(f"/sys/class/block/{kname}/dev") is not None:
            return kname
    return None


def _encrypted(ctx: Context, kname: str, chain: list[str], depth: int = 0) -> bool:
    """True when the device is dm-crypt or every device under it (LVM, RAID) is."""
    uuid = (ctx.runner.read(f"/sys/class/block/{kname}/dm/uuid") or "").strip()
    chain.append(f"{kname}({uuid.split('-')[0] or 'plain'})")
    if uuid.startswith("CRYPT-"):
        return True
    slaves = ctx.runner.listdir(f"/sys/class/block/{kname}/slaves") or []
    if not slaves or depth > 8:
        return False
    return all(_encrypted(ctx, s, chain, depth + 1) for s in slaves)


def disk_encryption(ctx: Context) -> CheckResult:
    cid = "disk_encryption"
    root = _root_device(ctx)
    if root is None:
        return unknown(cid, "Couldn't find the root filesystem in /proc/mounts.")
    device, fstype = root
    kname = _kernel_name(ctx, device)
    if kname is None:
        return unknown(
            cid,
            f"Root is on {device} ({fstype}), not a block device we can follow.",
            device=device,
            fstype=fstype,
        )
    chain: list[str] = []
    if _encrypted(ctx, kname, chain):
        return ok(cid, "The root filesystem is on dm-crypt/LUKS.", device=device, chain=chain)
    return fail(cid, "The root filesystem is not encrypted.", device=device, chain=chain)


# ---- screen lock ----------------------------------------------------------------------------


def _gsetting(ctx: Context, user: str, schema: str, key: str) -> str | None:
    """Read as the console user (their dconf); as root via runuser, else only as that user."""
    argv = ["gsettings", "get", schema, key]
    res = ctx.runner.run(["runuser", "-u", user, "--", *argv], timeout=10)
    if not res.ok and getpass.getuser() == user:
        res = ctx.runner.run(argv, timeout=10)
    return res.stdout.strip() if res.ok else None


def _uint(value: str | None) -> int | None:
    m = re.fullmatch(r"(?:uint32 )?(\d+)", value or "")
    return int(m.group(1)) if m else None


def _judge(
    cid: str, idle: int, enabled: bool, delay: int, ctx: Context, **ev: object
) -> CheckResult:
    t = ctx.thresholds
    ev = {"idle_s": idle, "lock_enabled": enabled, "lock_delay_s": delay, **ev}
    if not enabled:
        return fail(cid, "The screen does not lock.", **ev)
    if idle <= 0 or idle > t.idle_lock_max_s:
        return fail(
            cid,
            f"The screen locks after {idle} s idle (0 = never), over {t.idle_lock_max_s} s.",
            **ev,
        )
    if delay > t.lock_delay_max_s:
        return fail(
            cid, f"The lock comes {delay} s after blanking, over {t.lock_delay_max_s} s.", **ev
        )
    return ok(cid, f"The screen locks after {idle} s idle.", **ev)


def screen_lock(ctx: Context) -> CheckResult:
    cid = "screen_lock"
    user, why = console_user(ctx)
    if user is None:
        return unknown(cid, f"No signed-in console user, so no desktop settings to read ({why}).")
    home = home_of(ctx, user)
    kde = ctx.runner.read(f"{home}/.config/kscreenlockerrc") if home else None
    if kde is not None:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(kde)
        except configparser.Error as exc:
            return unknown(cid, f"kscreenlockerrc is unreadable: {exc}", user=user)
        d = parser["Daemon"] if parser.has_section("Daemon") else {}
        try:
            autolock = d.get("Autolock", "true").strip().lower() == "true"
            timeout_min = int(d.get("Timeout", "5"))
            grace = int(d.get("LockGrace", "5"))
        except ValueError:
            return unknown(cid, "kscreenlockerrc holds values that are not numbers.", raw=clip(kde))
        return _judge(cid, timeout_min * 60, autolock, grace, ctx, desktop="kde", user=user)
    raw = {
        "idle-delay": _gsetting(ctx, user, "org.gnome.desktop.session", "idle-delay"),
        "lock-enabled": _gsetting(ctx, user, "org.gnome.desktop.screensaver", "lock-enabled"),
        "lock-delay": _gsetting(ctx, user, "org.gnome.desktop.screensaver", "lock-delay"),
    }
    idle, delay = _uint(raw["idle-delay"]), _uint(raw["lock-delay"])
    if idle is None or delay is None or raw["lock-enabled"] not in ("true", "false"):
        return unknown(
            cid,
            "Couldn't read GNOME's lock settings (no GNOME, or odd output).",
            user=user,
            raw=raw,
        )
    return _judge(cid, idle, raw["lock-enabled"] == "true", delay, ctx, desktop="gnome", user=user)


# ---- firewall -------------------------------------------------------------------------------


def firewall(ctx: Context) -> CheckResult:
    cid = "firewall"
    seen: dict[str, str] = {}
    ufw = ctx.runner.run(["ufw", "status"], timeout=10)
    if ufw.ok:
        seen["ufw"] = clip(ufw.stdout, 200)
        if re.search(r"^Status: active", ufw.stdout, re.M):
            return ok(cid, "ufw is active.", **seen)
    fwd = ctx.runner.run(["firewall-cmd", "--state"], timeout=10)
    if fwd.returncode != 127:
        seen["firewalld"] = clip(fwd.stdout or fwd.stderr, 200)
        if fwd.ok and fwd.stdout.strip() == "running":
            return ok(cid, "firewalld is running.", **seen)
    nft = ctx.runner.run(["nft", "list", "ruleset"], timeout=10)
    if nft.ok:
        seen["nft"] = clip(nft.stdout, 600)
        if re.search(r"hook input priority [^;]+; policy drop", nft.stdout):
            return ok(cid, "nftables drops incoming traffic by default.", **seen)
    ipt = ctx.runner.run(["iptables", "-S", "INPUT"], timeout=10)
    if ipt.ok:
        seen["iptables"] = clip(ipt.stdout, 600)
        if "-P INPUT DROP" in ipt.stdout or "-P INPUT REJECT" in ipt.stdout:
            return ok(cid, "iptables drops incoming traffic by default.", **seen)
    if seen:
        return fail(cid, "No firewall is filtering incoming traffic.", **seen)
    return unknown(cid, "Couldn't read any firewall (ufw, firewalld, nft, iptables).", **seen)


# ---- anti-malware ---------------------------------------------------------------------------


def antimalware(ctx: Context) -> CheckResult:
    cid = "antimalware"
    ver = ctx.runner.run(["clamscan", "--version"], timeout=20)
    if ver.returncode == 127:
        return unknown(cid, "No supported anti-malware found (looked for ClamAV).")
    m = re.match(r"ClamAV [\d.]+/(\d+)/(\w{3} \w{3} +\d+ [\d:]+ \d{4})", ver.stdout.strip())
    if not ver.ok or not m:
        return unknown(
            cid, "Couldn't read ClamAV's signature version.", raw=clip(ver.stdout + ver.stderr)
        )
    signed = datetime.strptime(re.sub(r" +", " ", m.group(2)), "%a %b %d %H:%M:%S %Y").replace(
        tzinfo=UTC
    )
    age = (ctx.now - signed).days
    ev: dict[str, object] = {"engine": ver.stdout.strip(), "signature_age_days": age}
    states = {}
    for unit in ("clamav-daemon", "clamd@scan"):
        res = ctx.runner.run(["systemctl", "is-active", unit], timeout=10)
        states[unit] = res.stdout.strip() or describe(res)
    ev["daemon"] = states
    if "active" not in states.values():
        return fail(cid, "ClamAV is installed but its daemon is not running.", **ev)
    if age > ctx.thresholds.av_signature_max_days:
        return fail(cid, f"ClamAV signatures are {days_text(age)} old.", **ev)
    return ok(cid, f"ClamAV is running with signatures {days_text(age)} old.", **ev)


# ---- OS version -----------------------------------------------------------------------------


def os_release(runner: Runner) -> dict[str, str]:
    text = runner.read("/etc/os-release") or runner.read("/usr/lib/os-release") or ""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


def os_supported(ctx: Context) -> CheckResult:
    rel = os_release(ctx.runner)
    return os_support(
        "os_supported",
        rel.get("ID", ""),
        rel.get("VERSION_ID", ""),
        ctx,
        pretty=rel.get("PRETTY_NAME", ""),
    )


CHECKS = (
    Check("disk_encryption", "linux", disk_encryption),
    Check("screen_lock", "linux", screen_lock, ("idle_lock_max_s", "lock_delay_max_s")),
    Check("patches", "linux", patches, ("security_update_max_days",)),
    Check("firewall", "linux", firewall),
    Check("antimalware", "linux", antimalware, ("av_signature_max_days",)),
    Check("os_supported", "linux", os_supported, ("min_os_versions", "eol")),
    Check("hardware_age", "linux", hardware_age, ("laptop_support_years", "tablet_support_years")),
    Check("removable_storage", "linux", removable_storage, ("usb_storage_allowed",)),
    Check("software", "linux", software, ("software_approved", "software_banned")),
    Check("accounts", "linux", accounts_check, ("admin_accounts_approved",)),
    Check(
        "password_policy",
        "linux",
        password_policy,
        ("password_min_length", "lockout_max_attempts"),
    ),
)

"""Linux password policy: the minimum length and the lockout after failed sign-ins, as PAM
enforces them for local accounts.

A setting counts only if the PAM module that reads it is in the stack: pwquality.conf means
nothing unless pam_pwquality is in the password stack, faillock.conf nothing unless
pam_faillock is in the auth stack. Arguments on the PAM line override the module's file;
a module without a setting uses its documented default (pam_pwquality 8 characters,
pam_cracklib 9, pam_unix 6; pam_faillock 3 attempts). Length credits (dcredit and the like,
above 0) let a password be that much shorter, so they are taken off the minimum.
"""

from __future__ import annotations

import re

from agent.checks.base import Context
from agent.checks.judge import judge_password_policy
from agent.checks.linux_usb import config_files
from agent.report import CheckResult

PASSWORD_STACKS = ("/etc/pam.d/common-password", "/etc/pam.d/system-auth")  # Debian, Fedora
AUTH_STACKS = ("/etc/pam.d/common-auth", "/etc/pam.d/system-auth")
PWQUALITY = "/etc/security/pwquality.conf"
FAILLOCK = "/etc/security/faillock.conf"
_LINE = re.compile(r"^\s*-?(auth|password)\s+(\[[^\]]*\]|\S+)\s+(\S+)\s*(.*)$")
_DEFAULT_MINLEN = {"pam_pwquality": 8, "pam_cracklib": 9, "pam_unix": 6}
_CREDITS = ("dcredit", "ucredit", "lcredit", "ocredit")


def _stack(
    ctx: Context, paths: tuple[str, ...], kind: str
) -> tuple[str, dict[str, dict[str, str]]] | None:
    """The first readable stack file and its `kind` modules' arguments (key=value, and bare
    flags as key=""), by module name without .so."""
    for path in paths:
        text = ctx.runner.read(path)
        if text is None:
            continue
        modules: dict[str, dict[str, str]] = {}
        for line in text.splitlines():
            m = _LINE.match(line.split("#", 1)[0])
            if not m or m.group(1) != kind:
                continue
            name = m.group(3).rsplit("/", 1)[-1].removesuffix(".so")
            args = modules.setdefault(name, {})
            for arg in m.group(4).split():
                key, _, value = arg.partition("=")
                args[key] = value
        return path, modules
    return None


def _conf(ctx: Context, main: str, extra_dir: str | None) -> dict[str, str]:
    """key = value settings of a /etc/security file and its .conf.d files (later win)."""
    paths = [main] + list(
        (config_files(ctx, (extra_dir,), ".conf") or {}).values() if extra_dir else []
    )
    out: dict[str, str] = {}
    for path in paths:
        for line in (ctx.runner.read(path) or "").splitlines():
            key, sep, value = line.split("#", 1)[0].partition("=")
            if sep:
                out[key.strip()] = value.strip()
    return out


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and re.fullmatch(r"-?\d+", value.strip()) else None


def min_length(ctx: Context) -> tuple[int | None, dict[str, object]]:
    found = _stack(ctx, PASSWORD_STACKS, "password")
    if found is None:
        return None, {"length_source": "no PAM password stack could be read"}
    path, modules = found
    for module in ("pam_pwquality", "pam_cracklib", "pam_unix"):
        if module not in modules:
            continue
        settings = dict(modules[module])
        source = f"{path}: {module}"
        if module == "pam_pwquality":
            from_file = _conf(ctx, PWQUALITY, PWQUALITY + ".d")
            settings = {**from_file, **settings}
            source += f" with {PWQUALITY}" if from_file else ""
        minlen = _int(settings.get("minlen"))
        if minlen is None:
            minlen = _DEFAULT_MINLEN[module]
            source += f" (minlen not set: the module's default {minlen})"
        credit = sum(max(0, _int(settings.get(c)) or 0) for c in _CREDITS if module != "pam_unix")
        if module == "pam_cracklib":  # cracklib's credits default to 1 each
            credit = sum(max(0, _int(settings.get(c, "1")) or 0) for c in _CREDITS)
        ev: dict[str, object] = {
            "length_source": source,
            "minlen": minlen,
            "length_credits": credit,
        }
        return max(1, minlen - credit), ev
    return None, {"length_source": f"{path}: no pam_pwquality, pam_cracklib or pam_unix"}


def lockout(ctx: Context) -> tuple[int | None, dict[str, object]]:
    found = _stack(ctx, AUTH_STACKS, "auth")
    if found is None:
        return None, {"lockout_source": "no PAM auth stack could be read"}
    path, modules = found
    if "pam_faillock" in modules:
        settings = {**_conf(ctx, FAILLOCK, None), **modules["pam_faillock"]}
        deny = _int(settings.get("deny"))
        where = "the line" if "deny" in modules["pam_faillock"] else FAILLOCK
        if deny is None:
            deny, where = 3, "faillock's default"
        return deny, {"lockout_source": f"{path}: pam_faillock, deny={deny} ({where})"}
    for module in ("pam_tally2", "pam_tally"):
        if module in modules:
            deny = _int(modules[module].get("deny")) or 0
            return deny, {"lockout_source": f"{path}: {module}, deny={deny}"}
    return 0, {"lockout_source": f"{path}: no pam_faillock or pam_tally2, so no lockout"}


def password_policy(ctx: Context) -> CheckResult:
    length, ev = min_length(ctx)
    deny, ev2 = lockout(ctx)
    return judge_password_policy(
        "password_policy", ctx, min_length=length, lockout=deny, **ev, **ev2
    )

"""Linux removable storage: is USB mass storage kept off by default?

Three ways a school's build does it, any one enough: the kernel modules usb-storage and uas
both refused in modprobe's configuration (`install ... /bin/false` or `blacklist`); a udev
rule deauthorising USB interfaces of class 08 (mass storage); or USBGuard running with a
blocking default and no rule allowing class 08. modprobe.d and udev files are read with
their own precedence: a file in /etc overrides one of the same name in /run or /lib.
"""

from __future__ import annotations

import re

from agent.checks.base import Context, clip
from agent.checks.judge import judge_removable_storage
from agent.report import CheckResult

MODPROBE_DIRS = (
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/lib/modprobe.d",
    "/usr/lib/modprobe.d",
)
UDEV_DIRS = ("/etc/udev/rules.d", "/run/udev/rules.d", "/lib/udev/rules.d", "/usr/lib/udev/rules.d")
USBGUARD_CONF = "/etc/usbguard/usbguard-daemon.conf"
USBGUARD_RULES = "/etc/usbguard/rules.conf"
_MODULES = ("usb_storage", "uas")  # modprobe treats - and _ in module names alike
_INSTALL = re.compile(r"^\s*install\s+(\S+)\s")
_REFUSE = re.compile(r"^\s*install\s+(\S+)\s+(/usr)?/bin/(false|true)\b")
_BLACKLIST = re.compile(r"^\s*blacklist\s+(\S+)")
# what narrows an allow rule to some devices; an allow rule without any allows every device
_LIMITED = re.compile(r"\b(id|hash|parent-hash|serial|name|with-interface|via-port)\b")
_UDEV_DENY = re.compile(r'bInterfaceClass\}=="08".*ATTR\{authorized\}="0"')


def config_files(ctx: Context, dirs: tuple[str, ...], suffix: str) -> dict[str, str] | None:
    """Each file name's winning path (earlier directories override later ones), or None
    when no directory could be listed at all."""
    listed = False
    chosen: dict[str, str] = {}
    for d in dirs:
        names = ctx.runner.listdir(d)
        if names is None:
            continue
        listed = True
        for name in names:
            if name.endswith(suffix):
                chosen.setdefault(name, f"{d}/{name}")
    return None if not listed else dict(sorted(chosen.items()))


def _modprobe(ctx: Context) -> tuple[dict[str, str], bool] | None:
    """How each module is refused ({module: "path: line"}); None: no modprobe.d at all."""
    files = config_files(ctx, MODPROBE_DIRS, ".conf")
    if files is None:
        return None
    refused: dict[str, str] = {}
    installs: dict[str, str] = {}  # modprobe runs a module's first install command only
    for path in files.values():
        for line in (ctx.runner.read(path) or "").splitlines():
            m = _INSTALL.match(line) or _BLACKLIST.match(line)
            module = m.group(1).replace("-", "_") if m else None
            if module not in _MODULES:
                continue
            where = f"{path}: {line.strip()}"
            if _INSTALL.match(line):
                installs.setdefault(module, where)
            else:
                refused.setdefault(module, where)
    for module, where in installs.items():
        if _REFUSE.search(where.split(": ", 1)[1]):
            refused.setdefault(module, where)
    return refused, all(m in refused for m in _MODULES)


def _udev(ctx: Context) -> str | None:
    for path in (config_files(ctx, UDEV_DIRS, ".rules") or {}).values():
        for line in (ctx.runner.read(path) or "").splitlines():
            if not line.lstrip().startswith("#") and _UDEV_DENY.search(line):
                return f"{path}: {line.strip()}"
    return None


def _usbguard(ctx: Context) -> tuple[bool, str] | None:
    conf = ctx.runner.read(USBGUARD_CONF)
    if conf is None:
        return None
    m = re.search(r"^\s*ImplicitPolicyTarget\s*=\s*(\w+)", conf, re.M)
    target = m.group(1).lower() if m else "block"  # usbguard-daemon.conf(5): block by default
    state = ctx.runner.run(["systemctl", "is-active", "usbguard"], timeout=10).stdout.strip()
    m = re.search(r"^\s*RuleFile\s*=\s*(\S+)", conf, re.M)
    rules = ctx.runner.read(m.group(1) if m else USBGUARD_RULES)
    allow = [ln.strip() for ln in (rules or "").splitlines() if re.match(r"\s*allow\b", ln)]
    storage = any(re.search(r"with-interface.*\b08:", a) for a in allow)
    anything = [a for a in allow if not _LIMITED.search(a) or re.search(r"\bid\s+\*:\*", a)]
    blocked = (
        target in ("block", "reject")
        and state == "active"
        and rules is not None
        and not storage
        and not anything
    )
    return blocked, (
        f"USBGuard {state or 'state unknown'}, ImplicitPolicyTarget={target}"
        + (", a rule allows mass storage (08:*:*)" if storage else "")
        + (f", a rule allows any device ({clip(anything[0], 60)})" if anything else "")
        + (", its rules couldn't be read" if rules is None else "")
    )


def removable_storage(ctx: Context) -> CheckResult:
    cid = "removable_storage"
    modprobe = _modprobe(ctx)
    udev = _udev(ctx)
    guard = _usbguard(ctx)
    loaded = ctx.runner.listdir("/sys/module/usb_storage") is not None
    ev: dict[str, object] = {
        "modprobe": None if modprobe is None else modprobe[0],
        "udev": udev,
        "usbguard": None if guard is None else guard[1],
        "usb_storage_loaded": loaded,
    }
    if modprobe is not None and modprobe[1]:
        return judge_removable_storage(
            cid, ctx, blocked=True, how="modprobe refuses usb-storage and uas", **ev
        )
    if udev:
        return judge_removable_storage(
            cid, ctx, blocked=True, how="a udev rule deauthorises class 08", **ev
        )
    if guard is not None and guard[0]:
        return judge_removable_storage(cid, ctx, blocked=True, how=guard[1], **ev)
    if modprobe is None:
        return judge_removable_storage(
            cid, ctx, blocked=None, how="no modprobe.d directory could be read", **ev
        )
    missing = [m for m in _MODULES if m not in modprobe[0]]
    how = f"modprobe.d does not refuse {' or '.join(missing)}; no udev rule; " + (
        "no USBGuard" if guard is None else guard[1]
    )
    if loaded:
        how += "; usb_storage is loaded now"
    return judge_removable_storage(cid, ctx, blocked=False, how=how, **ev)

"""Linux patches: apt or dnf, the pending security updates and how long they have waited.

apt doesn't say when an update was published, so its pending security packages are aged
from when this agent first saw them pending (remembered between reports). dnf's advisories
carry the date they were issued (dnf5's `updateinfo list` prints it), so on Fedora the age
is the real one; only Critical and Important advisories count, the standard's "critical and
high-risk" updates.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

from agent.checks.base import Context, Pending, describe, judge_patches, unknown
from agent.report import CheckResult

_URGENT = ("critical", "important")  # dnf severities that are the standard's "critical and high"
# dnf5: Name Type Severity Package Issued (advisorylist.cpp); dnf4: ID Severity/Sec. Package
_DNF5_ROW = re.compile(
    r"^(\S+)\s+security\s+(\S+)\s+(\S+)\s+(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\s*$", re.I
)
_DNF4_ROW = re.compile(r"^(\S+)\s+(\S+)/Sec\.\s+(\S+)\s*$")


# What apt's answer depends on: the installed packages and the package lists. While none of
# them has changed, the last simulation's answer stands (apt-get -s costs seconds of CPU on
# every check, the agent's largest cost; bench/agent_bench.py), for at most APT_KEPT.
APT_STATE = (
    "/var/lib/dpkg/status",
    "/var/lib/apt/lists",
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d",
    "/etc/apt/preferences.d",
    "/var/lib/apt/extended_states",
)
APT_KEPT = timedelta(hours=6)


def _apt_state(ctx: Context) -> str | None:
    """A fingerprint of apt's state (modification times and sizes); None when unreadable."""
    res = ctx.runner.run(["stat", "-c", "%n %Y %s", *APT_STATE], timeout=10)
    lines = res.stdout.strip().splitlines()
    if not lines or not all(re.fullmatch(r"\S+ \d+ \d+", ln) for ln in lines):
        return None
    return hashlib.sha256(res.stdout.encode()).hexdigest()


def _apt_simulate(ctx: Context) -> tuple[int, list[str]] | str:
    """How many upgrades are pending, and the security ones, from apt-get -s."""
    sim = ctx.runner.run(["apt-get", "-s", "-o", "Debug::NoLocking=true", "upgrade"], timeout=60)
    if not sim.ok:
        return f"apt-get -s upgrade failed ({describe(sim)})"
    inst = [ln for ln in sim.stdout.splitlines() if ln.startswith("Inst ")]
    if not inst and not re.search(r"^\d+ upgraded", sim.stdout, re.M):
        return "apt-get -s upgrade printed nothing we recognise"
    return len(inst), [ln.split()[1] for ln in inst if "-security" in ln]


def _apt_pending(ctx: Context) -> tuple[int, list[str], bool] | str:
    """apt-get -s's answer, or the one kept while apt's state is unchanged (True)."""
    state = _apt_state(ctx)
    kept = ctx.memory.recall("apt", state, ctx.now, APT_KEPT) if state else None
    if (
        isinstance(kept, list)
        and len(kept) == 2
        and isinstance(kept[0], int)
        and isinstance(kept[1], list)
        and all(isinstance(n, str) for n in kept[1])
    ):
        return kept[0], kept[1], True
    found = _apt_simulate(ctx)
    if isinstance(found, str):
        return found
    if state:
        ctx.memory.keep("apt", state, ctx.now, [found[0], found[1]])
    return found[0], found[1], False


def _apt(ctx: Context) -> tuple[dict[str, object], list[Pending]] | str:
    got = _apt_pending(ctx)
    if isinstance(got, str):
        return got
    pending, security, reused = got
    conf = ctx.runner.run(["apt-config", "dump"], timeout=20)
    auto: bool | None = None
    if conf.ok:
        m = re.search(r'^APT::Periodic::Unattended-Upgrade "(\d+)";', conf.stdout, re.M)
        auto = bool(m and m.group(1) != "0")
    last = None  # the end of the latest apt run that upgraded something
    for block in (ctx.runner.read("/var/log/apt/history.log") or "").split("\n\n"):
        m = re.search(r"^End-Date: (\S+ +\S+)", block, re.M)
        if m and re.search(r"^Upgrade: ", block, re.M):
            last = m.group(1)
    last_iso = None
    if last:
        try:
            last_iso = (
                datetime.strptime(re.sub(r" +", " ", last), "%Y-%m-%d %H:%M:%S")
                .replace(tzinfo=UTC)
                .isoformat()
            )
        except ValueError:
            last_iso = None
    reboot = ctx.runner.read("/run/reboot-required") is not None
    ev: dict[str, object] = {
        "manager": "apt",
        "pending": pending,
        "simulation": "kept from an earlier check: apt's state unchanged"
        if reused
        else "apt-get -s upgrade",
        "security": len(security),
        "security_packages": security[:20],
        "auto_updates": auto,
        "last_update": last_iso,
        "reboot_required": reboot,
        "age_basis": "apt gives no publication dates: aged from when first seen pending",
    }
    return ev, [Pending(name) for name in security]


def _advisories(text: str) -> tuple[list[Pending], int, int]:
    """The urgent security advisories' packages (dated where dnf5 prints Issued), and how
    many security rows there were and how many were less than Important."""
    urgent: list[Pending] = []
    rows = minor = 0
    for line in text.splitlines():
        m5, m4 = _DNF5_ROW.match(line), _DNF4_ROW.match(line)
        if m5:
            advisory, severity, package, issued = m5.groups()
            when = datetime.strptime(issued, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        elif m4:
            advisory, severity, package = m4.groups()
            when = None
        else:
            continue
        rows += 1
        if severity.lower() not in _URGENT:
            minor += 1
            continue
        urgent.append(Pending(f"{package} ({advisory}, {severity})", when))
    return urgent, rows, minor


def _dnf(ctx: Context) -> tuple[dict[str, object], list[Pending]] | str:
    check = ctx.runner.run(["dnf", "-q", "check-update"], timeout=120)
    if check.returncode not in (0, 100):
        return f"dnf check-update failed ({describe(check)})"
    pending = [ln for ln in check.stdout.splitlines() if re.match(r"^\S+\.\S+\s+\S+\s+\S+$", ln)]
    sec = ctx.runner.run(["dnf", "-q", "updateinfo", "list", "--security"], timeout=120)
    if not sec.ok:
        return f"dnf updateinfo failed ({describe(sec)})"
    urgent, rows, minor = _advisories(sec.stdout)
    hist = ctx.runner.run(["dnf", "history", "list"], timeout=60)
    m = re.search(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2})", hist.stdout) if hist.ok else None
    last_iso = (
        datetime.strptime(m.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC).isoformat()
        if m
        else None
    )
    timer = ctx.runner.run(["systemctl", "is-enabled", "dnf-automatic-install.timer"], timeout=10)
    if timer.stdout.strip() not in ("enabled", "disabled", ""):
        auto: bool | None = None
    else:
        auto = timer.stdout.strip() == "enabled"
        if not auto:
            alt = ctx.runner.run(["systemctl", "is-enabled", "dnf-automatic.timer"], timeout=10)
            auto = alt.stdout.strip() == "enabled"
    restart = ctx.runner.run(["dnf", "needs-restarting", "-r"], timeout=60)
    reboot = {0: False, 1: True}.get(restart.returncode)
    dated = all(u.published is not None for u in urgent)
    ev: dict[str, object] = {
        "manager": "dnf",
        "pending": len(pending),
        "security": len(urgent),  # Critical and Important; the others are not held to 14 days
        "security_below_important": minor,
        "security_advisory_rows": rows,
        "security_packages": [u.name for u in urgent][:20],
        "auto_updates": auto,
        "last_update": last_iso,
        "reboot_required": reboot,
        "age_basis": "advisories' Issued dates"
        if dated
        else "this dnf prints no Issued dates: aged from when first seen pending",
    }
    return ev, urgent


def patches(ctx: Context) -> CheckResult:
    cid = "patches"
    for manager, probe in (("apt-get", _apt), ("dnf", _dnf)):
        found = ctx.runner.run([manager, "--version"], timeout=10)
        if found.ok:
            got = probe(ctx)
            if isinstance(got, str):
                return unknown(cid, got, manager=manager)
            ev, updates = got
            return judge_patches(cid, ev, ctx, updates)
    return unknown(cid, "No supported package manager (apt, dnf) found.")

"""The doctor's checks of this machine: Python, the content scan's C part, time sync and
the firewall."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from proxy_addons.core.content import piece_memo
from proxy_addons.ops.doctor.findings import Check, Runner, fail, ok, run_command, warn
from proxy_addons.ops.install_config import InstallConfig


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    shown = ".".join(str(p) for p in version)
    if version[:2] >= (3, 12):
        return ok("python", f"Python {shown} ({sys.executable})")
    return fail(
        "python",
        f"Python {shown} is too old: Schoolgate needs 3.12 or newer",
        "re-run deploy/install.sh with --python pointing at Python 3.12+ (docs/install.md)",
    )


def check_content_scan(built: bool | None = None) -> Check:
    """Is the content scan's piece memory in C built? Without it pages are scored right,
    but several times slower (docs/content-filtering.md, Speed)."""
    if built is None:
        built = piece_memo.native()
    if built:
        return ok(
            "content scan", "piece memory built in C (proxy_addons/core/content/_piece_memo.c)"
        )
    return warn(
        "content scan",
        "piece memory running in Python: page scans are correct but several times slower",
        "install a C compiler and Python's headers (apt-get install gcc python3-dev), then "
        "re-run deploy/install.sh",
    )


def check_time_sync(run: Runner = run_command, systemd: bool | None = None) -> Check:
    """Certificates, schedules and the audit trail need the right time."""
    fix = "timedatectl set-ntp true (systemd-timesyncd), or install chrony"
    systemd = Path("/run/systemd/system").is_dir() if systemd is None else systemd
    if systemd and shutil.which("timedatectl"):
        proc = run(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
        answer = proc.stdout.strip()
        if proc.returncode == 0 and answer == "yes":
            return ok("time sync", "the clock is synchronised (timedatectl)")
        if proc.returncode == 0 and answer == "no":
            return fail("time sync", "the clock is not synchronised with NTP (timedatectl)", fix)
    if shutil.which("chronyc"):
        proc = run(["chronyc", "tracking"])
        if proc.returncode == 0:
            leap = re.search(r"^Leap status\s*:\s*(.+)$", proc.stdout, re.MULTILINE)
            offset = re.search(r"^System time\s*:\s*([\d.]+) seconds", proc.stdout, re.MULTILINE)
            off = float(offset.group(1)) if offset else 0.0
            if leap and leap.group(1).strip() == "Normal" and off < 1.0:
                return ok("time sync", f"chrony is synchronised (offset {off:.3f} s)")
            state = leap.group(1).strip() if leap else "unknown"
            return fail(
                "time sync",
                f"chrony is not synchronised ({state}, offset {off:.3f} s)",
                "chronyc sources -v shows why (is UDP 123 to the NTP servers allowed?)",
            )
    return warn(
        "time sync",
        "can't tell whether the clock is synchronised (no systemd running, no chrony)",
        fix,
    )


def check_firewall(
    cfg: InstallConfig, run: Runner = run_command, nft: Sequence[str] = ("nft",)
) -> Check:
    """The schoolgate nftables table is loaded (required in transparent mode)."""
    name = "firewall"
    rules = (
        "deploy/nftables/schoolgate.nft"
        if cfg.transparent
        else ("deploy/nftables/schoolgate-explicit.nft")
    )
    fix = f"edit and load {rules} (docs/network.md)"
    bad = fail if cfg.transparent else warn
    if not shutil.which(nft[-1]):
        return bad(name, "nft is not installed", f"apt-get install nftables; then {fix}")
    try:
        proc = run([*nft, "list", "tables"])
    except (OSError, subprocess.SubprocessError) as exc:
        return bad(name, f"can't run nft: {exc}", fix)
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()[:1]
        return bad(
            name,
            f"can't read the firewall rules: {why[0] if why else proc.returncode}",
            "run schoolgate doctor as root",
        )
    if re.search(r"^table \S+ schoolgate$", proc.stdout, re.MULTILINE):
        mode = "transparent" if cfg.transparent else "explicit"
        return ok(name, f"the schoolgate nftables table is loaded ({mode} mode)")
    if cfg.transparent:
        return fail(
            name,
            "transparent mode is set, but no schoolgate nftables table is loaded: clients' "
            "traffic is not redirected to the gateway",
            fix,
        )
    return warn(
        name,
        "no schoolgate nftables table is loaded: nothing stops devices going round the proxy, "
        "or others using it",
        fix,
    )

"""`schoolgate doctor`: check an installation.

The doctor reads the installation's settings (/etc/schoolgate/schoolgate.env,
as deploy/install.sh writes it), or in a development checkout without them what
`make run` uses (ops/doctor/checkout.py), says which it checked, runs the
checks in `ops/doctor/` and prints one line each, with what to do for every
WARN and FAIL. Its exit status is 1 when anything FAILs, so scripts and monitoring can run it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from proxy_addons.ops.backup.archive import BackupError
from proxy_addons.ops.backup.offsite import BackupSettings
from proxy_addons.ops.doctor import store as store_doctor
from proxy_addons.ops.doctor.backups import check_backups
from proxy_addons.ops.doctor.ca import check_ca
from proxy_addons.ops.doctor.checkout import (
    checkout_values,
    find_checkout,
    for_checkout,
    what_was_checked,
)
from proxy_addons.ops.doctor.findings import Check, Level, fail, summary, warn
from proxy_addons.ops.doctor.gateway import check_gateway
from proxy_addons.ops.doctor.illegal import check_illegal_tier
from proxy_addons.ops.doctor.lists import check_lists
from proxy_addons.ops.doctor.machine import (
    check_content_scan,
    check_firewall,
    check_python,
    check_time_sync,
)
from proxy_addons.ops.doctor.permissions import check_permissions
from proxy_addons.ops.doctor.ports import check_ports
from proxy_addons.ops.doctor.tunnel import check_tunnel
from proxy_addons.ops.illegal_feeds.health import is_production
from proxy_addons.ops.install_config import ConfigError, InstallConfig, read_env_file
from proxy_addons.store import store_url


def _values(args: argparse.Namespace, checkout: Path | None) -> dict[str, str]:
    env_file = Path(args.env)
    if env_file.exists():
        values = read_env_file(env_file)
    elif checkout is not None:  # a development checkout: what make run uses
        values = checkout_values(checkout, os.environ)
    else:  # not an installation: what this shell would run with
        values = {k: v for k, v in os.environ.items() if k.startswith("SCHOOLGATE_")}
    if args.policy:
        values["SCHOOLGATE_POLICY"] = args.policy
    if args.var:
        values["SCHOOLGATE_VAR"] = args.var
    if args.user:
        values["SCHOOLGATE_USER"] = args.user
    return values


def _config(args: argparse.Namespace, checkout: Path | None) -> InstallConfig:
    env_file = Path(args.env)
    values = _values(args, checkout)
    return InstallConfig.from_values(values, env_file if env_file.exists() else None)


def _store_check(cfg: InstallConfig) -> Check:
    """The store check; as root on SQLite, run as the data's owner so no file becomes root's."""
    url = store_url(cfg.var, cfg.dsn or None)
    owner = cfg.var.stat().st_uid if cfg.var.exists() else 0
    if os.geteuid() != 0 or cfg.dsn or owner == 0:
        return store_doctor.check_store(url)
    env = dict(os.environ)
    root = str(Path(store_doctor.__file__).resolve().parents[3])  # the repository
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "proxy_addons.ops.doctor.store", "store", url],
            user=owner,
            group=cfg.var.stat().st_gid,
            extra_groups=[],
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return warn(
            "store",
            f"can't check the store as its owner (uid {owner}): {exc}",
            "run schoolgate doctor as the service user",
        )
    try:
        found = json.loads(proc.stdout.strip().splitlines()[-1])
        return Check(found["name"], Level(found["level"]), found["message"], found["fix"])
    except (ValueError, IndexError, KeyError):
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return fail("store", f"the store check failed: {why}")


def _status_url(cfg: InstallConfig) -> str:
    """The installation's live /status (on worker 0's metrics port)."""
    host = "127.0.0.1" if cfg.metrics_host in ("", "0.0.0.0") else cfg.metrics_host
    return f"http://{f'[{host}]' if ':' in host else host}:{cfg.metrics_port}/status"


def _production(cfg: InstallConfig) -> bool:
    """SCHOOLGATE_PRODUCTION in schoolgate.env (else this shell's environment)."""
    try:
        return is_production(read_env_file(cfg.env_file) if cfg.env_file else None)
    except (ConfigError, OSError):
        return is_production()


def run_checks(cfg: InstallConfig) -> list[Check]:
    checks = [check_python(), check_content_scan()]
    checks += check_permissions(cfg)
    checks += check_ca(cfg.var / "ca")
    checks += check_lists(cfg.policy, cfg.var)
    checks += check_illegal_tier(cfg.policy, production=_production(cfg))
    checks.append(check_gateway(cfg.var, _status_url(cfg)))
    checks.append(_store_check(cfg))
    checks += check_ports(cfg)
    checks.append(check_time_sync())
    checks.append(check_firewall(cfg))
    checks += check_tunnel(cfg.policy, cfg.var, cfg.dsn)
    return checks


def print_checks(checks: list[Check], out: object = None) -> None:
    stream = out or sys.stdout
    for check in checks:
        print(f"{check.level.value:<5} {check.name:<17} {check.message}", file=stream)  # type: ignore[arg-type]
        if check.fix and check.level is not Level.OK:
            print(f"{'':<23} fix: {check.fix}", file=stream)  # type: ignore[arg-type]


def cmd_doctor(args: argparse.Namespace) -> int:
    checkout = None if Path(args.env).exists() else find_checkout(Path.cwd())
    try:
        cfg = _config(args, checkout)
    except (ConfigError, OSError) as exc:
        print(f"doctor: can't read the settings: {exc}", file=sys.stderr)
        return 1
    checks = run_checks(cfg)
    if checkout is not None:
        checks = for_checkout(checks)
    else:  # a checkout has no backups to speak of
        try:
            backup = BackupSettings.from_values(_values(args, checkout))
        except BackupError as exc:
            checks.append(fail("backup", str(exc)))
        else:
            checks += check_backups(backup, cfg.var)
    checks.insert(0, what_was_checked(checkout, Path(args.env), cfg.policy, cfg.var))
    if args.json:
        print(
            json.dumps(
                [
                    {"name": c.name, "level": c.level.value, "message": c.message, "fix": c.fix}
                    for c in checks
                ],
                indent=2,
            )
        )
    else:
        print_checks(checks)
        oks, warns, fails = summary(checks)
        print(f"doctor: {oks} OK, {warns} WARN, {fails} FAIL")
    return 1 if any(c.level is Level.FAIL for c in checks) else 0

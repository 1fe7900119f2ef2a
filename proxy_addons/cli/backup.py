"""`schoolgate backup --to DIR` and `schoolgate restore ARCHIVE` (see backup.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from proxy_addons.cli.args import add_store_arguments
from proxy_addons.ops import backup


def _where(args: argparse.Namespace) -> backup.Where:
    return backup.Where(
        policy=Path(args.policy),
        var=Path(args.var),
        dsn=args.dsn,
        ca_dir=Path(args.ca_dir) if args.ca_dir else None,
    )


def _gateway_running(var: Path) -> int | None:
    try:
        pid = int(json.loads((var / "run" / "status.json").read_text()).get("pid", 0))
        os.kill(pid, 0)
    except (OSError, ValueError, TypeError):
        return None
    return pid if pid > 0 else None


def cmd_backup(args: argparse.Namespace) -> int:
    try:
        path = backup.create(_where(args), Path(args.to), keep=args.keep)
    except (backup.BackupError, OSError) as exc:
        print(f"schoolgate: backup failed: {exc}", file=sys.stderr)
        return 1
    manifest = backup.check(path).manifest
    rows = sum(manifest["store"]["rows"].values())
    size = path.stat().st_size
    print(f"{path}: {len(manifest['members'])} files, {rows} store rows, {size} bytes")
    for note in manifest["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    where = _where(args)
    pid = _gateway_running(where.var)
    if pid is not None:
        print(f"schoolgate: the gateway is running (pid {pid}): stop it first", file=sys.stderr)
        return 1
    try:
        done = backup.restore(Path(args.archive), where, force=args.force)
    except backup.BackupError as exc:
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1
    rows = ", ".join(f"{n} {c}" for n, c in done.rows.items() if c)
    print(f"store: {sum(done.rows.values())} rows restored ({rows or 'none'})")
    print(f"files: {len(done.files)} written")
    if not done.audit.ok:
        print(f"AUDIT TRAIL BROKEN after restore: {done.audit.problem}", file=sys.stderr)
        return 2
    print(f"audit: OK: {done.audit.checked} audit records, chain intact")
    return 0


def add_parsers(sub: argparse._SubParsersAction, policy: str, var: str) -> None:  # type: ignore[type-arg]
    def common(p: argparse.ArgumentParser) -> None:
        add_store_arguments(p, policy, var)
        p.add_argument("--ca-dir", help="the CA folder, if not VAR/ca")

    make = sub.add_parser("backup", help="back up the store, configuration, CA and audit trail")
    make.add_argument("--to", required=True, help="folder for the archive")
    make.add_argument("--keep", type=int, default=None, help="then keep only the newest N")
    common(make)
    make.set_defaults(func=cmd_backup)

    back = sub.add_parser("restore", help="restore a backup (the gateway must be stopped)")
    back.add_argument("archive")
    back.add_argument(
        "--force", action="store_true", help="replace an existing store and differing files"
    )
    common(back)
    back.set_defaults(func=cmd_restore)

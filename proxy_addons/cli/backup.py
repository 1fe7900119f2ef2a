"""`schoolgate backup --to DIR` and `schoolgate restore ARCHIVE` (see ops/backup/)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from proxy_addons.ops.backup.archive import BackupError, Where, check
from proxy_addons.ops.backup.create import create
from proxy_addons.ops.backup.restore import restore


def _where(args: argparse.Namespace) -> Where:
    return Where(
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
        path = create(_where(args), Path(args.to), keep=args.keep)
    except (BackupError, OSError) as exc:
        print(f"schoolgate: backup failed: {exc}", file=sys.stderr)
        return 1
    manifest = check(path).manifest
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
        done = restore(Path(args.archive), where, force=args.force)
    except BackupError as exc:
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

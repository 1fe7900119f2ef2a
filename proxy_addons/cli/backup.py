"""`schoolgate backup --to DIR` (sealed with a key, copied off the box), `backup key-new`,
`backup verify ARCHIVE`, `backup copy ARCHIVE` and `schoolgate restore ARCHIVE` (see
ops/backup/)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from proxy_addons.ops.backup.archive import BackupError, Where, check
from proxy_addons.ops.backup.create import create
from proxy_addons.ops.backup.offsite import copy_offsite
from proxy_addons.ops.backup.restore import restore
from proxy_addons.ops.backup.sealed import BackupKey, is_sealed, new_key, opened, read_key


def _where(args: argparse.Namespace) -> Where:
    return Where(
        policy=Path(args.policy),
        var=Path(args.var),
        dsn=args.dsn,
        ca_dir=Path(args.ca_dir) if args.ca_dir else None,
    )


def _key(args: argparse.Namespace) -> BackupKey | None:
    path = getattr(args, "key_file", None)
    return read_key(Path(path)) if path else None


def _gateway_running(var: Path) -> int | None:
    try:
        pid = int(json.loads((var / "run" / "status.json").read_text()).get("pid", 0))
        os.kill(pid, 0)
    except (OSError, ValueError, TypeError):
        return None
    return pid if pid > 0 else None


def _say(problem: str) -> int:
    print(f"schoolgate: {problem}", file=sys.stderr)
    return 1


def cmd_backup(args: argparse.Namespace) -> int:
    if not args.to:
        return _say("backup needs --to DIR (or a subcommand: key-new, verify, copy)")
    try:
        key = _key(args)
        path = create(_where(args), Path(args.to), keep=args.keep, key=key)
        with opened(path, key) as (plain, _sealed):
            manifest = check(plain).manifest
    except (BackupError, OSError) as exc:
        return _say(f"backup failed: {exc}")
    rows = sum(manifest["store"]["rows"].values())
    size = path.stat().st_size
    sealed = "sealed" if key else "NOT sealed (no --key-file)"
    print(f"{path}: {len(manifest['members'])} files, {rows} store rows, {size} bytes, {sealed}")
    for note in manifest["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if getattr(args, "offsite", None):
        try:
            copied = copy_offsite(path, args.offsite, Path(args.var))
        except BackupError as exc:
            return _say(f"the backup was made, but {exc}")
        print(f"copied to {copied['destination']}")
    return 0


def cmd_backup_key_new(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _say(f"{out} exists: a key is never overwritten (archives sealed with it)")
    except OSError as exc:
        return _say(f"can't write {out}: {exc}")
    with os.fdopen(fd, "w") as handle:
        handle.write(new_key())
    print(f"wrote a new backup key to {out}")
    print("Keep a copy OFF this machine (the school's password manager, a safe): without it")
    print("no archive sealed with it can be restored. Then set SCHOOLGATE_BACKUP_KEY_FILE.")
    return 0


def cmd_backup_verify(args: argparse.Namespace) -> int:
    archive = Path(args.archive)
    try:
        with opened(archive, _key(args)) as (plain, sealed):
            manifest = check(plain).manifest
    except BackupError as exc:
        return _say(f"NOT OK: {exc}")
    rows = sum(manifest["store"]["rows"].values())
    print(
        f"OK: {archive} ({manifest['created_at']}): {len(manifest['members'])} files and "
        f"{rows} store rows, every one matching the manifest's SHA-256"
    )
    if not sealed:
        print("warning: this archive is not sealed; it holds the CA key in the clear")
    return 0


def cmd_backup_copy(args: argparse.Namespace) -> int:
    if not args.offsite:
        return _say("no destination: give --offsite or set SCHOOLGATE_BACKUP_OFFSITE")
    try:
        copied = copy_offsite(Path(args.archive), args.offsite, Path(args.var))
    except BackupError as exc:
        return _say(str(exc))
    print(f"copied {copied['archive']} to {copied['destination']}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    where = _where(args)
    pid = _gateway_running(where.var)
    if pid is not None:
        return _say(f"the gateway is running (pid {pid}): stop it first")
    try:
        key = _key(args)
        archive = Path(args.archive)
        if archive.is_file() and not is_sealed(archive):
            print("warning: this archive is not sealed (made before sealing was set up)")
        done = restore(archive, where, force=args.force, key=key)
    except BackupError as exc:
        return _say(str(exc))
    rows = ", ".join(f"{n} {c}" for n, c in done.rows.items() if c)
    print(f"store: {sum(done.rows.values())} rows restored ({rows or 'none'})")
    print(f"files: {len(done.files)} written")
    if not done.audit.ok:
        print(f"AUDIT TRAIL BROKEN after restore: {done.audit.problem}", file=sys.stderr)
        return 2
    print(f"audit: OK: {done.audit.checked} audit records, chain intact")
    return 0

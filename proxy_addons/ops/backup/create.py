"""Making a backup: the store, the audit trail, the CA and the policy with every file it names."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.ops import school_ca
from proxy_addons.ops.backup.archive import FORMAT, MANIFEST, Where, Writer, backups, prune
from proxy_addons.ops.backup.sealed import BackupKey, SealingWriter
from proxy_addons.ops.backup.store_rows import write_store
from proxy_addons.store import Store
from proxy_addons.workflow import audit


def policy_files(policy_path: Path) -> tuple[list[Path], str | None]:
    """The policy file and every file or folder it names; a broken policy: its whole folder."""
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        folder = policy_path.resolve().parent
        everything = [p for p in sorted(folder.rglob("*")) if p.is_file()]
        return everything, f"the policy did not load, so its whole folder was saved: {exc}"
    found: list[Path] = [policy.path.resolve()]
    _paths_in(policy, found, set())
    files: list[Path] = []
    for path in found:
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file())
        elif path.is_file():
            files.append(path)
    return list(dict.fromkeys(p.resolve() for p in files)), None


def _paths_in(value: Any, out: list[Path], seen: set[int]) -> None:
    """Every Path inside the policy's dataclasses (lists, secrets files, libraries...)."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, Path):
        out.append(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.name != "memo":
                _paths_in(getattr(value, f.name), out, seen)
    elif isinstance(value, dict):
        for item in value.values():
            _paths_in(item, out, seen)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _paths_in(item, out, seen)


def _config_name(path: Path, policy_dir: Path) -> str:
    try:
        return f"config/policy/{path.relative_to(policy_dir).as_posix()}"
    except ValueError:
        return f"config/other/{path.as_posix().lstrip('/')}"


def create(
    where: Where, to_dir: Path, *, keep: int | None = None, key: BackupKey | None = None
) -> Path:
    """Write `schoolgate-backup-<UTC time>.tar.gz` in `to_dir` (sealed with `key`:
    `.tar.gz.enc`, see sealed.py) and return its path."""
    when = datetime.now(UTC).replace(microsecond=0)
    to_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{when:%Y%m%dT%H%M%SZ}"
    taken = [k[1] for k, _path in backups(to_dir) if k[0] == stamp]
    n = max(taken) + 1 if taken else 1  # more than one in a second: -2, -3, ... after it
    suffix = ".tar.gz.enc" if key else ".tar.gz"
    final = to_dir / f"schoolgate-backup-{stamp}{f'-{n}' if n > 1 else ''}{suffix}"
    fd, tmp_name = tempfile.mkstemp(prefix=".schoolgate-backup-", dir=to_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, tempfile.TemporaryDirectory() as spool_dir:
            sealing = SealingWriter(raw, key) if key else None
            # Sealed: a gzip stream straight into the sealing writer, no plaintext on disk.
            opened = (
                tarfile.open(fileobj=sealing, mode="w|gz")  # type: ignore[call-overload]
                if sealing
                else tarfile.open(fileobj=raw, mode="w:gz")
            )
            with opened as tar:
                writer = Writer(tar, when)
                manifest = _write_members(where, writer, Path(spool_dir), when)
                manifest["members"] = writer.members
                manifest["sealed"] = key is not None
                body = json.dumps(manifest, indent=1, sort_keys=True).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime, info.mode = len(body), when.timestamp(), 0o600
                tar.addfile(info, io.BytesIO(body))
            if sealing:
                sealing.finish()
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if keep:
        prune(to_dir, keep)
    return final


def _write_members(where: Where, writer: Writer, spool: Path, when: datetime) -> dict[str, Any]:
    manifest: dict[str, Any] = {"format": FORMAT, "created_at": when.isoformat(), "notes": []}
    store = Store.open(where.url)
    try:
        manifest["store"] = write_store(store, writer, spool)
        exported = audit.export(store, None, None, "json").encode()
        writer.add_bytes("audit/export.json", exported)
    finally:
        store.dispose()
    for path in school_ca.ca_files(where.ca):
        writer.add_bytes(f"ca/{path.name}", path.read_bytes())
    manifest["ca"] = school_ca.describe(where.ca).subject if school_ca.exists(where.ca) else None
    if manifest["ca"] is None:
        manifest["notes"].append(f"no CA in {where.ca}")
    files, note = policy_files(where.policy)
    if note:
        manifest["notes"].append(note)
    policy_dir = where.policy.resolve().parent
    origins: dict[str, str] = {}
    for path in files:
        name = _config_name(path, policy_dir)
        writer.add_bytes(name, path.read_bytes())
        origins[name] = str(path)
    manifest["config"] = {
        "policy": where.policy.resolve().relative_to(policy_dir).as_posix(),
        "policy_dir": str(policy_dir),
        "origins": origins,
    }
    return manifest

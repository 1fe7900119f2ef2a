"""Restoring a backup: check the archive, check nothing would be overwritten, then put the
store, the CA and the configuration back."""

from __future__ import annotations

import dataclasses
import os
import tarfile
from pathlib import Path, PurePosixPath

from proxy_addons.ops import school_ca
from proxy_addons.ops.backup.archive import BackupError, Where, check
from proxy_addons.ops.backup.sealed import BackupKey, opened
from proxy_addons.ops.backup.store_rows import load_store, prepare_store
from proxy_addons.store import Store
from proxy_addons.workflow import audit


@dataclasses.dataclass(frozen=True)
class Restored:
    rows: dict[str, int]
    audit: audit.VerifyResult
    files: list[Path]


def restore(
    archive_path: Path, where: Where, *, force: bool = False, key: BackupKey | None = None
) -> Restored:
    """Unseal the archive (an old unsealed one is read as it is), then restore it."""
    with opened(archive_path, key) as (plain, _sealed):
        return _restore(plain, where, force)


def _restore(archive_path: Path, where: Where, force: bool) -> Restored:
    """Check the archive, check nothing would be overwritten, then put everything back."""
    archive = check(archive_path)
    manifest = archive.manifest
    config = manifest["config"]
    policy_dir = where.policy.resolve().parent
    targets: dict[str, Path] = {}
    for name in manifest["members"]:
        if name.startswith("ca/"):
            targets[name] = where.ca / PurePosixPath(name).name
        elif name.startswith("config/policy/"):
            targets[name] = policy_dir / name.removeprefix("config/policy/")
        elif name.startswith("config/other/"):
            targets[name] = Path(config["origins"][name])
    with tarfile.open(archive.path, "r:gz") as tar:
        contents = {name: _read(tar, name) for name in targets}
        clashes = [
            str(path)
            for name, path in targets.items()
            if path.is_file() and path.read_bytes() != contents[name]
        ]
        if clashes and not force:
            raise BackupError(
                "restoring would replace files that differ from the backup (use --force): "
                + ", ".join(clashes)
            )
        prepare_store(where, force)
        rows = load_store(tar, manifest["store"], where.url)
    written = []
    for name, path in targets.items():
        secret = name in (f"ca/{school_ca.KEY_FILE}", f"ca/{school_ca.BASENAME}-ca.p12")
        if path.is_file() and path.read_bytes() == contents[name]:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_file(path, contents[name], 0o600 if secret else 0o644)
        written.append(path)
    store = Store.open(where.url)  # upgrades a backup from an older version
    try:
        result = audit.verify(store)
        head = manifest["store"].get("audit_head")
        if result.ok and head and head["seq"] != result.checked:
            result = audit.VerifyResult(
                False, result.checked, None, f"the backup had {head['seq']} audit records"
            )
    finally:
        store.dispose()
    return Restored(rows, result, written)


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    if handle is None:
        raise BackupError(f"{name} is not a file")
    return handle.read()


def _write_file(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.restoring")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)

"""A backup archive: where a gateway keeps its things, writing the tar with its manifest, the
archives in a folder, and reading one back with every member checked."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import tarfile
import zlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from proxy_addons.store import store_url

FORMAT = "schoolgate-backup/1"
MANIFEST = "manifest.json"
# Sealed archives (sealed.py) end in .enc; older, unsealed ones in .tar.gz.
NAME_PATTERN = re.compile(r"^schoolgate-backup-(\d{8}T\d{6}Z)(?:-(\d+))?\.tar\.gz(?:\.enc)?$")


class BackupError(RuntimeError):
    """A backup can't be made, or an archive can't (or mustn't) be restored."""


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a gateway keeps its things (the same arguments as `schoolgate run`)."""

    policy: Path
    var: Path
    dsn: str | None = None
    ca_dir: Path | None = None

    @property
    def ca(self) -> Path:
        return self.ca_dir or self.var / "ca"

    @property
    def url(self) -> str:
        return store_url(self.var, self.dsn)


class Writer:
    """Adds members to the tar, hashing each; the manifest goes last."""

    def __init__(self, tar: tarfile.TarFile, when: datetime) -> None:
        self.tar, self.mtime = tar, when.timestamp()
        self.members: dict[str, dict[str, Any]] = {}

    def add_file(self, name: str, handle: IO[bytes], size: int, digest: str) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, self.mtime, 0o600
        self.tar.addfile(info, handle)
        self.members[name] = {"size": size, "sha256": digest}

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_file(name, io.BytesIO(data), len(data), hashlib.sha256(data).hexdigest())

    def add_lines(self, name: str, lines: Iterable[bytes], spool: Path) -> int:
        digest, size, count = hashlib.sha256(), 0, 0
        with spool.open("w+b") as out:
            for line in lines:
                out.write(line)
                digest.update(line)
                size += len(line)
                count += 1
            out.seek(0)
            self.add_file(name, out, size, digest.hexdigest())
        spool.unlink()
        return count


def backups(to_dir: Path) -> list[tuple[tuple[str, int], Path]]:
    """The backups in `to_dir`, oldest first, keyed by (time, number within that second)."""
    found: list[tuple[tuple[str, int], Path]] = []
    for path in to_dir.iterdir():
        match = NAME_PATTERN.match(path.name)
        if match:
            found.append(((match.group(1), int(match.group(2) or 1)), path))
    return sorted(found)


def prune(to_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups in `to_dir` (names sort by time)."""
    found = [path for _key, path in backups(to_dir)]
    gone = found[:-keep] if keep > 0 else []
    for path in gone:
        path.unlink()
    return gone


@dataclasses.dataclass(frozen=True)
class Archive:
    path: Path
    manifest: dict[str, Any]


def _safe_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts


def check(path: Path) -> Archive:
    """Read the whole archive and check every member against the manifest."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            entries = {m.name: m for m in tar.getmembers()}
            if MANIFEST not in entries:
                raise BackupError(f"{path}: no {MANIFEST}: not a Schoolgate backup")
            handle = tar.extractfile(MANIFEST)
            manifest = json.loads(handle.read()) if handle else {}
            if manifest.get("format") != FORMAT:
                raise BackupError(f"{path}: unknown format {manifest.get('format')!r}")
            listed: dict[str, dict[str, Any]] = manifest.get("members", {})
            extra = set(entries) - set(listed) - {MANIFEST}
            missing = set(listed) - set(entries)
            if extra or missing:
                raise BackupError(
                    f"{path}: the archive does not match its manifest "
                    f"(extra: {sorted(extra)}; missing: {sorted(missing)})"
                )
            for name, want in listed.items():
                member = entries[name]
                if not _safe_name(name) or not member.isfile():
                    raise BackupError(f"{path}: unsafe member {name!r}")
                digest = hashlib.sha256()
                data = tar.extractfile(member)
                assert data is not None
                for chunk in iter(lambda: data.read(1 << 20), b""):  # noqa: B023
                    digest.update(chunk)
                if member.size != want["size"] or digest.hexdigest() != want["sha256"]:
                    raise BackupError(
                        f"{path}: {name} is damaged or was changed (its SHA-256 does not "
                        "match the manifest); nothing was restored"
                    )
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise BackupError(f"{path}: no such file") from exc
        raise BackupError(f"{path}: the archive is damaged ({exc}); nothing was restored") from exc
    return Archive(path, manifest)

"""Copying a sealed archive off the box with rsync (to another host over SSH, or a mounted
folder), and remembering the last copy so `schoolgate doctor` can say when it is too old.

Settings (in /etc/schoolgate/schoolgate.env, the same for the backup timer, the
command line and the doctor):
    SCHOOLGATE_BACKUP_KEY_FILE          the key that seals archives (schoolgate backup key-new)
    SCHOOLGATE_BACKUP_OFFSITE           rsync destination: user@host:/path/ or /mnt/folder/
    SCHOOLGATE_BACKUP_OFFSITE_MAX_AGE_HOURS   the doctor warns after this long (default 36)
Only sealed archives leave the box: an unsealed one holds the CA key and pupils' browsing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proxy_addons.ops.backup.archive import BackupError
from proxy_addons.ops.backup.sealed import is_sealed

DEFAULT_MAX_AGE_HOURS = 36  # a nightly copy, with a day's grace for one that failed
RECORD = Path("backup") / "offsite.json"
_SSH = "ssh -o BatchMode=yes -o ConnectTimeout=20"


@dataclasses.dataclass(frozen=True)
class BackupSettings:
    key_file: Path | None = None
    offsite: str = ""
    max_age_hours: float = DEFAULT_MAX_AGE_HOURS

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> BackupSettings:
        text = values.get("SCHOOLGATE_BACKUP_OFFSITE_MAX_AGE_HOURS", "").strip()
        try:
            hours = float(text) if text else DEFAULT_MAX_AGE_HOURS
        except ValueError:
            raise BackupError(
                f"SCHOOLGATE_BACKUP_OFFSITE_MAX_AGE_HOURS must be a number, not {text!r}"
            ) from None
        key = values.get("SCHOOLGATE_BACKUP_KEY_FILE", "").strip()
        return cls(
            key_file=Path(key) if key else None,
            offsite=values.get("SCHOOLGATE_BACKUP_OFFSITE", "").strip(),
            max_age_hours=hours,
        )


def copy_offsite(archive: Path, destination: str, var: Path) -> dict[str, Any]:
    """rsync `archive` into `destination` (a folder, local or host:path), then record it."""
    if not is_sealed(archive):
        raise BackupError(
            f"{archive} is not sealed: only sealed archives are copied off the box "
            "(set SCHOOLGATE_BACKUP_KEY_FILE, see docs/backup.md)"
        )
    if destination.startswith("-"):
        raise BackupError(f"the destination {destination!r} can't start with '-'")
    if not shutil.which("rsync"):
        raise BackupError("rsync is not installed (apt-get install rsync)")
    target = destination if destination.endswith("/") else destination + "/"
    argv = ["rsync", "--times", "--chmod=F600", "--partial-dir=.rsync-partial", "-e", _SSH]
    try:
        done = subprocess.run(
            [*argv, "--", str(archive), target],
            capture_output=True,
            text=True,
            timeout=6 * 3600,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(f"copying {archive.name} to {destination} failed: {exc}") from exc
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"rsync exit status {done.returncode}"])[-1]
        raise BackupError(f"copying {archive.name} to {destination} failed: {why}")
    record = {
        "archive": archive.name,
        "destination": destination,
        "bytes": archive.stat().st_size,
        "copied_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = var / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    return record


def last_copy(var: Path) -> dict[str, Any] | None:
    """What `copy_offsite` last recorded, or None (never, or an unreadable record)."""
    try:
        found = json.loads((var / RECORD).read_text())
        datetime.fromisoformat(found["copied_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if isinstance(found, dict) else None


__all__ = ["BackupSettings", "copy_offsite", "last_copy"]

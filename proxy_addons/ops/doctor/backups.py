"""The doctor's check of backups: sealed with a key kept off the box, and copied off the
box recently enough (SCHOOLGATE_BACKUP_OFFSITE_MAX_AGE_HOURS; ops/backup/offsite.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.ops.backup.archive import BackupError
from proxy_addons.ops.backup.offsite import BackupSettings, last_copy
from proxy_addons.ops.backup.sealed import read_key
from proxy_addons.ops.doctor.findings import Check, fail, ok, warn

_DOCS = "docs/backup.md, Off the box"


def check_backups(settings: BackupSettings, var: Path, now: datetime | None = None) -> list[Check]:
    results: list[Check] = []
    if settings.key_file is None:
        results.append(
            warn(
                "backup key",
                "backups are not sealed: they hold the CA key and pupils' browsing in the clear",
                "schoolgate backup key-new --out FILE; keep a copy off the box; set "
                f"SCHOOLGATE_BACKUP_KEY_FILE ({_DOCS})",
            )
        )
    else:
        try:
            read_key(settings.key_file)
        except BackupError as exc:
            results.append(fail("backup key", str(exc), f"SCHOOLGATE_BACKUP_KEY_FILE ({_DOCS})"))
        else:
            results.append(ok("backup key", f"backups are sealed with {settings.key_file}"))
    results.append(_offsite(settings, var, now or datetime.now(UTC)))
    return results


def _offsite(settings: BackupSettings, var: Path, now: datetime) -> Check:
    limit = settings.max_age_hours
    if not settings.offsite:
        return warn(
            "backup off box",
            "backups are not copied off this machine: a disk failure or theft loses them all",
            f"set SCHOOLGATE_BACKUP_OFFSITE to another host's folder (user@host:/path/) ({_DOCS})",
        )
    copied = last_copy(var)
    fix = "schoolgate backup copy (or look in /var/lib/schoolgate/log/backup.log for why)"
    if copied is None:
        return warn("backup off box", f"no backup has been copied to {settings.offsite} yet", fix)
    when = datetime.fromisoformat(copied["copied_at"])
    hours = (now - when).total_seconds() / 3600
    if hours > limit:
        return warn(
            "backup off box",
            f"the last copy off the box ({copied['archive']} to {copied['destination']}) was "
            f"{hours:.0f} hours ago, more than the {limit:g} allowed",
            fix,
        )
    return ok(
        "backup off box",
        f"{copied['archive']} copied to {copied['destination']} {hours:.0f} hours ago",
    )


__all__ = ["check_backups"]

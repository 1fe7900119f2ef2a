"""Sealed backups (issue 18): `backup key-new`, a sealed archive made, verified without
restoring, refused when changed, cut short or given the wrong key, restored on a real store;
an old unsealed archive still restores; the off-box copy with rsync; the doctor's warnings."""

from __future__ import annotations

import io
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy_addons.ops.backup.archive import BackupError, Where
from proxy_addons.ops.backup.create import create
from proxy_addons.ops.backup.offsite import RECORD, BackupSettings
from proxy_addons.ops.backup.sealed import (
    MAGIC,
    SealingWriter,
    opened,
    read_key,
    unseal,
)
from proxy_addons.ops.backup.sealed import RECORD as SEALED_RECORD
from proxy_addons.ops.doctor.backups import check_backups
from proxy_addons.ops.doctor.findings import Level
from tests.conftest import ROOT, VENV_BIN
from tests.ops.test_backup import Site, dump, files_under, sg
from tests.pg import db_url as db_url  # noqa: F401  (a fixture)
from tests.support.cli_in_process import schoolgate


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "keys" / "backup.key"
    key.parent.mkdir()
    made = sg("backup", "key-new", "--out", str(key))
    assert made.returncode == 0, made.stderr
    assert "OFF this machine" in made.stdout
    return key


def test_sealed_backup_verify_wipe_restore(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    site = Site(tmp_path, db_url)
    site.seed()
    before = dump(db_url)
    config, ca = files_under(site.policy.parent), files_under(site.var / "ca")
    key = _key(tmp_path)
    assert key.stat().st_mode & 0o077 == 0
    again = sg("backup", "key-new", "--out", str(key))
    assert again.returncode == 1 and "never overwritten" in again.stderr

    made = sg("backup", "--key-file", str(key), "--to", str(tmp_path / "b"), *site.args)
    assert made.returncode == 0, made.stderr
    assert "sealed" in made.stdout and "NOT sealed" not in made.stdout
    [archive] = (tmp_path / "b").glob("schoolgate-backup-*.tar.gz.enc")
    data = archive.read_bytes()
    assert data.startswith(MAGIC) and archive.stat().st_mode & 0o077 == 0
    for secret in (b"PRIVATE KEY", b"manifest.json", b"s3cret-enrolment", b"debate"):
        assert secret not in data

    verified = sg("backup", "verify", str(archive), "--key-file", str(key))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK: ") and "matching the manifest" in verified.stdout

    site.wipe()
    keyless = sg("restore", str(archive), *site.args)
    assert keyless.returncode == 1 and "is sealed: give its key" in keyless.stderr
    restored = sg("restore", str(archive), "--key-file", str(key), *site.args)
    assert restored.returncode == 0, restored.stderr
    assert "audit: OK" in restored.stdout and "not sealed" not in restored.stdout
    assert dump(db_url) == before
    assert files_under(site.policy.parent) == config
    assert files_under(site.var / "ca") == ca


def test_verify_refuses_changed_cut_or_wrongly_keyed_archives(tmp_path: Path) -> None:
    site = Site(tmp_path, f"sqlite:///{tmp_path / 'var' / 'schoolgate.db'}")
    site.seed()
    key = _key(tmp_path)
    archive = create(Where(site.policy, site.var), tmp_path / "b", key=read_key(key))
    data = archive.read_bytes()

    def verify(content: bytes, key_file: Path = key) -> subprocess.CompletedProcess[str]:
        bad = tmp_path / "bad" / archive.name
        bad.parent.mkdir(exist_ok=True)
        bad.write_bytes(content)
        # In this process (tests/support/cli_in_process): the real `backup verify` runs in
        # test_sealed_backup_verify_wipe_restore and test_a_passphrase_seals_too_...
        return schoolgate("backup", "verify", str(bad), "--key-file", str(key_file), cwd=ROOT)

    middle = len(data) // 2
    flipped = data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]
    for changed in (flipped, data[: len(data) // 3], data[:-1]):
        found = verify(changed)
        assert found.returncode == 1 and found.stderr.startswith("schoolgate: NOT OK"), found
        assert "damaged or was changed" in found.stderr

    other = tmp_path / "other.key"
    assert schoolgate("backup", "key-new", "--out", str(other), cwd=ROOT).returncode == 0
    wrong = verify(data, other)
    assert wrong.returncode == 1 and "sealed with another key" in wrong.stderr
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    assert "sealed with a key from" in verify(data, passphrase).stderr
    assert verify(data).returncode == 0  # the archive itself was never touched


def test_records_dropped_at_the_end_or_reordered_are_refused(tmp_path: Path) -> None:
    key = read_key(_key(tmp_path))
    sealed = io.BytesIO()
    writer = SealingWriter(sealed, key)
    content = os.urandom(3 * SEALED_RECORD + 100)  # four records
    writer.write(content)
    writer.finish()
    data, head, size = sealed.getvalue(), len(writer.header), SEALED_RECORD + 16
    records = [data[head + i * size : head + (i + 1) * size] for i in range(4)]

    def unsealed(content_bytes: bytes) -> bytes:
        out = io.BytesIO()
        unseal(io.BytesIO(content_bytes), key, out, "archive")
        return out.getvalue()

    assert unsealed(data) == content
    header = data[:head]
    for bad in (
        header + b"".join(records[:3]),  # the last record dropped: the third wasn't last
        header + records[0] + records[2] + records[1] + records[3],  # two swapped
        header + b"".join(records[1:]),  # the first dropped
    ):
        with pytest.raises(BackupError, match="damaged or was changed"):
            unsealed(bad)


def test_a_passphrase_seals_too_and_old_unsealed_archives_still_restore(tmp_path: Path) -> None:
    site = Site(tmp_path, f"sqlite:///{tmp_path / 'var' / 'schoolgate.db'}")
    site.seed()
    phrase = tmp_path / "passphrase"
    phrase.write_text("short\n")
    with pytest.raises(BackupError, match="at least 12"):
        read_key(phrase)
    phrase.write_text("a long school passphrase\n")
    sealed = create(Where(site.policy, site.var), tmp_path / "b", key=read_key(phrase))
    with opened(sealed, read_key(phrase)) as (plain, was_sealed):
        assert was_sealed and plain != sealed and plain.stat().st_mode & 0o077 == 0
    assert not plain.exists()  # the unsealed copy is gone once read
    phrase_two = tmp_path / "passphrase2"
    phrase_two.write_text("another long passphrase\n")
    assert (
        "damaged or was changed"
        in sg("backup", "verify", str(sealed), "--key-file", str(phrase_two)).stderr
    )

    old = create(Where(site.policy, site.var), tmp_path / "old")  # as before sealing
    assert old.name.endswith(".tar.gz")
    checked = sg("backup", "verify", str(old))
    assert checked.returncode == 0 and "not sealed" in checked.stdout
    site.wipe()
    restored = sg("restore", str(old), *site.args)
    assert restored.returncode == 0, restored.stderr
    assert "warning: this archive is not sealed" in restored.stdout


def test_offsite_copy_with_rsync_and_the_doctors_warnings(tmp_path: Path) -> None:
    site = Site(tmp_path, f"sqlite:///{tmp_path / 'var' / 'schoolgate.db'}")
    site.seed()
    key = _key(tmp_path)
    offsite = tmp_path / "elsewhere"  # another host's folder, here a local one: rsync all the same
    offsite.mkdir()
    settings = BackupSettings(key_file=key, offsite=str(offsite), max_age_hours=36)
    found = {c.name: c for c in check_backups(settings, site.var)}
    assert found["backup key"].level is Level.OK
    assert found["backup off box"].level is Level.WARN and "yet" in found["backup off box"].message

    made = sg(
        "backup",
        "--key-file",
        str(key),
        "--offsite",
        str(offsite),
        "--to",
        str(tmp_path / "b"),
        *site.args,
    )
    assert made.returncode == 0, made.stderr
    [archive] = (tmp_path / "b").glob("*.enc")
    [copy] = offsite.iterdir()
    assert copy.name == archive.name and copy.read_bytes() == archive.read_bytes()
    assert copy.stat().st_mode & 0o777 == 0o600
    record = json.loads((site.var / RECORD).read_text())
    assert record["archive"] == archive.name and record["destination"] == str(offsite)
    found = {c.name: c for c in check_backups(settings, site.var)}
    assert found["backup off box"].level is Level.OK

    later = datetime.now(UTC) + timedelta(hours=40)
    [_key_check, stale] = check_backups(settings, site.var, now=later)
    assert stale.level is Level.WARN and "40 hours ago, more than the 36 allowed" in stale.message

    plain = create(Where(site.policy, site.var), tmp_path / "plain")
    refused = sg("backup", "copy", str(plain), "--offsite", str(offsite), "--var", str(site.var))
    assert refused.returncode == 1 and "not sealed" in refused.stderr
    assert len(list(offsite.iterdir())) == 1
    unreachable = sg(
        "backup",
        "copy",
        str(archive),
        "--offsite",
        "nobody@127.0.0.1:/nowhere/",
        "--var",
        str(site.var),
    )
    assert unreachable.returncode == 1 and "failed" in unreachable.stderr

    # The doctor of an installation whose settings name these, with the copy made 40 hours ago.
    record["copied_at"] = (datetime.now(UTC) - timedelta(hours=40)).isoformat()
    (site.var / RECORD).write_text(json.dumps(record))
    env = tmp_path / "schoolgate.env"
    env.write_text(
        f"SCHOOLGATE_POLICY={site.policy}\nSCHOOLGATE_VAR={site.var}\n"
        f"SCHOOLGATE_BACKUP_KEY_FILE={key}\nSCHOOLGATE_BACKUP_OFFSITE={offsite}\n"
        "SCHOOLGATE_BACKUP_OFFSITE_MAX_AGE_HOURS=24\n"
    )
    doctor = subprocess.run(
        [str(VENV_BIN / "schoolgate"), "doctor", "--env", str(env), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("SCHOOLGATE_")},
    )
    said = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert said["backup off box"]["level"] == "WARN"
    assert "more than the 24 allowed" in said["backup off box"]["message"]
    assert said["backup key"]["level"] == "OK"

"""`schoolgate store purge` and `schoolgate people export`, run as the IT provider or DSL
would, against a real store: what went from which table, and one person's export."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from proxy_addons.store import Store
from proxy_addons.store.schema import access_log, seen_devices
from proxy_addons.workflow import audit
from tests.cli.test_cli_elsewhere import schoolgate
from tests.conftest import ROOT
from tests.pg import sqlite_url
from tests.workflow.test_retention import access_row
from tests.workflow.test_subject_access import AMY, BEN, seed

POLICY = str(ROOT / "tests/data/policy/school.yaml")


def opened(var: Path) -> Store:
    var.mkdir(exist_ok=True)
    return Store.open(sqlite_url(var))


def test_store_purge_says_what_went_and_a_dry_run_deletes_nothing(tmp_path: Path) -> None:
    var = tmp_path / "var"
    store = opened(var)
    now = datetime.now(UTC)
    with store.begin() as conn:
        conn.execute(access_log.insert(), [access_row(now - timedelta(days=900))] * 3)
        conn.execute(access_log.insert(), [access_row(now)])
        long_ago = now - timedelta(days=900)
        conn.execute(
            seen_devices.insert().values(
                mac="aa:00:00:00:00:01", first_seen=long_ago, last_seen=long_ago
            )
        )
    common = ("--policy", POLICY, "--var", str(var))
    dry = schoolgate(tmp_path, "store", "purge", "--dry-run", *common)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert any(line.split() == ["access_log", "would", "delete", "3", "rows"] for line in lines)
    assert any(line.split() == ["seen_devices", "would", "delete", "1", "rows"] for line in lines)
    with store.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(access_log)) == 4

    done = schoolgate(tmp_path, "store", "purge", *common)
    assert done.returncode == 0, done.stderr
    assert any(
        line.split() == ["access_log", "deleted", "3", "rows"] for line in done.stdout.splitlines()
    )
    assert "the audit trail is never purged" in done.stdout
    with store.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(access_log)) == 1
        assert conn.scalar(sa.select(sa.func.count()).select_from(seen_devices)) == 0


def test_people_export_writes_one_persons_records_and_is_audited(tmp_path: Path) -> None:
    var = tmp_path / "var"
    store = opened(var)
    seed(store)
    common = ("--policy", POLICY, "--var", str(var), "--as", "mrs.patel")
    out = tmp_path / "amy.zip"
    made = schoolgate(
        tmp_path,
        "people",
        "export",
        AMY,
        "--reason",
        "SAR 12",
        "--format",
        "zip",
        "--out",
        str(out),
        *common,
    )
    assert made.returncode == 0, made.stderr
    assert f"about {AMY} written to {out}" in made.stderr
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as archive:
        document = json.loads(archive.read("export.json"))
    assert document["subject"]["username"] == AMY
    assert BEN not in json.dumps(document["parts"])

    shown = schoolgate(tmp_path, "people", "export", BEN, "--reason", "SAR 13", *common)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["rows"]["alerts"] == 1
    exports = [r for r in audit.records(store) if r.action == "people.exported"]
    assert [(r.actor, r.subject, r.detail["reason"]) for r in exports] == [
        ("mrs.patel", f"user:{AMY}", "SAR 12"),
        ("mrs.patel", f"user:{BEN}", "SAR 13"),
    ]


def test_people_export_without_a_reason_is_refused(tmp_path: Path) -> None:
    var = tmp_path / "var"
    store = opened(var)
    result = schoolgate(
        tmp_path,
        "people",
        "export",
        AMY,
        "--reason",
        " ",
        "--as",
        "dsl",
        "--policy",
        POLICY,
        "--var",
        str(var),
    )
    assert result.returncode == 1
    assert "a reason is needed" in result.stderr
    assert audit.records(store) == []

"""The durable store on real SQLite and real PostgreSQL: migrations, settings, concurrency."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from proxy_addons.store import MIGRATIONS, Store, StoreError, alembic_config, store_url
from proxy_addons.store.schema import GENESIS_HASH, audit_head, metadata, unblocks
from tests.pg import db_url, is_postgresql  # noqa: F401  (db_url is a fixture)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 11, 25, 9, 30, tzinfo=UTC)
# The newest shipped revision: the tests follow it as revisions are added.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture
def open_store(db_url: str) -> Iterator[Callable[..., Store]]:  # noqa: F811
    """Opens stores on this test's database and closes them all afterwards."""
    opened: list[Store] = []

    def _open(**kwargs: object) -> Store:
        store = Store.open(db_url, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.dispose()


def _revision(store: Store) -> set[str]:
    with store.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def _unblock(uid: str, status: str = "pending") -> dict[str, object]:
    return {
        "id": uid,
        "scope": "domain",
        "target": "example.org",
        "audience_kind": "profile",
        "audience": ["year9"],
        "starts_at": NOW,
        "ends_at": NOW + timedelta(hours=1),
        "reason": "Science lesson on volcanoes",
        "requested_by": "ms.jones",
        "requested_at": NOW,
        "status": status,
    }


def test_store_url_prefers_the_dsn(tmp_path: Path) -> None:
    assert store_url(tmp_path) == f"sqlite:///{tmp_path}/schoolgate.db"
    dsn = "postgresql+psycopg://u:p@db/schoolgate"
    assert store_url(tmp_path, dsn) == dsn


def test_fresh_database_upgrades_to_head_then_reopens_without_change(
    open_store: Callable[..., Store], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy_addons.store")
    store = open_store()
    assert _revision(store) == {HEAD}
    assert f"upgrading from empty to {HEAD}" in caplog.text
    with store.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        head = conn.execute(sa.select(audit_head)).one()
    assert {"unblocks", "audit_log", "audit_head", "reports", "accounts"} <= names
    assert (head.id, head.seq, head.hash) == (1, 0, GENESIS_HASH)

    caplog.clear()
    again = open_store()
    assert _revision(again) == {HEAD}
    assert "upgrading" not in caplog.text
    with again.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_head)).scalar() == 1


def test_migrations_build_exactly_the_schema_in_schema_py(
    open_store: Callable[..., Store],
) -> None:
    store = open_store()
    with store.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []


TEST_REVISION = '''"""Test-only revision: a later schema change, to show upgrades run by themselves.

Not shipped.
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_test"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("handled", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("handled")
'''


def test_database_at_an_older_revision_is_upgraded_keeping_its_data(
    open_store: Callable[..., Store], tmp_path: Path
) -> None:
    old = open_store()
    with old.begin() as conn:
        conn.execute(unblocks.insert().values(**_unblock("UB-OLD001")))
    old.dispose()

    newer = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, newer, ignore=shutil.ignore_patterns("__pycache__"))
    (newer / "versions" / "0002_test.py").write_text(TEST_REVISION.replace("{head}", HEAD or ""))
    store = open_store(migrations=newer)

    assert _revision(store) == {"0002_test"}
    with store.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("reports")}
        kept = conn.execute(sa.select(unblocks.c.id, unblocks.c.ends_at)).one()
    assert "handled" in columns
    assert kept == ("UB-OLD001", NOW + timedelta(hours=1))


def test_database_from_a_newer_version_is_refused(open_store: Callable[..., Store]) -> None:
    store = open_store()
    with store.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(StoreError, match="revision 0999.*newer"):
        open_store()


# Imports first, then waits for the go file, so that the Store.open calls overlap.
OPEN_WHEN_TOLD = """
import sys, time
from pathlib import Path
from proxy_addons.store import Store
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.005)
Store.open(url).dispose()
"""


def test_processes_starting_at_once_migrate_once(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, db_url, str(flag), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for flag in ready
    ]
    try:
        deadline = time.monotonic() + 30
        while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    store = Store.open(db_url)
    try:
        assert _revision(store) == {HEAD}
        with store.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(audit_head)).scalar() == 1
    finally:
        store.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/new/folder/schoolgate.db")
    try:
        assert (tmp_path / "new" / "folder" / "schoolgate.db").is_file()
        with store.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 5000
    finally:
        store.dispose()


def test_times_come_back_timezone_aware_in_utc(open_store: Callable[..., Store]) -> None:
    store = open_store()
    london_summer = datetime(2025, 7, 1, 14, 0, tzinfo=timezone(timedelta(hours=1)))
    row = _unblock("UB-TZ0001") | {"starts_at": london_summer}
    with store.begin() as conn:
        conn.execute(unblocks.insert().values(**row))
    with store.connect() as conn:
        starts = conn.execute(sa.select(unblocks.c.starts_at)).scalar_one()
        # Comparisons in SQL are in UTC too.
        found = conn.execute(
            sa.select(unblocks.c.id).where(
                unblocks.c.starts_at == datetime(2025, 7, 1, 13, 0, tzinfo=UTC)
            )
        ).scalar()
    assert starts == london_summer and starts.tzinfo == UTC
    assert found == "UB-TZ0001"

    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        with store.begin() as conn:
            bad = _unblock("UB-NAIVE1") | {"starts_at": datetime(2025, 7, 1, 14, 0)}
            conn.execute(unblocks.insert().values(**bad))


def test_concurrent_read_then_write_transactions_all_succeed(
    open_store: Callable[..., Store],
) -> None:
    """Each transaction reads the version and writes version+1: no errors, no lost update."""
    store = open_store()
    with store.begin() as conn:
        conn.execute(unblocks.insert().values(**_unblock("UB-COUNT1")))
    threads, rounds = 4, 15
    start = threading.Barrier(threads)

    def bump() -> None:
        start.wait()
        for _ in range(rounds):
            with store.begin() as conn:
                version = conn.execute(
                    sa.select(unblocks.c.version)
                    .where(unblocks.c.id == "UB-COUNT1")
                    .with_for_update()
                ).scalar_one()
                conn.execute(
                    unblocks.update()
                    .where(unblocks.c.id == "UB-COUNT1")
                    .values(version=version + 1)
                )

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(bump) for _ in range(threads)]:
            future.result()
    with store.connect() as conn:
        final = conn.execute(sa.select(unblocks.c.version)).scalar_one()
    assert final == 1 + threads * rounds


def test_two_deciders_at_once_exactly_one_wins(open_store: Callable[..., Store]) -> None:
    store = open_store()
    ids = [f"UB-RACE{i:02d}" for i in range(12)]
    with store.begin() as conn:
        conn.execute(unblocks.insert(), [_unblock(i) for i in ids])

    def approve(uid: str, who: str, barrier: threading.Barrier) -> int:
        barrier.wait()
        with store.begin() as conn:
            status = conn.execute(
                sa.select(unblocks.c.status).where(unblocks.c.id == uid)
            ).scalar_one()
            if status != "pending":
                return 0
            return conn.execute(
                unblocks.update()
                .where(unblocks.c.id == uid, unblocks.c.status == "pending")
                .values(status="active", decided_by=who, version=unblocks.c.version + 1)
            ).rowcount

    with ThreadPoolExecutor(2) as pool:
        for uid in ids:
            barrier = threading.Barrier(2)
            futures = [pool.submit(approve, uid, who, barrier) for who in ("dsl", "deputy")]
            assert sorted(f.result() for f in futures) == [0, 1], uid
    with store.connect() as conn:
        rows = conn.execute(sa.select(unblocks.c.status, unblocks.c.version)).all()
    assert rows == [("active", 2)] * len(ids)


def test_0013_marks_incidents_opened_from_staff_concerns(db_url: str) -> None:  # noqa: F811
    """An incident opened from a concern about staff before 0013 stays the headteacher's."""
    engine = sa.create_engine(db_url)
    when = "2026-12-01 10:00:00"  # as text: both databases read it
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(connection=conn), "0012")
            for alert_id, audience in ((1, "staff"), (2, "safeguarding")):
                conn.execute(
                    sa.text(
                        "INSERT INTO alerts (id, raised_at, last_seen_at, kind, severity, "
                        "audience, summary, event, fold_key, recipients, state) VALUES "
                        "(:id, :at, :at, 'risk_phrase', 4, :aud, 's', '{}', 'k', '[]', 'closed')"
                    ),
                    {"id": alert_id, "at": when, "aud": audience},
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO incidents (id, occurred_at, location, description, "
                        "action_taken, people, alert_id, recorded_by, recorded_at, state) "
                        "VALUES (:id, :at, 'x', 'x', 'x', '[]', :id, 'dsl', :at, 'open')"
                    ),
                    {"id": alert_id, "at": when},
                )
            command.upgrade(alembic_config(connection=conn), "0013")
            marked = dict(conn.execute(sa.text("SELECT id, about_staff FROM incidents")).all())
    finally:
        engine.dispose()
    assert {k: bool(v) for k, v in marked.items()} == {1: True, 2: False}

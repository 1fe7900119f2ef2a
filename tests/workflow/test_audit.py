"""The hash-chained audit trail on real SQLite and PostgreSQL, tampered with by raw SQL."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.store import Store
from proxy_addons.store.schema import GENESIS_HASH, audit_head, audit_log
from proxy_addons.workflow import audit
from tests.pg import db_url, sqlite_url  # noqa: F401  (db_url is a fixture)

NOW = datetime(2025, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    opened = Store.open(db_url)
    yield opened
    opened.dispose()


def _fill(store: Store, n: int, start: datetime = NOW) -> list[audit.AuditRecord]:
    out = []
    with store.begin() as conn:
        for i in range(n):
            out.append(
                audit.append(
                    conn,
                    actor=["ms.jones", "mr.khan (DSL)", "schoolgate"][i % 3],
                    action=["unblock.requested", "unblock.approved", "unblock.expired"][i % 3],
                    subject=f"UB-{i:06d}",
                    detail={"n": i, "why": "Geografía: volcanoes 🌋", "list": [i, None, 1.5]},
                    address="10.0.0.7" if i % 2 else None,
                    at=start + timedelta(minutes=i),
                )
            )
    return out


def _sql(store: Store, statement: str, **params: Any) -> None:
    """Tampering straight in the database, as someone with its password could."""
    with store.begin() as conn:
        conn.execute(sa.text(statement), params)


def _row(store: Store, seq: int) -> dict[str, Any]:
    with store.connect() as conn:
        row = conn.execute(sa.select(audit_log).where(audit_log.c.seq == seq)).one()
    return dict(row._mapping)


def test_an_appended_log_verifies(store: Store) -> None:
    written = _fill(store, 50)
    assert [r.seq for r in written] == list(range(1, 51))
    assert written[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(written, written[1:], strict=False))
    assert audit.records(store) == written
    assert audit.verify(store) == audit.VerifyResult(True, 50, None, None)


def test_the_hash_is_the_documented_formula(store: Store) -> None:
    """Anyone can re-check an export: sha256(prev_hash + canonical JSON of the fields)."""
    cet = timezone(timedelta(hours=1))
    with store.begin() as conn:
        rec = audit.append(
            conn,
            actor="ms.jones",
            action="unblock.requested",
            subject="UB-7K3Q9M",
            detail={"b": "é", "a": 1},
            address="10.1.2.3",
            at=datetime(2025, 11, 25, 10, 0, 0, 123456, tzinfo=cet),
        )
    body = (
        '[1,"2025-11-25T09:00:00.123456+00:00","ms.jones","unblock.requested",'
        '"UB-7K3Q9M",{"a":1,"b":"é"},"10.1.2.3"]'
    )
    assert rec.hash == hashlib.sha256((GENESIS_HASH + body).encode()).hexdigest()
    assert rec.at == datetime(2025, 11, 25, 9, 0, 0, 123456, tzinfo=UTC)


def test_an_empty_log_verifies(store: Store) -> None:
    assert audit.verify(store) == audit.VerifyResult(True, 0, None, None)


def test_a_rolled_back_append_leaves_no_gap(store: Store) -> None:
    _fill(store, 3)
    with pytest.raises(RuntimeError), store.begin() as conn:
        audit.append(conn, actor="a", action="x", subject="s", detail={})
        raise RuntimeError("the caller's own change failed")
    later = _fill(store, 1)
    assert later[0].seq == 4
    assert audit.verify(store).ok


def test_an_edited_detail_is_found_at_its_record(store: Store) -> None:
    _fill(store, 50)
    with store.begin() as conn:  # JSON needs a cast on PostgreSQL, so through Core
        conn.execute(
            audit_log.update().where(audit_log.c.seq == 17).values(detail={"n": 17, "why": "x"})
        )
    result = audit.verify(store)
    assert (result.ok, result.broken_seq, result.checked) == (False, 17, 16)
    assert result.problem == (
        "Record 17's contents do not match its hash: it was altered after writing."
    )


def test_an_edited_actor_or_time_is_found(store: Store) -> None:
    _fill(store, 20)
    _sql(store, "UPDATE audit_log SET actor = 'someone.else' WHERE seq = 5")
    assert audit.verify(store).broken_seq == 5
    _sql(store, "UPDATE audit_log SET actor = 'mr.khan (DSL)' WHERE seq = 5")
    assert audit.verify(store).ok
    with store.begin() as conn:
        conn.execute(audit_log.update().where(audit_log.c.seq == 3).values(at=NOW))
    assert audit.verify(store).broken_seq == 3


def test_a_deleted_middle_record_is_found_at_the_next(store: Store) -> None:
    _fill(store, 50)
    _sql(store, "DELETE FROM audit_log WHERE seq = 25")
    result = audit.verify(store)
    assert (result.ok, result.broken_seq, result.checked) == (False, 26, 24)
    assert result.problem == "Record 26 follows record 24: record 25 is missing (deleted)."


def test_deleting_and_renumbering_still_breaks_the_chain(store: Store) -> None:
    _fill(store, 10)
    _sql(store, "DELETE FROM audit_log WHERE seq = 5")
    for seq in range(6, 11):
        _sql(store, "UPDATE audit_log SET seq = :new WHERE seq = :old", new=seq - 1, old=seq)
    _sql(store, "UPDATE audit_head SET seq = 9 WHERE id = 1")
    result = audit.verify(store)
    assert (result.ok, result.broken_seq) == (False, 5)
    assert "does not chain to record 4's hash" in (result.problem or "")


def test_swapped_records_are_found(store: Store) -> None:
    _fill(store, 30)
    a, b = _row(store, 10), _row(store, 20)
    with store.begin() as conn:
        for seq, other in ((10, b), (20, a)):
            values = {k: v for k, v in other.items() if k != "seq"}
            conn.execute(audit_log.update().where(audit_log.c.seq == seq).values(**values))
    result = audit.verify(store)
    assert (result.ok, result.broken_seq) == (False, 10)
    assert "deleted, replaced or reordered" in (result.problem or "")


def test_an_edited_last_record_is_found(store: Store) -> None:
    _fill(store, 50)
    _sql(store, "UPDATE audit_log SET subject = 'UB-FORGED' WHERE seq = 50")
    result = audit.verify(store)
    assert (result.ok, result.broken_seq) == (False, 50)


def test_a_rehashed_last_record_is_found_by_the_head(store: Store) -> None:
    _fill(store, 50)
    last = audit.records(store)[-1]
    forged = audit.record_hash(
        last.prev_hash, 50, last.at, last.actor, last.action, "UB-FORGED", last.detail, None
    )
    _sql(
        store,
        "UPDATE audit_log SET subject = 'UB-FORGED', address = NULL, hash = :h WHERE seq = 50",
        h=forged,
    )
    result = audit.verify(store)
    assert (result.ok, result.broken_seq, result.checked) == (False, 50, 50)
    assert result.problem == (
        "The head's hash does not match record 50: the last record was replaced, "
        "or the head was altered."
    )


def test_an_edited_head_is_found(store: Store) -> None:
    _fill(store, 10)
    _sql(store, "UPDATE audit_head SET hash = :h WHERE id = 1", h="f" * 64)
    assert audit.verify(store).broken_seq == 10
    _sql(store, "UPDATE audit_head SET hash = :h, seq = 11 WHERE id = 1", h="f" * 64)
    assert "head says 11" in (audit.verify(store).problem or "")


def test_records_cut_off_the_end_are_found(store: Store) -> None:
    _fill(store, 10)
    _sql(store, "DELETE FROM audit_log WHERE seq >= 9")
    result = audit.verify(store)
    assert (result.ok, result.broken_seq) == (False, 8)
    assert result.problem == (
        "The log ends at record 8 but its head says 10: the last records were deleted."
    )


def test_a_record_edited_into_nonsense_is_reported_not_raised(tmp_path: Path) -> None:
    """SQLite only: PostgreSQL's column types refuse unparseable values themselves."""
    store = Store.open(sqlite_url(tmp_path))
    _fill(store, 10)
    _sql(store, "UPDATE audit_log SET detail = '{not json' WHERE seq = 4")
    result = audit.verify(store)
    assert (result.ok, result.broken_seq) == (False, 4)
    assert "can't be read" in (result.problem or "")
    store.dispose()


def test_concurrent_appends_keep_one_valid_chain(store: Store) -> None:
    threads, each = 4, 15
    start = threading.Barrier(threads)

    def writer(name: str) -> list[int]:
        start.wait()
        seqs = []
        for i in range(each):
            with store.begin() as conn:
                rec = audit.append(conn, actor=name, action="test", subject=str(i), detail={})
            seqs.append(rec.seq)
        return seqs

    with ThreadPoolExecutor(threads) as pool:
        results = [f.result() for f in [pool.submit(writer, f"t{n}") for n in range(threads)]]
    assert sorted(s for seqs in results for s in seqs) == list(range(1, threads * each + 1))
    assert audit.verify(store) == audit.VerifyResult(True, threads * each, None, None)
    with store.connect() as conn:
        assert conn.execute(sa.select(audit_head.c.seq)).scalar() == threads * each


def test_append_refuses_what_the_databases_would_disagree_on(store: Store) -> None:
    with store.begin() as conn:
        with pytest.raises(ValueError, match="naive datetime"):
            audit.append(conn, actor="a", action="x", subject="s", detail={}, at=datetime.now())
        with pytest.raises(ValueError, match="subject is 201 characters"):
            audit.append(conn, actor="a", action="x", subject="s" * 201, detail={})
        with pytest.raises(ValueError):
            audit.append(conn, actor="a", action="x", subject="s", detail={"v": float("nan")})
    with store.connect() as conn, pytest.raises(RuntimeError, match="Store.begin"):
        audit.append(conn, actor="a", action="x", subject="s", detail={})
    assert audit.verify(store) == audit.VerifyResult(True, 0, None, None)


def test_records_and_exports_select_by_time(store: Store) -> None:
    _fill(store, 30)  # one a minute from NOW
    start, end = NOW + timedelta(minutes=10), NOW + timedelta(minutes=20)
    assert [r.seq for r in audit.records(store, start, end)] == list(range(11, 21))
    assert [r.seq for r in audit.records(store, None, start)] == list(range(1, 11))
    assert [r.seq for r in audit.records(store, end, None)] == list(range(21, 31))

    exported = json.loads(audit.export(store, start, end, "json"))
    assert [r["seq"] for r in exported] == list(range(11, 21))
    assert exported[0]["at"] == "2025-11-25T09:10:00.000000+00:00"
    for r in exported:  # each hash can be checked from the export alone
        body = [r["seq"], r["at"], r["actor"], r["action"], r["subject"], r["detail"], r["address"]]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256((r["prev_hash"] + text).encode()).hexdigest() == r["hash"]

    rows = list(csv.DictReader(io.StringIO(audit.export(store, start, end, "csv"))))
    assert [int(r["seq"]) for r in rows] == list(range(11, 21))
    assert list(rows[0]) == list(audit.EXPORT_FIELDS)
    assert json.loads(rows[0]["detail"])["n"] == 10
    assert audit.export(store, NOW + timedelta(days=1), None, "json") == "[]\n"


def test_csv_export_defuses_spreadsheet_formulas(store: Store) -> None:
    with store.begin() as conn:
        audit.append(
            conn, actor="pupil", action="report", subject='=HYPERLINK("http://x")', detail={}
        )
    (row,) = csv.DictReader(io.StringIO(audit.export(store, None, None, "csv")))
    assert row["subject"] == '\'=HYPERLINK("http://x")'
    assert json.loads(audit.export(store, None, None, "json"))[0]["subject"].startswith("=")

"""The tamper-evident audit trail: an append-only log where each record carries a hash chain.

Every record's `hash` is sha256 over the previous record's hash and a canonical
JSON form of the record itself, so editing, deleting or reordering records
breaks the chain from that point on and `verify` names the first broken record.
The single `audit_head` row holds the newest (seq, hash): every append locks it,
which serialises appends from all processes and gateways sharing the database
(so the chain never forks), and it lets `verify` notice records cut off the end.

What the chain cannot show by itself: someone with write access to the database
who rewrites records *and* recomputes every later hash and the head. Keep the
head's hash somewhere else now and then (an export, an e-mail, syslog) to pin
the history up to it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from proxy_addons.record.access_export import csv_cell
from proxy_addons.store import READ_ONLY_OPTION, Store
from proxy_addons.store.schema import GENESIS_HASH, audit_head, audit_log

_LIMITS = {"actor": 200, "action": 40, "subject": 200, "address": 64}


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    address: str | None
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form: times in ISO 8601 UTC."""
        return {
            "seq": self.seq,
            "at": _iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "detail": self.detail,
            "address": self.address,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None
    problem: str | None


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def record_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any],
    address: str | None,
) -> str:
    """sha256 hex of prev_hash + canonical JSON of [seq, at, actor, action, subject, detail,
    address].

    The canonical JSON has sorted keys, no spaces, UTF-8 text, and `at` in ISO
    8601 UTC with microseconds, so anyone can recompute it from an export.
    """
    body = _canonical([seq, _iso(at), actor, action, subject, detail, address])
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def _check(name: str, value: str | None) -> None:
    if value is not None and len(value) > _LIMITS[name]:
        # SQLite would keep it and PostgreSQL refuse it: refuse it on both.
        raise ValueError(f"audit {name} is {len(value)} characters; at most {_LIMITS[name]}")


def append(
    conn: sa.Connection,
    *,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any],
    address: str | None = None,
    at: datetime | None = None,
) -> AuditRecord:
    """Add a record inside the caller's write transaction (`Store.begin()`).

    The record is committed, or rolled back, with the caller's own changes. The
    head stays locked until then, so keep the rest of the transaction short and
    append last (always taking the head after other row locks avoids deadlocks).
    """
    if conn.get_execution_options().get(READ_ONLY_OPTION):
        # Store.connect() ends in a rollback: the record would silently vanish.
        raise RuntimeError("audit.append needs a write transaction: use Store.begin()")
    for name, value in (
        ("actor", actor),
        ("action", action),
        ("subject", subject),
        ("address", address),
    ):
        _check(name, value)
    if at is not None and (at.tzinfo is None or at.utcoffset() is None):
        raise ValueError(f"naive datetime {at!r}: audit times must be timezone-aware")
    when = (at or datetime.now(UTC)).astimezone(UTC)
    # What goes in is what comes back out of the JSON column, so the hash matches later.
    detail = json.loads(_canonical(detail))

    head = conn.execute(
        sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).one()
    seq = head.seq + 1
    digest = record_hash(head.hash, seq, when, actor, action, subject, detail, address)
    conn.execute(
        audit_log.insert().values(
            seq=seq,
            at=when,
            actor=actor,
            action=action,
            subject=subject,
            detail=detail,
            address=address,
            prev_hash=head.hash,
            hash=digest,
        )
    )
    conn.execute(audit_head.update().where(audit_head.c.id == 1).values(seq=seq, hash=digest))
    return AuditRecord(seq, when, actor, action, subject, detail, address, head.hash, digest)


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        detail=row.detail,
        address=row.address,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _snapshot(conn: sa.Connection) -> sa.Connection:
    """One consistent view for reading the head and the log together."""
    if conn.dialect.name == "postgresql":
        return conn.execution_options(isolation_level="REPEATABLE READ")
    return conn  # SQLite: a read transaction already sees one snapshot


def verify(store: Store) -> VerifyResult:
    """Walk the whole log in seq order and report the first record where the chain breaks."""
    checked = 0
    prev_seq, prev_hash = 0, GENESIS_HASH
    with store.connect() as raw:
        conn = _snapshot(raw)
        head = conn.execute(
            sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        ).first()
        rows = conn.execution_options(yield_per=1000).execute(
            sa.select(audit_log).order_by(audit_log.c.seq)
        )
        try:
            for row in rows:
                rec = _record(row)
                problem = _check_link(rec, prev_seq, prev_hash)
                if problem is not None:
                    return VerifyResult(False, checked, rec.seq, problem)
                checked += 1
                prev_seq, prev_hash = rec.seq, rec.hash
        except (ValueError, TypeError) as exc:
            # e.g. a time or detail edited into something that no longer parses (SQLite)
            return VerifyResult(
                False,
                checked,
                prev_seq + 1,
                f"The record after record {prev_seq} can't be read ({exc}): it was altered.",
            )
        finally:
            rows.close()
    if head is None:
        return VerifyResult(False, checked, None, "The audit head row is missing.")
    if head.seq != prev_seq or head.hash != prev_hash:
        return VerifyResult(False, checked, prev_seq or None, _head_problem(head, prev_seq))
    return VerifyResult(True, checked, None, None)


def _check_link(rec: AuditRecord, prev_seq: int, prev_hash: str) -> str | None:
    expected = prev_seq + 1
    if rec.seq < expected:
        return f"Record {rec.seq} is out of order: it comes after record {prev_seq}."
    if rec.seq > expected:
        missing = (
            f"record {expected} is"
            if rec.seq == expected + 1
            else f"records {expected} to {rec.seq - 1} are"
        )
        return f"Record {rec.seq} follows record {prev_seq}: {missing} missing (deleted)."
    if rec.prev_hash != prev_hash:
        before = f"record {prev_seq}'s hash" if prev_seq else "the start of the log"
        return (
            f"Record {rec.seq} does not chain to {before}: records before it were "
            "deleted, replaced or reordered."
        )
    try:
        digest = record_hash(
            rec.prev_hash,
            rec.seq,
            rec.at,
            rec.actor,
            rec.action,
            rec.subject,
            rec.detail,
            rec.address,
        )
    except (TypeError, ValueError):
        digest = ""
    if digest != rec.hash:
        return f"Record {rec.seq}'s contents do not match its hash: it was altered after writing."
    return None


def _head_problem(head: Any, last_seq: int) -> str:
    if head.seq > last_seq:
        return (
            f"The log ends at record {last_seq} but its head says {head.seq}: "
            "the last records were deleted."
        )
    if head.seq < last_seq:
        return (
            f"The log goes on to record {last_seq} but its head says {head.seq}: "
            "records were added outside the audit trail, or the head was altered."
        )
    return (
        f"The head's hash does not match record {last_seq}: the last record was "
        "replaced, or the head was altered."
    )


def records(
    store: Store, start: datetime | None = None, end: datetime | None = None
) -> list[AuditRecord]:
    """Records with start <= at < end (either bound may be open), in seq order."""
    query = sa.select(audit_log).order_by(audit_log.c.seq)
    if start is not None:
        query = query.where(audit_log.c.at >= start)
    if end is not None:
        query = query.where(audit_log.c.at < end)
    with store.connect() as conn:
        return [_record(row) for row in conn.execute(query)]


EXPORT_FIELDS = (
    "seq",
    "at",
    "actor",
    "action",
    "subject",
    "detail",
    "address",
    "prev_hash",
    "hash",
)


def export(
    store: Store, start: datetime | None, end: datetime | None, fmt: Literal["csv", "json"]
) -> str:
    """The records in [start, end) as CSV (for people) or JSON (to re-check the hashes).

    CSV cells that a spreadsheet would run as a formula (=, +, -, @ first) get
    a leading apostrophe, since subjects and details come from web forms; the
    JSON export is exact, and each record's hash can be recomputed from it.
    """
    found = records(store, start, end)
    if fmt == "json":
        return json.dumps([r.as_dict() for r in found], ensure_ascii=False, indent=1) + "\n"
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}: csv or json")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_FIELDS)
    for r in found:
        row = r.as_dict()
        row["detail"] = _canonical(r.detail)
        writer.writerow([csv_cell(row[f]) for f in EXPORT_FIELDS])
    return out.getvalue()

"""Access log records: built from the Filter's decisions, written as JSON lines and to the store.

Pure of mitmproxy, so the writer, the queries and the purge are the same code in
the gateway, in `schoolgate log ...` and in the tests.

What a record holds is what a safeguarding lead needs to answer "who went
where, when, and what happened": time, user, profile, device, method, host,
URL without its query string (a search keeps only its term), the search term,
the decision and why (category, rule, list entry, unblock). Never a password,
a cookie, a header or a page.

The gateway hands records to an `AccessWriter`: a queue and one thread, so the
proxy never waits on a disk or a database. The thread appends JSON lines (with
size-based rotation, like `logging.handlers.RotatingFileHandler`), writes the
store in batches, and purges what is older than the retention period.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import sqlalchemy as sa

from proxy_addons.core.search_terms import extract, log_url
from proxy_addons.record import metrics
from proxy_addons.store import Store
from proxy_addons.store.schema import access_log

logger = logging.getLogger(__name__)

JSON_FILE = Path("log") / "access.jsonl"  # under the gateway's var folder
PURGE_SECONDS = 3600.0
DELETE_BATCH = 5000
MAX_PENDING_ROWS = 100_000  # rows kept for a store that is down, before the oldest go
LOSS_LOG_SECONDS = 60.0  # lost records are logged at most this often (counted always)

_LIMITS = {
    "user": 200,
    "profile": 100,
    "ip": 64,
    "device_name": 200,
    "device_id": 64,
    "method": 16,
    "host": 255,
    "url": 4096,
    "reason": 20,
    "category": 100,
    "rule": 1000,
    "list": 1000,
    "entry": 2048,
    "unblock_id": 20,
    "reference": 32,
    "stage": 10,
    "enforced": 100,
}


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One decision, as logged. `url` is None when only the host name was seen."""

    time: datetime  # UTC
    user: str | None
    profile: str
    ip: str | None
    device_name: str | None  # set once the device agent exists
    device_id: str | None
    method: str | None  # CONNECT for a refused tunnel; None for a TLS-stage decision
    host: str
    url: str | None
    search_term: str | None
    decision: str  # allow | block
    reason: str
    category: str | None
    rule: str | None
    list: str | None  # the list (or rule) the entry came from
    entry: str | None
    unblock_id: str | None
    reference: str | None  # the reference on the block page
    stage: str  # connect | tls | request
    enforced: str | None = None  # safe search enforced on an allowed request (how)

    def __post_init__(self) -> None:
        # A client's undecodable bytes reach here as lone surrogates (a Host header of
        # raw 0xFF): written as \udcff, so no file, store or export refuses the record.
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and not value.isascii():
                clean = value.encode("utf-8", "backslashreplace").decode("utf-8")
                object.__setattr__(self, name, clean)

    def _values(self) -> dict[str, Any]:
        # Every field is immutable (str, None, datetime): no need for asdict's deep copies,
        # which cost more than the rest of writing a record.
        return {name: getattr(self, name) for name in FIELDS}

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: the time in ISO 8601 UTC, every field present."""
        out = self._values()
        out["time"] = self.time.astimezone(UTC).isoformat(timespec="milliseconds")
        return out

    def to_row(self) -> dict[str, Any]:
        out = self._values()
        out["at"] = out.pop("time")
        out["username"] = out.pop("user")
        out["list_source"] = out.pop("list")
        return out

    @classmethod
    def from_row(cls, row: Any) -> AccessRecord:
        m = row._mapping
        names = {f.name: f.name for f in fields(cls)}
        names |= {"time": "at", "user": "username", "list": "list_source"}
        return cls(**{name: m[column] for name, column in names.items()})


FIELDS = [f.name for f in fields(AccessRecord)]
_TEXT_FIELDS = tuple(f for f in FIELDS if f != "time")


def _clip(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    return str(value)[: _LIMITS[name]]


def build(
    decision: dict[str, Any],
    at: datetime,
    *,
    method: str | None = None,
    user: str | None = None,
    ip: str | None = None,
    url: str | None = None,
) -> AccessRecord:
    """A record from the Filter's `flow.metadata["schoolgate"]` (a `Decision.record()`).

    `user`, `ip` and `url` fill in what a failed decision may lack (a decision
    that could not be made knows only the host). Only the fields listed in
    `AccessRecord` are taken: nothing else in the decision reaches the log.
    """
    host = str(decision.get("host") or "")
    full_url = decision.get("url") or url
    search = None
    if full_url:
        parts = urlsplit(str(full_url))
        if parts.query:
            search = extract(parts.hostname or host, f"{parts.path}?{parts.query}")
        full_url = log_url(str(full_url))
    name = decision.get("user") or user
    return AccessRecord(
        time=at.astimezone(UTC),
        user=_clip(str(name).lower() if name else None, "user"),
        profile=_clip(decision.get("profile"), "profile") or "unknown",
        ip=_clip(decision.get("ip") or ip, "ip"),
        device_name=None,
        device_id=None,
        method=_clip(method, "method"),
        host=_clip(host, "host") or "",
        url=_clip(full_url, "url"),
        search_term=search,
        decision="block" if decision.get("action") == "block" else "allow",
        reason=_clip(decision.get("reason"), "reason") or "",
        category=_clip(decision.get("category"), "category"),
        rule=_clip(decision.get("rule"), "rule"),
        list=_clip(decision.get("list_source"), "list"),
        entry=_clip(decision.get("entry"), "entry"),
        unblock_id=_clip(decision.get("unblock_id"), "unblock_id"),
        reference=_clip(decision.get("reference"), "reference"),
        stage=_clip(decision.get("stage"), "stage") or "request",
        enforced=_clip(decision.get("enforced"), "enforced"),
    )


# -- the store ---------------------------------------------------------------


def write_rows(store: Store, records: Sequence[AccessRecord]) -> None:
    if records:
        with store.begin() as conn:
            conn.execute(access_log.insert(), [r.to_row() for r in records])


@dataclass(frozen=True, slots=True)
class Query:
    """What `schoolgate log search` asks; every filter is optional."""

    user: str | None = None
    ip: str | None = None
    profile: str | None = None
    category: str | None = None
    decision: Literal["allow", "block"] | None = None
    host: str | None = None  # the host or any of its subdomains
    term: str | None = None  # a substring of the search term, any case
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    limit: int = 100


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(store: Store, q: Query) -> list[AccessRecord]:
    """The newest `q.limit` records matching `q`, oldest first."""
    c = access_log.c
    where: list[sa.ColumnElement[bool]] = []
    if q.user:
        where.append(c.username == q.user.lower())
    if q.ip:
        where.append(c.ip == q.ip)
    if q.profile:
        where.append(c.profile == q.profile)
    if q.category:
        where.append(c.category == q.category)
    if q.decision:
        where.append(c.decision == q.decision)
    if q.host:
        host = q.host.lower().rstrip(".")
        where.append(sa.or_(c.host == host, c.host.like(f"%.{_like_escape(host)}", escape="\\")))
    if q.term:
        where.append(c.search_term.ilike(f"%{_like_escape(q.term)}%", escape="\\"))
    if q.start:
        where.append(c.at >= q.start)
    if q.end:
        where.append(c.at < q.end)
    stmt = sa.select(access_log).where(*where).order_by(c.at.desc(), c.id.desc()).limit(q.limit)
    with store.connect() as conn:
        rows = conn.execute(stmt).all()
    return [AccessRecord.from_row(r) for r in reversed(rows)]


def purge_store(store: Store, before: datetime) -> int:
    """Delete rows older than `before`, a batch at a time (short locks); returns how many."""
    c = access_log.c
    total = 0
    while True:
        batch = sa.select(c.id).where(c.at < before).limit(DELETE_BATCH)
        with store.begin() as conn:
            deleted = conn.execute(access_log.delete().where(c.id.in_(batch))).rowcount
        total += deleted
        if deleted < DELETE_BATCH:
            return total


# -- JSON lines --------------------------------------------------------------


def rotated_files(path: Path) -> list[Path]:
    """`access.jsonl.1`, `.2`, ... that exist, newest first."""
    found = []
    for p in path.parent.glob(path.name + ".*"):
        suffix = p.name[len(path.name) + 1 :]
        if suffix.isdigit():
            found.append((int(suffix), p))
    return [p for _, p in sorted(found)]


def newest_time(path: Path) -> datetime | None:
    """The time of the last record in a JSON lines file (its mtime if that can't be read)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read().splitlines()
        for line in reversed(tail):
            if line.strip():
                value = datetime.fromisoformat(json.loads(line)["time"])
                return value if value.tzinfo else value.replace(tzinfo=UTC)
        return None
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        try:
            return datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except FileNotFoundError:
            return None


def purge_files(path: Path, before: datetime) -> list[Path]:
    """Delete rotated files whose newest record is older than `before`; returns them."""
    removed = []
    for p in rotated_files(path):
        newest = newest_time(p)
        if newest is not None and newest < before:
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            removed.append(p)
    return removed


def purge(
    store: Store | None, path: Path | None, retention_days: int, now: datetime
) -> tuple[int, list[Path]]:
    """Enforce the retention period: store rows and rotated JSON files older than it go."""
    before = now - timedelta(days=retention_days)
    rows = purge_store(store, before) if store is not None else 0
    files = purge_files(path, before) if path is not None else []
    if rows or files:
        logger.info(
            "access log: purged %d records and %d files older than %d days",
            rows,
            len(files),
            retention_days,
        )
    return rows, files


class JsonLines:
    """An append-only JSON lines file that rotates to `.1`, `.2`, ... at `max_bytes`.

    `write` queues a line and `flush` writes the queue in one system call, unbuffered,
    so what could not be written is known exactly: `flush` returns how many records
    were lost (a full disk). A line cut short is finished at the next flush, so the
    file stays one whole record a line.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        self.error: OSError | None = None  # why the last flush lost records
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: io.FileIO | None = None
        self._open()
        self._lines: list[bytes] = []
        self._rest = b""  # the end of a line cut short by a full disk

    def _open(self) -> None:
        self._file = io.FileIO(self.path, "a")
        self._size = os.fstat(self._file.fileno()).st_size

    def write(self, record: AccessRecord) -> int:
        """Queue one record; returns how many records a rotation's flush lost (usually 0)."""
        line = json.dumps(record.as_dict(), ensure_ascii=False, separators=(",", ":"))
        data = (line + "\n").encode()
        lost = 0
        if self.max_bytes > 0 and self._size and self._size + len(data) > self.max_bytes:
            lost = self.flush() + (1 if self._rest else 0)  # a cut line stays cut
            try:
                self.rotate()
            except OSError as exc:
                self.error = exc  # the new file is opened at the next flush
        self._lines.append(data)
        self._size += len(data)
        return lost

    def flush(self) -> int:
        """Write the queued records; returns how many of them could not be written."""
        lines, self._lines = self._lines, []
        if not lines and not self._rest:
            return 0
        data = self._rest + b"".join(lines)
        done = self._write_out(data)
        if done == len(data):
            self._rest, self.error = b"", None
            return 0
        pos = len(self._rest)
        lost: list[bytes] = []
        if done < pos:  # not even the cut line's end
            self._rest = self._rest[done:]
            lost = lines
        else:
            self._rest = b""
            for i, line in enumerate(lines):
                if done < pos + len(line):
                    if done > pos:  # cut short: finish it next time, lose the ones after
                        self._rest, i = line[done - pos :], i + 1
                    lost = lines[i:]
                    break
                pos += len(line)
        self._size -= sum(map(len, lost))
        return len(lost)

    def _write_out(self, data: bytes) -> int:
        """Bytes of `data` written before an error stopped it (kept in `error`)."""
        done = 0
        try:
            if self._file is None:
                self._open()  # a rotation could not open the new file: try again
            assert self._file is not None
            view = memoryview(data)
            while done < len(data):
                n = self._file.write(view[done:])
                if not n:
                    raise OSError(errno.EIO, "nothing written")
                done += n
        except OSError as exc:
            self.error = exc
        return done

    def rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for old in rotated_files(self.path):
            n = int(old.name.rsplit(".", 1)[1])
            if n >= self.backups:
                old.unlink(missing_ok=True)
        for n in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{n}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.path.exists():
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._rest = b""  # a cut line's end belongs to the file just rotated away
        self._open()

    def drop_if_older(self, before: datetime) -> bool:
        """Empty the current file when even its newest record is older than `before`."""
        self.flush()
        newest = newest_time(self.path)
        if newest is None or newest >= before:
            return False
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)
        self._rest = b""
        self._open()
        return True

    def close(self) -> int:
        """Write what is queued and close; returns how many records could not be written."""
        lost = self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        return lost


_STOP = object()


class AccessWriter:
    """Writes records off the proxy's event loop: JSON lines at once, the store in batches.

    `submit` never blocks: if the thread falls `queue_size` records behind (a
    disk or database that has stopped), new records are dropped rather than slowing
    down every page at school. Every record lost anywhere is counted in `lost` (by
    sink: the queue, the JSON file, the store), in the metrics, and logged at most once
    a minute; state_health.py raises an alert from `lost`.
    """

    def __init__(
        self,
        json_path: Path | None,
        store: Store | None,
        retention_days: Callable[[], int | None],
        *,
        max_bytes: int = 50_000_000,
        backups: int = 20,
        flush_seconds: float = 2.0,
        pace_seconds: float = 0.05,
        batch_size: int = 500,
        purge_seconds: float = PURGE_SECONDS,
        queue_size: int = 100_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.json_path = json_path
        self.store = store
        self.retention_days = retention_days
        self.max_bytes = max_bytes
        self.backups = backups
        self.flush_seconds = flush_seconds
        # Rest between runs of records: the thread wakes a few times a second, not once per
        # request, so the proxy's thread isn't made to hand it the GIL for every page.
        self.pace_seconds = pace_seconds
        self.batch_size = batch_size
        self.purge_seconds = purge_seconds
        self.clock = clock
        self.lost = dict.fromkeys(metrics.ACCESS_LOG_SINKS, 0)  # records lost, by sink
        self.last_loss: str | None = None  # why the newest were lost
        self._loss_logged_at = -LOSS_LOG_SECONDS
        # A SimpleQueue (a C deque) takes a record in a fraction of a Queue's locked put;
        # the bound is checked against its size (racing submitters may pass it by a record).
        self.queue_size = queue_size
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._pending: list[AccessRecord] = []
        self._file: JsonLines | None = None
        self._thread = threading.Thread(target=self._run, name="schoolgate-access-log", daemon=True)
        self._store_failing = False

    def start(self) -> None:
        if self.json_path is not None:
            self._file = JsonLines(self.json_path, self.max_bytes, self.backups)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Records lost before reaching either the file or the store."""
        return self.lost["queue"]

    def submit(self, record: AccessRecord) -> None:
        if self._queue.qsize() < self.queue_size:
            self._queue.put(record)
        else:
            self._lost("queue", 1, "the writer is behind (a disk or the store has stopped)")

    def _lost(self, sink: str, n: int, why: str) -> None:
        """Count `n` records that did not reach `sink`; log it at most once a minute."""
        self.lost[sink] += n
        self.last_loss = f"{sink}: {why}"
        metrics.access_log_dropped(sink, n)
        now = time.monotonic()
        if now - self._loss_logged_at >= LOSS_LOG_SECONDS:
            self._loss_logged_at = now
            logger.error(
                "access log: records lost (queue %d, file %d, store %d so far); newest: %s",
                self.lost["queue"],
                self.lost["file"],
                self.lost["store"],
                self.last_loss,
            )

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)  # never blocks: the stop mark goes in even when the queue is full
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("access log: could not stop the writer cleanly")

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_seconds
        next_purge = time.monotonic()  # purge at start
        stopping = False
        while not stopping:
            wait = max(0.0, min(next_flush, next_purge) - time.monotonic())
            stopping = self._drain(wait)
            now = time.monotonic()
            if stopping or len(self._pending) >= self.batch_size or now >= next_flush:
                self._flush_store()
                next_flush = now + self.flush_seconds
            if now >= next_purge and not stopping:
                self._purge()
                next_purge = now + self.purge_seconds
            if self.pace_seconds and not stopping:
                time.sleep(self.pace_seconds)
        if self._file is not None:
            self._file_lost(self._file.close())

    def _drain(self, wait: float) -> bool:
        """Take what is queued (waiting up to `wait` for the first); True on the stop mark."""
        try:
            item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            return False
        stop = False
        while True:
            if item is _STOP:
                stop = True
            elif isinstance(item, AccessRecord):
                self._write_json(item)
                if self.store is not None:
                    self._pending.append(item)
            if len(self._pending) >= self.batch_size:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        if self._file is not None:
            self._file_lost(self._file.flush())
        return stop

    def _write_json(self, record: AccessRecord) -> None:
        if self._file is None:
            return
        try:
            self._file_lost(self._file.write(record))
        except Exception as exc:  # one bad record never stops the writer
            self._lost("file", 1, f"a record could not be written: {exc}")

    def _file_lost(self, n: int) -> None:
        if n and self._file is not None:
            error = self._file.error
            why = error.strerror or str(error) if error is not None else "not written"
            self._lost("file", n, f"cannot write {self.json_path}: {why}")

    def _flush_store(self) -> None:
        if self.store is None or not self._pending:
            return
        try:
            write_rows(self.store, self._pending)
        except Exception as exc:
            if not self._store_failing:
                logger.error("access log: cannot write the store (will retry): %s", exc)
            self._store_failing = True
            if len(self._pending) > MAX_PENDING_ROWS:
                lost = len(self._pending) - MAX_PENDING_ROWS
                del self._pending[:lost]
                self._lost("store", lost, f"the store is down ({exc}); kept in JSON only")
            return
        if self._store_failing:
            logger.info("access log: writing the store again")
        self._store_failing = False
        self._pending.clear()

    def _purge(self) -> None:
        days = self.retention_days()
        if not days:
            return
        now = self.clock()
        try:
            purge(self.store, self.json_path, days, now)
            if self._file is not None:
                self._file.drop_if_older(now - timedelta(days=days))
        except Exception as exc:
            logger.error("access log: purge failed (will retry): %s", exc)


# -- reading -----------------------------------------------------------------


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet won't run as a formula (search terms are typed by anyone)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _printable(value: str | None) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in value) if value else ""


def to_csv(records: Iterable[AccessRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(FIELDS)
    for r in records:
        row = r.as_dict()
        writer.writerow([_cell(row[f]) for f in FIELDS])
    return out.getvalue()


def to_json(records: Iterable[AccessRecord]) -> str:
    return json.dumps([r.as_dict() for r in records], ensure_ascii=False, indent=1) + "\n"


def to_table(records: Sequence[AccessRecord], tz: tzinfo) -> str:
    """A table for people: school time, who, what, and the decision in brief."""
    head = ("time", "user", "device", "profile", "decision", "category", "address", "search")
    rows = [head]
    for r in records:
        why = r.category or r.reason
        rows.append(
            (
                f"{r.time.astimezone(tz):%Y-%m-%d %H:%M:%S}",
                r.user or "-",
                r.ip or "-",
                r.profile,
                r.decision.upper(),
                why,
                _printable(r.url or f"{r.host} (host only)")[:100],
                _printable(r.search_term)[:60],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"

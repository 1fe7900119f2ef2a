"""The store in a backup: every row of every table as JSON lines, read in one snapshot, and
loaded back into an empty database brought to the archive's schema revision.

Table by table through SQLAlchemy rather than sqlite3's backup API or pg_dump: see the
package's docstring."""

from __future__ import annotations

import base64
import json
import shutil
import tarfile
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from proxy_addons.ops.backup.archive import BackupError, Where, Writer
from proxy_addons.store import MIGRATIONS, Store, _create_engine, alembic_config
from proxy_addons.store.schema import audit_head, metadata

BATCH = 1000


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decoder(column: sa.Column[Any]) -> Any:
    kind_of = column.type
    if isinstance(kind_of, sa.TypeDecorator):
        kind_of = kind_of.impl_instance
    try:
        kind = kind_of.python_type
    except NotImplementedError:
        return None
    if kind is datetime:
        return datetime.fromisoformat
    if kind is date:
        return date.fromisoformat
    if kind is time:
        return time.fromisoformat
    if kind is bytes:
        return base64.b64decode
    if kind is Decimal:
        return Decimal
    return None


def _snapshot(conn: sa.Connection) -> sa.Connection:
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    return conn  # SQLite: one read transaction under WAL sees one snapshot


def _revision(conn: sa.Connection) -> list[str]:
    return sorted(MigrationContext.configure(conn).get_current_heads())


def tables() -> list[sa.Table]:
    return list(metadata.sorted_tables)  # parents before children


def write_store(store: Store, writer: Writer, spool: Path) -> dict[str, Any]:
    counts: dict[str, int] = {}
    with store.connect() as raw:
        conn = _snapshot(raw)
        revision = _revision(conn)
        present = set(sa.inspect(conn).get_table_names())
        for table in tables():
            if table.name not in present:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execution_options(yield_per=BATCH).execute(
                sa.select(table).order_by(*order)
            )
            lines = (
                json.dumps(
                    {k: _encode(v) for k, v in row._mapping.items()},
                    ensure_ascii=False,
                    sort_keys=True,
                ).encode()
                + b"\n"
                for row in rows
            )
            counts[table.name] = writer.add_lines(f"store/{table.name}.jsonl", lines, spool / "t")
        head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash)).first()
    known = {t.name for t in tables()} | {"alembic_version"}
    meta = {
        "dialect": store.dialect,
        "revision": revision,
        "rows": counts,
        "audit_head": {"seq": head.seq, "hash": head.hash} if head else None,
        "tables_not_saved": sorted(present - known),
    }
    writer.add_bytes("store/meta.json", json.dumps(meta, indent=1).encode())
    return meta


def prepare_store(where: Where, force: bool) -> None:
    """The target database must be empty; with `force`, set the old one aside (or drop it)."""
    url = sa.make_url(where.url)
    if url.get_backend_name() == "sqlite":
        db = Path(url.database or "")
        if not db.exists():
            return
        if not force:
            raise BackupError(
                f"{db} already exists: stop the gateway and move it away, or use --force "
                "(which keeps it as a .before-restore copy)"
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{db}{suffix}")
            if old.exists():
                shutil.move(old, f"{db}.before-restore-{stamp}{suffix}")
        return
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            present = set(sa.inspect(conn).get_table_names())
            ours = present & ({t.name for t in tables()} | {"alembic_version"})
            if not ours:
                return
            if not force:
                raise BackupError(
                    f"the database {url.render_as_string(hide_password=True)} already holds "
                    "Schoolgate tables: restore into an empty one, or use --force to drop them"
                )
            for name in sorted(present):  # every table: later revisions may have added more
                conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    finally:
        engine.dispose()


def load_store(tar: tarfile.TarFile, meta: dict[str, Any], url: str) -> dict[str, int]:
    script = ScriptDirectory.from_config(alembic_config(script_location=MIGRATIONS))
    known = {rev.revision for rev in script.walk_revisions()}
    revision = meta["revision"]
    unknown = set(revision) - known
    if unknown:
        raise BackupError(
            f"the backup's store is at schema revision {', '.join(sorted(unknown))}, which "
            "this version of Schoolgate doesn't know: restore with the version that made it"
        )
    engine = _create_engine(url)
    counts: dict[str, int] = {}
    try:
        with engine.begin() as conn:  # all or nothing
            if revision:
                config = alembic_config(connection=conn, script_location=MIGRATIONS)
                for rev in revision:
                    command.upgrade(config, rev)
            present = set(sa.inspect(conn).get_table_names())
            loaded = [t for t in tables() if t.name in present and t.name in meta["rows"]]
            for table in reversed(loaded):  # rows the migrations seeded (the audit head)
                conn.execute(table.delete())
            for table in loaded:
                counts[table.name] = _load_table(conn, table, tar, f"store/{table.name}.jsonl")
            if conn.dialect.name == "postgresql":
                _reset_sequences(conn, [t for t in tables() if t.name in counts])
    except sa.exc.SQLAlchemyError as exc:
        raise BackupError(f"the store could not be loaded (nothing was kept): {exc}") from exc
    finally:
        engine.dispose()
    return counts


def _load_table(conn: sa.Connection, table: sa.Table, tar: tarfile.TarFile, name: str) -> int:
    handle = tar.extractfile(name)
    if handle is None:
        raise BackupError(f"{name} is not a file")
    columns = {c.name: c for c in table.columns}
    decoders = {n: _decoder(c) for n, c in columns.items()}
    count, batch = 0, []
    for line in handle:
        row = json.loads(line)
        for key, value in row.items():
            if key not in columns:
                raise BackupError(f"{name}: column {key!r} is not in table {table.name}")
            decode = decoders[key]
            if decode is not None and value is not None:
                row[key] = decode(value)
        batch.append(row)
        if len(batch) >= BATCH:
            conn.execute(table.insert(), batch)
            count, batch = count + len(batch), []
    if batch:
        conn.execute(table.insert(), batch)
        count += len(batch)
    return count


def _reset_sequences(conn: sa.Connection, tables: list[sa.Table]) -> None:
    """Rows came with their ids: move each serial's sequence past the largest."""
    for table in tables:
        for column in table.primary_key.columns:
            if column.autoincrement is False or not isinstance(column.type, sa.Integer):
                continue
            conn.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence(:t, :c), "
                    f'COALESCE(MAX("{column.name}"), 1), MAX("{column.name}") IS NOT NULL) '
                    f'FROM "{table.name}"'
                ),
                {"t": table.name, "c": column.name},
            )

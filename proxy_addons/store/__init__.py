"""The gateway's durable store: SQLite by default, PostgreSQL when several gateways share one.

Everything that must outlive a restart and be shared between gateway processes
(unblocks, the audit log, reports, staff accounts) lives here, reached through
SQLAlchemy Core with the tables in `schema.py`.

`Store.open` brings the schema up to date by itself (Alembic `upgrade head`),
under a lock so that two processes starting at once migrate one after the
other. Write through `Store.begin()`; read through `Store.connect()`.

SQLite settings and why:
- WAL journal: readers never block the writer, nor the writer the readers.
- synchronous=FULL: each commit is synced to disk, so a power cut keeps it.
- `BEGIN IMMEDIATE` for `begin()` (and any transaction not opened by
  `connect()`): the write lock is taken at the start, so a read-then-write
  transaction waits its turn instead of failing with "database is locked" when
  another writer got there between its read and its write.
- busy_timeout: waiting writers queue for up to `BUSY_TIMEOUT_MS`.
- foreign keys on (off by default in SQLite).

On PostgreSQL, a read-then-write transaction that must not lose an update reads
with `select(...).with_for_update()` (which SQLite ignores: it already holds the
write lock), or makes the update conditional (`WHERE id=:id AND status=:expected`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
DB_FILE = "schoolgate.db"

# pg_advisory_xact_lock key serialising migrations of one database.
_MIGRATION_LOCK = zlib.crc32(b"schoolgate store migrations")
# Execution option on `Store.connect()` connections: SQLite begins them without
# the write lock, and audit.append refuses them (their transaction never commits).
READ_ONLY_OPTION = "schoolgate_read_only"


# Alembic says "setup plugin ..." and "Context impl ..." at INFO on every start, the first
# while it is being imported: so it is imported only after this, and the gateway's log gets
# our one line about an upgrade instead, unless someone has set these loggers' levels.
for _name in ("alembic.runtime.plugins", "alembic.runtime.migration"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)

from alembic import command  # noqa: E402 - after the loggers above are quietened
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from alembic.util import CommandError  # noqa: E402


class StoreError(RuntimeError):
    """The store can't be used as it is (e.g. its schema is newer than this code)."""


def store_url(var_dir: Path, dsn: str | None = None) -> str:
    """The database URL: `dsn` when given (PostgreSQL), else SQLite in `var_dir`."""
    if dsn:
        return dsn
    return f"sqlite:///{Path(var_dir) / DB_FILE}"


def alembic_config(
    url: str | None = None,
    *,
    connection: sa.Connection | None = None,
    script_location: Path = MIGRATIONS,
) -> Config:
    """An Alembic config without an .ini file, for `Store.open` and for developers.

    A new revision: `command.revision(alembic_config(url), "message",
    rev_id="0002", autogenerate=True)` against a database at head.
    """
    config = Config()
    config.set_main_option("script_location", str(script_location))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _create_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: a long-running gateway outlives PostgreSQL restarts.
        return sa.create_engine(parsed, pool_pre_ping=True)

    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise StoreError(f"SQLite store needs a file path, not {database!r}")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, issues BEGIN (see _on_begin).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _use_wal(cursor)
            # FULL: a commit is on disk before it returns, so a power cut loses no unblock or
            # queued alert (NORMAL in WAL mode may lose the last commits; it never corrupts).
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _use_wal(cursor: Any) -> None:
    """Switch a database file to WAL, waiting for a process that is switching it too.

    Switching needs an exclusive lock, and SQLite answers "database is locked"
    at once instead of calling the busy handler: two processes opening a new
    file together would fail. WAL is persistent, so once one has switched the
    others find it set and don't ask again.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


class Store:
    """An open database, migrated to the current schema."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._reader = engine.execution_options(**{READ_ONLY_OPTION: True})

    @property
    def dialect(self) -> str:
        """The kind of database: "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @classmethod
    def open(cls, url: str, *, migrations: Path = MIGRATIONS) -> Store:
        """Connect and upgrade the schema to the newest revision (`migrations` is for tests)."""
        engine = _create_engine(url)
        store = cls(engine)
        try:
            store._upgrade(migrations)
        except BaseException:
            engine.dispose()
            raise
        logger.info("store open: %s", engine.url.render_as_string(hide_password=True))
        return store

    def _upgrade(self, migrations: Path) -> None:
        script = ScriptDirectory.from_config(alembic_config(script_location=migrations))
        heads = set(script.get_heads())
        # On SQLite, begin() is BEGIN IMMEDIATE: the second process waits here.
        with self.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            current = set(MigrationContext.configure(conn).get_current_heads())
            if current == heads:
                return
            known = {rev.revision for rev in script.walk_revisions()}
            unknown = current - known
            if unknown:
                raise StoreError(
                    f"the database's schema is at revision {', '.join(sorted(unknown))}, which "
                    "this version of Schoolgate doesn't know: was it upgraded by a newer one?"
                )
            logger.info(
                "store schema: upgrading from %s to %s",
                ", ".join(sorted(current)) or "empty",
                ", ".join(sorted(heads)),
            )
            try:
                command.upgrade(
                    alembic_config(connection=conn, script_location=migrations), "heads"
                )
            except CommandError as exc:
                raise StoreError(f"schema upgrade failed: {exc}") from exc

    def begin(self) -> AbstractContextManager[sa.Connection]:
        """A write transaction, committed on leaving the block, rolled back on an exception."""
        return self.engine.begin()

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection for reads; on SQLite its transaction doesn't take the write lock."""
        with self._reader.connect() as conn:
            yield conn

    def dispose(self) -> None:
        """Close pooled connections (before the process exits, or in tests)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"


__all__ = ["MIGRATIONS", "READ_ONLY_OPTION", "Store", "StoreError", "alembic_config", "store_url"]

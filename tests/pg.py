"""The `db_url` fixture: every store test runs on SQLite and on PostgreSQL.

Use it from any test file by importing it into the module (pytest finds
fixtures in the test module's namespace)::

    from tests.pg import db_url  # noqa: F401  (a fixture)

    def test_something(db_url: str) -> None:  # noqa: F811
        store = Store.open(db_url)

Each test gets a fresh database: a new SQLite file under `tmp_path`, or a new
PostgreSQL database created (and dropped afterwards) on the server named by
`SCHOOLGATE_TEST_PG_DSN`, e.g.
`postgresql+psycopg://schoolgate:schoolgate@127.0.0.1:5432/schoolgate_test`
(the role needs CREATEDB; `.ci/run` sets this up). Without the variable the
PostgreSQL cases are skipped, saying why.

Creating and dropping a database takes the server about half a second, over two hundred
times a run: a thread of each test process (`_Databases`) creates the next test's database
while this one runs and drops each used one after it, off the tests' path. Every test still
gets a database made for it alone from the server's template, and nobody else's.
"""

from __future__ import annotations

import os
import secrets
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ENV = "SCHOOLGATE_TEST_PG_DSN"
PG_SKIP = f"{PG_ENV} is not set: PostgreSQL store tests need a server (.ci/run starts one)"


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'schoolgate.db'}"


def is_postgresql(url: str) -> bool:
    return sa.make_url(url).get_backend_name() == "postgresql"


def _admin_engine(dsn: str) -> sa.Engine:
    return sa.create_engine(dsn, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _fresh_pg_database(dsn: str) -> Iterator[str]:
    name = _databases.take(dsn)
    try:
        yield sa.make_url(dsn).set(database=name).render_as_string(hide_password=False)
    finally:
        _databases.drop(dsn, name)


def _create(dsn: str) -> str:
    name = f"sg_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = _admin_engine(dsn)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return name


def _drop_named(dsn: str, name: str) -> None:
    admin = _admin_engine(dsn)
    try:
        _drop(admin, name)
    finally:
        admin.dispose()


class _Databases:
    """Fresh databases made one ahead, and used ones dropped, on one background thread."""

    def __init__(self) -> None:
        self._thread: ThreadPoolExecutor | None = None
        self._next: dict[str, Future[str]] = {}

    def _executor(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="pg-databases")
        return self._thread

    def take(self, dsn: str) -> str:
        """A database made for this test alone (an error making it fails the test)."""
        ready = self._next.pop(dsn, None) or self._executor().submit(_create, dsn)
        self._next[dsn] = self._executor().submit(_create, dsn)
        return ready.result()

    def drop(self, dsn: str, name: str) -> None:
        self._executor().submit(_drop_named, dsn, name)

    def close(self) -> None:
        """Drop the spare database and wait for every drop (at the end of the session)."""
        for dsn, spare in self._next.items():
            try:
                self.drop(dsn, spare.result())
            except sa.exc.SQLAlchemyError:
                pass  # it was never made (the server was down): nothing to drop
        self._next.clear()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None


_databases = _Databases()


def close_databases() -> None:
    """Called once at the end of the session (tests/conftest.py)."""
    _databases.close()


def _drop(admin: sa.Engine, name: str) -> None:
    # FORCE ends connections a test left open (our own role's), but fails if an
    # autovacuum worker (a superuser's) is in the database; a plain DROP stops
    # that worker by itself.
    force = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    plain = f'DROP DATABASE IF EXISTS "{name}"'
    for statement in (force, plain) * 3:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(statement)
            return
        except sa.exc.DBAPIError:
            time.sleep(0.1)
    warnings.warn(f"could not drop the test database {name}", stacklevel=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database that only this test uses."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    dsn = os.environ.get(PG_ENV)
    if not dsn:
        pytest.skip(PG_SKIP)
    yield from _fresh_pg_database(dsn)

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
"""

from __future__ import annotations

import os
import secrets
import time
import warnings
from collections.abc import Iterator
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
    name = f"sg_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = _admin_engine(dsn)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield sa.make_url(dsn).set(database=name).render_as_string(hide_password=False)
        _drop(admin, name)
    finally:
        admin.dispose()


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

"""Alembic's entry point for the store's migrations.

`Store.open` runs `upgrade head` itself, inside a write transaction it has
already locked (so two gateways starting at once migrate one after the other)
and hands the connection over in `config.attributes["connection"]`. Without
one (a developer's `command.revision(..., autogenerate=True)` or an offline SQL
script for a DBA), the URL from `store.alembic_config(url)` is used. There is
no alembic.ini: see `proxy_addons.store.alembic_config`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from proxy_addons.store.schema import metadata

config = context.config


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=metadata,
        compare_type=True,
        # SQLite can't ALTER most things; batch mode copies the table instead.
        render_as_batch=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: use proxy_addons.store.alembic_config(url)")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

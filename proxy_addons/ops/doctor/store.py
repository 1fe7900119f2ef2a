"""The doctor's check of the store: it answers and its schema is this version's (read only).

Also run as `python -m proxy_addons.ops.doctor.store store URL`, printing the check as JSON:
cli/doctor.py does, as the data's owner, when root runs the doctor on a SQLite store."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from proxy_addons.ops.doctor.findings import Check, fail, ok
from proxy_addons.store import alembic_config


def check_store(url: str) -> Check:
    """The store answers and its schema is at this version's head (read only)."""
    parsed = sa.make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    fix = "schoolgate store upgrade (deploy/install.sh runs it)"
    if parsed.get_backend_name() == "sqlite":
        db = Path(parsed.database or "")
        if not db.exists():
            return fail("store", f"no store at {db}", fix)
        # Read only: a check must not create files (as root, they'd be root's).
        engine = sa.create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    else:
        engine = sa.create_engine(parsed, connect_args={"connect_timeout": 5})
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return fail(
            "store",
            f"can't reach the store {shown}: {reason}",
            "check SCHOOLGATE_DSN in schoolgate.env and that the database server runs",
        )
    finally:
        engine.dispose()
    if current == heads:
        return ok("store", f"{shown} at schema {', '.join(sorted(heads))} (current)")
    if not current:
        return fail("store", f"{shown} has no Schoolgate schema", fix)
    return fail(
        "store",
        f"{shown} is at schema {', '.join(sorted(current))}; this version needs "
        f"{', '.join(sorted(heads))}",
        fix,
    )


def _main(argv: Sequence[str]) -> int:
    """`python -m proxy_addons.ops.doctor.store store URL`: the store check as JSON, for running it
    as the data's owner (cli/doctor.py does, when root runs the doctor on a SQLite store)."""
    if len(argv) != 2 or argv[0] != "store":
        print("usage: python -m proxy_addons.ops.doctor.store store URL", file=sys.stderr)
        return 2
    result = check_store(argv[1])
    print(
        json.dumps(
            {
                "name": result.name,
                "level": result.level.value,
                "message": result.message,
                "fix": result.fix,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

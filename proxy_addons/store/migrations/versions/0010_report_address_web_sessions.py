"""Who really reported, and admin sessions the server can end (issue 14).

Devices: the address a report came from (`report_address`) and the addresses it listed
that were not believed (`ignored_ips`); reports stored with a time ahead of their arrival
are brought back to it, so they no longer hold off the genuine reports after them.
Web sessions: one row per signed-in admin web app session, deleted on sign-out.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    # Nullable columns: SQLite adds them in place, no table copy needed.
    op.add_column("devices", sa.Column("report_address", sa.String(64), nullable=True))
    op.add_column("devices", sa.Column("ignored_ips", sa.JSON(), nullable=True))
    op.execute(
        "UPDATE devices SET last_generated_at = last_report_at "
        "WHERE last_generated_at > last_report_at"
    )
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(200), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_web_sessions"),
    )
    op.create_index("ix_web_sessions_username", "web_sessions", ["username"])


def downgrade() -> None:
    op.drop_index("ix_web_sessions_username", table_name="web_sessions")
    op.drop_table("web_sessions")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("ignored_ips")
        batch.drop_column("report_address")

"""The access log: one row per filtering decision, purged after the retention period.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-15

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(200), nullable=True),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("device_name", sa.String(200), nullable=True),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("search_term", sa.String(200), nullable=True),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("category", sa.String(100), nullable=True),
        sa.Column("rule", sa.Text(), nullable=True),
        sa.Column("list_source", sa.Text(), nullable=True),
        sa.Column("entry", sa.Text(), nullable=True),
        sa.Column("unblock_id", sa.String(20), nullable=True),
        sa.Column("reference", sa.String(32), nullable=True),
        sa.Column("stage", sa.String(10), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"),
    )
    op.create_index("ix_access_log_at", "access_log", ["at"])
    op.create_index("ix_access_log_username_at", "access_log", ["username", "at"])
    op.create_index("ix_access_log_ip_at", "access_log", ["ip", "at"])


def downgrade() -> None:
    op.drop_index("ix_access_log_ip_at", table_name="access_log")
    op.drop_index("ix_access_log_username_at", table_name="access_log")
    op.drop_index("ix_access_log_at", table_name="access_log")
    op.drop_table("access_log")

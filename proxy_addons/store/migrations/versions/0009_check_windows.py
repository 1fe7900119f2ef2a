"""Check windows: an agent's termly check in progress, so its test URLs raise no alerts (issue 6).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "check_windows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("urls", sa.Text(), nullable=False),
        sa.Column("opened_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=False),
        sa.Column("closed_at", when, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_check_windows"),
    )
    op.create_index("ix_check_windows_expires_at", "check_windows", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_check_windows_expires_at", table_name="check_windows")
    op.drop_table("check_windows")

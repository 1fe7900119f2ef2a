"""The alert outbox: alerts waiting for (or recently through) each channel.

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-15

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("fold_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("audience", sa.String(20), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False, server_default=sa.text("1")),
        _when("first_at", nullable=False),
        _when("last_at", nullable=False),
        _when("fold_until", nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _when("next_attempt_at", nullable=False),
        _when("lease_until"),
        _when("sent_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_outbox"),
    )
    op.create_index("ix_alert_outbox_due", "alert_outbox", ["status", "channel", "next_attempt_at"])
    op.create_index("ix_alert_outbox_fold", "alert_outbox", ["fold_key", "channel"])


def downgrade() -> None:
    op.drop_index("ix_alert_outbox_fold", table_name="alert_outbox")
    op.drop_index("ix_alert_outbox_due", table_name="alert_outbox")
    op.drop_table("alert_outbox")

"""Device lifecycle: revoked tokens, remembered alerts for stale, non-compliant and unknown devices.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns: SQLite adds them in place, no table copy needed.
    op.add_column("devices", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("devices", sa.Column("revoked_by", sa.String(200), nullable=True))
    op.create_table(
        "device_alerts",
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "subject", name="pk_device_alerts"),
    )


def downgrade() -> None:
    op.drop_table("device_alerts")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("revoked_by")
        batch.drop_column("revoked_at")

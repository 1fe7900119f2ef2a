"""The devices the DfE cyber security standard asks a school to show (issue 19): every report
kept (bounded by retention) for a device's history, and each device's allocation (to whom,
asset tag, location) and where its record came from (the agent, or the school's MDM export).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "device_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "device_id",
            sa.String(64),
            sa.ForeignKey("devices.device_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("generated_at", when, nullable=False),
        sa.Column("received_at", when, nullable=False),
        sa.Column("compliant", sa.Boolean, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("source", sa.String(16), nullable=False, server_default="agent"),
    )
    op.create_index(
        "ix_device_reports_device_generated", "device_reports", ["device_id", "generated_at"]
    )
    op.add_column("devices", sa.Column("allocated_to", sa.String(200), nullable=True))
    op.add_column("devices", sa.Column("asset_tag", sa.String(100), nullable=True))
    op.add_column("devices", sa.Column("location", sa.String(200), nullable=True))
    op.add_column(
        "devices", sa.Column("source", sa.String(16), nullable=False, server_default="agent")
    )


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        for name in ("source", "location", "asset_tag", "allocated_to"):
            batch.drop_column(name)
    op.drop_index("ix_device_reports_device_generated", "device_reports")
    op.drop_table("device_reports")

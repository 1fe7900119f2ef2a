"""Enrolled devices: their hashed tokens and their last reports.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _when("enrolled_at", nullable=False),
        sa.Column("hostname", sa.String(253), nullable=False),
        sa.Column("os_name", sa.String(16), nullable=True),
        sa.Column("os_version", sa.String(64), nullable=True),
        sa.Column("serial", sa.String(128), nullable=True),
        sa.Column("agent_version", sa.String(32), nullable=True),
        sa.Column("last_user", sa.String(200), nullable=True),
        sa.Column("last_ips", sa.JSON(), nullable=False),
        sa.Column("last_macs", sa.JSON(), nullable=False),
        _when("last_report_at"),
        _when("last_generated_at"),
        sa.Column("compliant", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_devices"),
    )


def downgrade() -> None:
    op.drop_table("devices")

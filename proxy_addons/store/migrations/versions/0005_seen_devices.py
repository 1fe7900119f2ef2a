"""Devices seen on the school network (ARP and DHCP), enrolled or not.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seen_devices",
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("hostname", sa.String(253), nullable=True),
        sa.Column("vendor_hint", sa.String(100), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mac", name="pk_seen_devices"),
    )


def downgrade() -> None:
    op.drop_table("seen_devices")

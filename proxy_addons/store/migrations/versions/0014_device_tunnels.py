"""Per-device WireGuard tunnels (docs/offsite.md): each enrolled device's public key and the
tunnel address WireGuard binds to it, and what the device's agent last said about its tunnel.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_tunnels",
        sa.Column(
            "device_id",
            sa.String(64),
            sa.ForeignKey("devices.device_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("public_key", sa.String(44), nullable=False, unique=True),
        sa.Column("address", sa.String(64), nullable=False, unique=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(200), nullable=False),
        sa.Column("last_handshake_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("devices", sa.Column("last_tunnel", sa.JSON(), nullable=True))
    op.add_column(
        "devices", sa.Column("tunnel_down_since", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("tunnel_down_since")
        batch.drop_column("last_tunnel")
    op.drop_table("device_tunnels")

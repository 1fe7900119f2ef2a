"""An incident says whether it is about a member of staff (the headteacher's alone), so one
recorded by hand is kept from the DSL's team as one opened from a staff-concern alert is;
incidents opened from such alerts before now are marked.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "incidents",
        sa.Column("about_staff", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE incidents SET about_staff = TRUE "
        "WHERE alert_id IN (SELECT id FROM alerts WHERE audience = 'staff')"
    )


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("about_staff")

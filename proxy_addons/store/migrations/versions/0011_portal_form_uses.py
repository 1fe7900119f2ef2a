"""Portal form tokens that have acted, so each acts once (issue 14).

Block pages no longer carry a form token (script on the blocked site's own origin could read
it); the portal shows a confirmation page on its own origin instead, and the token on that
page is spent by the one post it allows.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "portal_form_uses",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_portal_form_uses"),
    )
    op.create_index("ix_portal_form_uses_used_at", "portal_form_uses", ["used_at"])


def downgrade() -> None:
    op.drop_index("ix_portal_form_uses_used_at", table_name="portal_form_uses")
    op.drop_table("portal_form_uses")

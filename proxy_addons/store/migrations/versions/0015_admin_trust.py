"""Administration a school can trust (issue 18): filtering changes proposed, approved and
applied by two people, with their diff (`policy_changes`); accounts' last sign-in and
two-factor sign-in (TOTP secret, when it was turned on, recovery codes' hashes).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "policy_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("change", sa.JSON, nullable=False),
        sa.Column("diff", sa.Text, nullable=False),
        sa.Column("base_hash", sa.String(64), nullable=True),
        sa.Column("proposed_by", sa.String(200), nullable=False),
        sa.Column("proposed_at", when, nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", when, nullable=True),
        sa.Column("decision_note", sa.Text, nullable=True),
        sa.Column("applied_at", when, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("outside_process", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_policy_changes_state", "policy_changes", ["state"])
    op.add_column("accounts", sa.Column("last_sign_in_at", when, nullable=True))
    op.add_column("accounts", sa.Column("totp_secret", sa.String(64), nullable=True))
    op.add_column("accounts", sa.Column("totp_enabled_at", when, nullable=True))
    op.add_column("accounts", sa.Column("recovery_codes", sa.JSON, nullable=True))
    op.add_column("accounts", sa.Column("disabled_at", when, nullable=True))
    op.add_column("accounts", sa.Column("disabled_by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        for name in (
            "disabled_by",
            "disabled_at",
            "recovery_codes",
            "totp_enabled_at",
            "totp_secret",
            "last_sign_in_at",
        ):
            batch.drop_column(name)
    op.drop_index("ix_policy_changes_state", "policy_changes")
    op.drop_table("policy_changes")

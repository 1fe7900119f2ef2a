"""Termly effectiveness checks: runs, per-case results and the actions taken afterwards.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "check_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", when, nullable=False),
        sa.Column("finished_at", when, nullable=False),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("device_type", sa.String(40), nullable=True),
        sa.Column("os", sa.String(100), nullable=True),
        sa.Column("browser", sa.String(200), nullable=True),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("term", sa.String(100), nullable=True),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_check_runs"),
    )
    op.create_index("ix_check_runs_started_at", "check_runs", ["started_at"])
    op.create_index("ix_check_runs_term", "check_runs", ["term"])
    op.create_table(
        "check_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("expected", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("block_reference", sa.String(32), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["check_runs.id"], name="fk_check_results_run_id_check_runs"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_check_results"),
    )
    op.create_index("ix_check_results_run_id", "check_results", ["run_id"])
    op.create_table(
        "check_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=True),
        sa.Column("at", when, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["check_runs.id"], name="fk_check_actions_run_id_check_runs"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_check_actions"),
    )
    op.create_index("ix_check_actions_run_id", "check_actions", ["run_id"])
    op.create_table(
        "check_reminders",
        sa.Column("term", sa.String(100), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("sent_at", when, nullable=False),
        sa.PrimaryKeyConstraint("term", name="pk_check_reminders"),
    )


def downgrade() -> None:
    op.drop_table("check_reminders")
    op.drop_index("ix_check_actions_run_id", table_name="check_actions")
    op.drop_table("check_actions")
    op.drop_index("ix_check_results_run_id", table_name="check_results")
    op.drop_table("check_results")
    op.drop_index("ix_check_runs_term", table_name="check_runs")
    op.drop_index("ix_check_runs_started_at", table_name="check_runs")
    op.drop_table("check_runs")

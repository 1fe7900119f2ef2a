"""The DSL's side (issue 16): alerts kept with their outcome, the incident log and its
follow-up actions, the annual review, daily totals without personal data for the governors'
report, reports with a state, and check visits marked in the access log.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Written out in full rather than built from schema.py (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REPORT_COLUMNS = (
    ("audience", sa.String(20)),
    ("reason", sa.String(40)),
    ("device_id", sa.String(64)),
    ("alert_id", sa.Integer()),
    ("handled_by", sa.String(200)),
    ("handled_at", sa.DateTime(timezone=True)),
    ("outcome", sa.String(40)),
    ("notes", sa.Text()),
)


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    # Nullable columns or columns with a default: SQLite adds them in place.
    for name, kind in REPORT_COLUMNS:
        op.add_column("reports", sa.Column(name, kind, nullable=True))
    op.add_column(
        "reports", sa.Column("state", sa.String(12), nullable=False, server_default="new")
    )
    op.create_index("ix_reports_at", "reports", ["at"])
    op.add_column(
        "access_log",
        sa.Column("check_visit", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("raised_at", when, nullable=False),
        sa.Column("last_seen_at", when, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("audience", sa.String(20), nullable=False),
        sa.Column("category", sa.String(100), nullable=True),
        sa.Column("username", sa.String(200), nullable=True),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("fold_key", sa.String(64), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("acknowledged_by", sa.String(200), nullable=True),
        sa.Column("acknowledged_at", when, nullable=True),
        sa.Column("closed_by", sa.String(200), nullable=True),
        sa.Column("closed_at", when, nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("escalated_at", when, nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    for column in ("raised_at", "state", "fold_key", "username"):
        op.create_index(f"ix_alerts_{column}", "alerts", [column])
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("occurred_at", when, nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("action_taken", sa.Text(), nullable=False),
        sa.Column("category", sa.String(100), nullable=True),
        sa.Column("people", sa.JSON(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("report_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", when, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("closed_by", sa.String(200), nullable=True),
        sa.Column("closed_at", when, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
    )
    op.create_index("ix_incidents_occurred_at", "incidents", ["occurred_at"])
    op.create_table(
        "incident_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("due", sa.Date(), nullable=True),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", when, nullable=False),
        sa.Column("done_by", sa.String(200), nullable=True),
        sa.Column("done_at", when, nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_incident_actions_incident_id_incidents",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_incident_actions"),
    )
    op.create_index("ix_incident_actions_incident_id", "incident_actions", ["incident_id"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("participants", sa.JSON(), nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.Column("actions", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", when, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
    )
    op.create_table(
        "daily_totals",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("check_visit", sa.Boolean(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "profile",
            "category",
            "decision",
            "reason",
            "check_visit",
            name="pk_daily_totals",
        ),
    )


def downgrade() -> None:
    op.drop_table("daily_totals")
    op.drop_table("reviews")
    op.drop_index("ix_incident_actions_incident_id", table_name="incident_actions")
    op.drop_table("incident_actions")
    op.drop_index("ix_incidents_occurred_at", table_name="incidents")
    op.drop_table("incidents")
    for column in ("raised_at", "state", "fold_key", "username"):
        op.drop_index(f"ix_alerts_{column}", table_name="alerts")
    op.drop_table("alerts")
    with op.batch_alter_table("access_log") as batch:
        batch.drop_column("check_visit")
    op.drop_index("ix_reports_at", table_name="reports")
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("state")
        for name, _ in reversed(REPORT_COLUMNS):
            batch.drop_column(name)

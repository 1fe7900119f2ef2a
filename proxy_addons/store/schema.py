"""The durable store's tables, as SQLAlchemy Core objects shared by the code and the migrations.

This module describes the schema the code expects; the Alembic revisions under
`migrations/versions/` are what actually create it, and a test checks that the
two agree. Change a table here only together with a new revision.

Over 400 lines: one table after another, with a comment each; split, the migrations' test
would compare against a metadata assembled from several modules, and nothing would be clearer.

Every time is a timezone-aware UTC `datetime` on both databases: SQLite has no
time zone type, so `UTCDateTime` stores UTC and hands back aware values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

# Stable constraint names, so later revisions can alter them on both databases
# (SQLite needs names for Alembic's batch mode).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first audit record, and the head of an empty log."""


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; naive datetimes are refused.

    A naive value is ambiguous (server local time? UTC?), and a wrong guess
    would silently shift unblock windows and audit times, so it is an error.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware times")
        value = value.astimezone(UTC)
        # SQLite keeps the text form, which must compare (and sort) as UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def _when(name: str, *, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


unblocks = sa.Table(
    "unblocks",
    metadata,
    sa.Column("id", sa.String(20), primary_key=True),  # e.g. "UB-7K3Q9M"
    sa.Column("scope", sa.String(10), nullable=False),  # url | prefix | domain
    sa.Column("target", sa.Text, nullable=False),  # canonical form
    sa.Column("audience_kind", sa.String(10), nullable=False),  # user | users | profile | device
    sa.Column("audience", sa.JSON, nullable=False),  # list of str
    _when("starts_at", nullable=False),
    _when("ends_at", nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    _when("requested_at", nullable=False),
    sa.Column("requested_from", sa.String(64), nullable=True),
    # pending | awaiting_it | active | rejected | revoked | expired
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("decided_by", sa.String(200), nullable=True),
    _when("decided_at"),
    sa.Column("decision_comment", sa.Text, nullable=True),
    sa.Column("it_confirmed_by", sa.String(200), nullable=True),
    _when("it_confirmed_at"),
    sa.Column("ended_by", sa.String(200), nullable=True),
    _when("ended_at"),
    # Bumped by every change; with `WHERE id=:id AND status=:expected` it makes
    # two deciders acting at once apply the decision once.
    sa.Column("version", sa.Integer, nullable=False, default=1, server_default=sa.text("1")),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    # Given by audit.append from audit_head, not by a database sequence: a
    # PostgreSQL sequence skips numbers on rollback, and a gap must mean deletion.
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    _when("at", nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("address", sa.String(64), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_log_at", "at"),  # records() and export() select by time
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    # One row (id=1), locked by every append so appends from several processes
    # or gateways queue up instead of forking the chain.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _when("at", nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # report | access_request
    sa.Column("reference", sa.String(32), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("username", sa.String(200), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("profile", sa.String(100), nullable=False),
    # What became of it (issue 16, 0012): every report reaches a person and an outcome.
    sa.Column("audience", sa.String(20), nullable=True),  # safeguarding | technical
    sa.Column("reason", sa.String(40), nullable=True),  # what the reporter chose
    sa.Column("device_id", sa.String(64), nullable=True),
    sa.Column("state", sa.String(12), nullable=False, server_default="new"),  # new|ack|closed
    sa.Column("alert_id", sa.Integer, nullable=True),  # the alert it raised
    sa.Column("handled_by", sa.String(200), nullable=True),
    _when("handled_at"),
    sa.Column("outcome", sa.String(40), nullable=True),
    sa.Column("notes", sa.Text, nullable=True),
    sa.Index("ix_reports_at", "at"),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("username", sa.String(200), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("roles", sa.JSON, nullable=False),  # list: staff, dsl, deputy, it
    sa.Column("password_hash", sa.String(200), nullable=False),
    _when("created_at", nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    # 0015: the access review's last sign-in; two-factor sign-in (the TOTP secret, when it
    # was confirmed, the recovery codes' hashes); who disabled the account and when.
    _when("last_sign_in_at"),
    sa.Column("totp_secret", sa.String(64), nullable=True),  # base32
    _when("totp_enabled_at"),  # None: not (yet) confirmed
    sa.Column("recovery_codes", sa.JSON, nullable=True),  # list of sha256 hex, used ones gone
    _when("disabled_at"),
    sa.Column("disabled_by", sa.String(200), nullable=True),
)

policy_changes = sa.Table(
    "policy_changes",
    metadata,
    # Filtering changes (workflow/policy_changes.py): proposed with a reason, approved by a
    # second person, applied through the validated reload, each with its diff; edits made
    # outside the process are recorded too (outside_process); 0015.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "state", sa.String(20), nullable=False
    ),  # proposed|applied|rejected|withdrawn|failed|edited
    sa.Column("kind", sa.String(40), nullable=False),  # e.g. list_add, list_remove, file_edit
    sa.Column("summary", sa.Text, nullable=False),  # one line for lists and alerts
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("change", sa.JSON, nullable=False),  # the operation, to apply it
    sa.Column("diff", sa.Text, nullable=False),  # unified diff of the policy files
    sa.Column("base_hash", sa.String(64), nullable=True),  # the files' hash it was made against
    sa.Column("proposed_by", sa.String(200), nullable=False),
    _when("proposed_at", nullable=False),
    sa.Column("decided_by", sa.String(200), nullable=True),
    _when("decided_at"),
    sa.Column("decision_note", sa.Text, nullable=True),
    _when("applied_at"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("outside_process", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_policy_changes_state", "state"),
)

alert_outbox = sa.Table(
    "alert_outbox",
    metadata,
    # One row per alert per channel, so a channel that is down is retried on its own and the
    # others are not sent twice. Written before anything is sent: a restart loses nothing.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(20), nullable=False),  # email | webhook | teams | ...
    sa.Column("fold_key", sa.String(64), nullable=False),  # sha256 of the event's fold key
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("severity", sa.Integer, nullable=False),  # 1-5
    sa.Column("audience", sa.String(20), nullable=False),  # safeguarding | technical
    sa.Column("event", sa.JSON, nullable=False),  # what the message says; emptied once sent
    sa.Column("recipients", sa.JSON, nullable=False),  # email addresses (email only)
    # Repeats within the fold window add to `occurrences` instead of making a new alert.
    sa.Column("occurrences", sa.Integer, nullable=False, default=1, server_default=sa.text("1")),
    _when("first_at", nullable=False),
    _when("last_at", nullable=False),
    _when("fold_until", nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # pending | sent
    sa.Column("attempts", sa.Integer, nullable=False, default=0, server_default=sa.text("0")),
    _when("next_attempt_at", nullable=False),
    _when("lease_until"),  # a worker is sending it until then (several gateways may share)
    _when("sent_at"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_alert_outbox_due", "status", "channel", "next_attempt_at"),
    sa.Index("ix_alert_outbox_fold", "fold_key", "channel"),
)

access_log = sa.Table(
    "access_log",
    metadata,
    # One row per filtering decision (see proxy_addons/record/access_records.py); purged
    # after the policy's monitoring.retention_days.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    _when("at", nullable=False),
    sa.Column("username", sa.String(200), nullable=True),  # lower case
    sa.Column("profile", sa.String(100), nullable=False),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("device_name", sa.String(200), nullable=True),
    sa.Column("device_id", sa.String(64), nullable=True),
    sa.Column("method", sa.String(16), nullable=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("url", sa.Text, nullable=True),  # query string dropped, except a search term
    sa.Column("search_term", sa.String(200), nullable=True),
    sa.Column("decision", sa.String(8), nullable=False),  # allow | block
    sa.Column("reason", sa.String(20), nullable=False),
    sa.Column("category", sa.String(100), nullable=True),
    sa.Column("rule", sa.Text, nullable=True),
    sa.Column("list_source", sa.Text, nullable=True),
    sa.Column("entry", sa.Text, nullable=True),
    sa.Column("unblock_id", sa.String(20), nullable=True),
    sa.Column("reference", sa.String(32), nullable=True),  # shown on the block page
    sa.Column("stage", sa.String(10), nullable=False),  # connect | tls | request
    # What was enforced on an allowed request (safe search rewritten or steered); 0008.
    sa.Column("enforced", sa.String(100), nullable=True),
    # A termly check's visit (a canary fetched on purpose), never a real block; 0012.
    sa.Column("check_visit", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_access_log_at", "at"),
    sa.Index("ix_access_log_username_at", "username", "at"),
    sa.Index("ix_access_log_ip_at", "ip", "at"),
)

devices = sa.Table(
    "devices",
    metadata,
    # One row per enrolled device: its token (hashed) and its last accepted report.
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),  # sha256 hex of the token
    _when("enrolled_at", nullable=False),
    sa.Column("hostname", sa.String(253), nullable=False),
    sa.Column("os_name", sa.String(16), nullable=True),
    sa.Column("os_version", sa.String(64), nullable=True),
    sa.Column("serial", sa.String(128), nullable=True),
    sa.Column("agent_version", sa.String(32), nullable=True),
    sa.Column("last_user", sa.String(200), nullable=True),
    # The addresses its last report speaks for: only the one it came from, if it listed it.
    sa.Column("last_ips", sa.JSON, nullable=False),  # list of str
    sa.Column("last_macs", sa.JSON, nullable=False),  # list of str
    _when("last_report_at"),  # when the gateway accepted it
    _when("last_generated_at"),  # when the device made it: later reports must be newer
    sa.Column("compliant", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("results", sa.JSON, nullable=False),  # list of check results
    # Revoked (schoolgate devices revoke): its token is refused until it enrols again.
    _when("revoked_at"),
    sa.Column("revoked_by", sa.String(200), nullable=True),
    # Where the last report came from (as the gateway saw it, or its trusted relay said), and
    # the addresses it listed that were not believed for that reason; 0010.
    sa.Column("report_address", sa.String(64), nullable=True),
    sa.Column("ignored_ips", sa.JSON, nullable=True),  # list of str
    # What its agent last said about its off-site tunnel (agent/report.py TunnelState), and
    # since when that tunnel has been down off site (None: up, or not needed); 0014.
    sa.Column("last_tunnel", sa.JSON, nullable=True),
    _when("tunnel_down_since"),
    # 0016: the asset log (whom it is allocated to, its asset tag, where it is) and where the
    # record came from: "agent" (enrolled) or "mdm" (imported from the school's MDM export).
    sa.Column("allocated_to", sa.String(200), nullable=True),
    sa.Column("asset_tag", sa.String(100), nullable=True),
    sa.Column("location", sa.String(200), nullable=True),
    sa.Column("source", sa.String(16), nullable=False, server_default="agent"),
)

device_reports = sa.Table(
    "device_reports",
    metadata,
    # Every accepted report (or MDM import), kept for the policy's retention, so a device's
    # page shows when it became non-compliant and for how long; 0016.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "device_id",
        sa.String(64),
        sa.ForeignKey("devices.device_id", ondelete="CASCADE"),
        nullable=False,
    ),
    _when("generated_at", nullable=False),
    _when("received_at", nullable=False),
    sa.Column("compliant", sa.Boolean, nullable=False),
    sa.Column("results", sa.JSON, nullable=False),  # as devices.results
    sa.Column("source", sa.String(16), nullable=False, server_default="agent"),
    sa.Index("ix_device_reports_device_generated", "device_id", "generated_at"),
)

device_tunnels = sa.Table(
    "device_tunnels",
    metadata,
    # A device's WireGuard key and the tunnel address bound to it (devices/tunnels.py): traffic
    # from that address can only come from the holder of the key; 0014.
    sa.Column(
        "device_id",
        sa.String(64),
        sa.ForeignKey("devices.device_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("public_key", sa.String(44), nullable=False, unique=True),  # base64, 32 bytes
    sa.Column("address", sa.String(64), nullable=False, unique=True),  # in devices.tunnel.pool
    _when("issued_at", nullable=False),
    sa.Column("issued_by", sa.String(200), nullable=False),  # "device" or an account
    _when("last_handshake_at"),  # as the gateway's interface last saw it (ops/wireguard)
)

seen_devices = sa.Table(
    "seen_devices",
    metadata,
    # Every MAC the gateway has seen on the network (ARP, DHCP); see devices/netwatch.py.
    sa.Column("mac", sa.String(17), primary_key=True),  # lower case, colon-separated
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("hostname", sa.String(253), nullable=True),  # DHCP option 12, when sent
    sa.Column("vendor_hint", sa.String(100), nullable=True),
    _when("first_seen", nullable=False),
    _when("last_seen", nullable=False),
)

device_alerts = sa.Table(
    "device_alerts",
    metadata,
    # Which device alerts were raised (stale, non-compliant, unknown MAC), so a restart or a
    # second gateway doesn't raise them again; see proxy_addons/devices/alert_state.py.
    sa.Column("kind", sa.String(40), primary_key=True),
    sa.Column("subject", sa.String(64), primary_key=True),  # device id or MAC
    sa.Column("state", sa.Text, nullable=False),  # what was raised (e.g. the last report time)
    _when("raised_at", nullable=False),
)

# -- termly effectiveness checks (proxy_addons/checks/records.py) --
check_runs = sa.Table(
    "check_runs",
    metadata,
    # One row per run of a check suite: from the gateway, an agent or a browser.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _when("started_at", nullable=False),
    _when("finished_at", nullable=False),
    sa.Column("started_by", sa.String(200), nullable=False),  # the named member of staff
    sa.Column("source", sa.String(10), nullable=False),  # gateway | agent | browser
    sa.Column("device_id", sa.String(64), nullable=True),
    sa.Column("device_type", sa.String(40), nullable=True),  # gateway, laptop, ipad, ...
    sa.Column("os", sa.String(100), nullable=True),
    sa.Column("browser", sa.String(200), nullable=True),
    sa.Column("profile", sa.String(100), nullable=False),
    sa.Column("term", sa.String(100), nullable=True),  # the policy's term it fell in
    sa.Column("suite", sa.String(200), nullable=False),
    sa.Column("passed", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("errors", sa.Integer, nullable=False),
    sa.Index("ix_check_runs_started_at", "started_at"),
    sa.Index("ix_check_runs_term", "term"),
)

check_results = sa.Table(
    "check_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("check_runs.id"), nullable=False),
    sa.Column("case_id", sa.String(64), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("category", sa.String(100), nullable=False),
    sa.Column("expected", sa.String(20), nullable=False),  # blocked | allowed | safe_search
    sa.Column("outcome", sa.String(10), nullable=False),  # pass | fail | error
    sa.Column("status", sa.Integer, nullable=True),  # HTTP status seen
    sa.Column("block_reference", sa.String(32), nullable=True),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Index("ix_check_results_run_id", "run_id"),
)

check_actions = sa.Table(
    "check_actions",
    metadata,
    # What the DSL or IT provider did about a run (or one of its cases) afterwards.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("check_runs.id"), nullable=False),
    sa.Column("case_id", sa.String(64), nullable=True),  # none: the run as a whole
    _when("at", nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Index("ix_check_actions_run_id", "run_id"),
)

check_reminders = sa.Table(
    "check_reminders",
    metadata,
    # The last day a term's "check due" reminder went out: at most one a day, across gateways.
    sa.Column("term", sa.String(100), primary_key=True),
    sa.Column("last_day", sa.Date, nullable=False),
    _when("sent_at", nullable=False),
)

check_windows = sa.Table(
    "check_windows",
    metadata,
    # An agent's check run in progress: its test URLs, from its address, raise no monitoring
    # alerts until the window closes or expires (checks/announced.py).
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("urls", sa.Text, nullable=False),  # JSON list of canonical URLs
    _when("opened_at", nullable=False),
    _when("expires_at", nullable=False),
    _when("closed_at", nullable=True),
    sa.Index("ix_check_windows_expires_at", "expires_at"),
)


web_sessions = sa.Table(
    "web_sessions",
    metadata,
    # One row per signed-in admin web app session (proxy_addons/workflow/sessions.py): the cookie
    # holds the id, the store its hash. Signing out deletes the row, so a copied cookie
    # stops working; a new password deletes all the account's rows; 0010.
    sa.Column("id_hash", sa.String(64), primary_key=True),  # sha256 hex of the session id
    sa.Column("username", sa.String(200), nullable=False),
    _when("created_at", nullable=False),
    _when("expires_at", nullable=False),
    sa.Index("ix_web_sessions_username", "username"),
)


portal_form_uses = sa.Table(
    "portal_form_uses",
    metadata,
    # One row per portal form token that has acted (gateway/portal_forms.py): a token is
    # good for one report or request, across every worker; rows go once the token has
    # expired anyway; 0011.
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 hex of the token
    _when("used_at", nullable=False),
    sa.Index("ix_portal_form_uses_used_at", "used_at"),
)


alerts = sa.Table(
    "alerts",
    metadata,
    # Every alert raised, kept with what became of it (issue 16, 0012); the outbox only
    # delivers. Repeats within the fold window add to `occurrences` of a new alert.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _when("raised_at", nullable=False),
    _when("last_seen_at", nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("severity", sa.Integer, nullable=False),  # 1-5
    sa.Column("audience", sa.String(20), nullable=False),  # safeguarding | technical | staff
    sa.Column("category", sa.String(100), nullable=True),
    sa.Column("username", sa.String(200), nullable=True),  # the subject (safeguarding only)
    sa.Column("device_id", sa.String(64), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("event", sa.JSON, nullable=False),  # the Event as raised (alerts/events.py)
    sa.Column("fold_key", sa.String(64), nullable=False),  # sha256 of the event's fold key
    sa.Column("occurrences", sa.Integer, nullable=False, server_default=sa.text("1")),
    sa.Column("recipients", sa.JSON, nullable=False),  # who it was sent to (user names)
    sa.Column("state", sa.String(12), nullable=False),  # new | acknowledged | closed
    sa.Column("outcome", sa.String(20), nullable=True),
    sa.Column("notes", sa.Text, nullable=True),
    sa.Column("acknowledged_by", sa.String(200), nullable=True),
    _when("acknowledged_at"),
    sa.Column("closed_by", sa.String(200), nullable=True),
    _when("closed_at"),
    sa.Column("escalation_level", sa.Integer, nullable=False, server_default=sa.text("0")),
    _when("escalated_at"),
    sa.Column("incident_id", sa.Integer, nullable=True),
    sa.Index("ix_alerts_raised_at", "raised_at"),
    sa.Index("ix_alerts_state", "state"),
    sa.Index("ix_alerts_fold_key", "fold_key"),
    sa.Index("ix_alerts_username", "username"),
)

incidents = sa.Table(
    "incidents",
    metadata,
    # The online-safety incident log both schools' policies keep: date, where, what
    # happened, the action taken and who recorded it; opened from an alert or by hand.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _when("occurred_at", nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("action_taken", sa.Text, nullable=False),
    sa.Column("category", sa.String(100), nullable=True),
    sa.Column("people", sa.JSON, nullable=False),  # user names involved (list)
    # About a member of staff: the headteacher's alone (from such an alert, or said so); 0013.
    sa.Column("about_staff", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("alert_id", sa.Integer, nullable=True),
    sa.Column("report_id", sa.Integer, nullable=True),
    sa.Column("recorded_by", sa.String(200), nullable=False),
    _when("recorded_at", nullable=False),
    sa.Column("state", sa.String(12), nullable=False),  # open | closed
    sa.Column("closed_by", sa.String(200), nullable=True),
    _when("closed_at"),
    sa.Index("ix_incidents_occurred_at", "occurred_at"),
)

incident_actions = sa.Table(
    "incident_actions",
    metadata,
    # Follow-up actions on an incident: what, by whom, by when, and when it was done.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("due", sa.Date, nullable=True),
    sa.Column("recorded_by", sa.String(200), nullable=False),
    _when("recorded_at", nullable=False),
    sa.Column("done_by", sa.String(200), nullable=True),
    _when("done_at"),
    sa.Index("ix_incident_actions_incident_id", "incident_id"),
)

reviews = sa.Table(
    "reviews",
    metadata,
    # The annual filtering-and-monitoring review (DfE standard): who took part, what was
    # found, what will be done; the governors' report lists them.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("held_on", sa.Date, nullable=False),
    sa.Column("participants", sa.JSON, nullable=False),  # [{"role": ..., "name": ...}]
    sa.Column("findings", sa.Text, nullable=False),
    sa.Column("actions", sa.Text, nullable=False),
    sa.Column("recorded_by", sa.String(200), nullable=False),
    _when("recorded_at", nullable=False),
)

daily_totals = sa.Table(
    "daily_totals",
    metadata,
    # Counts with no personal data, kept for years: the governors' report reads these, not
    # the access log, whose retention is shorter than a school's memory. One row per local
    # day, profile, category, decision and reason; check visits are counted apart.
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("profile", sa.String(100), primary_key=True),
    sa.Column("category", sa.String(100), primary_key=True),  # "" when none
    sa.Column("decision", sa.String(8), primary_key=True),  # allow | block
    sa.Column("reason", sa.String(20), primary_key=True),
    sa.Column("check_visit", sa.Boolean, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

__all__ = [
    "GENESIS_HASH",
    "UTCDateTime",
    "access_log",
    "accounts",
    "alert_outbox",
    "alerts",
    "audit_head",
    "audit_log",
    "check_actions",
    "check_reminders",
    "check_results",
    "check_runs",
    "check_windows",
    "daily_totals",
    "device_alerts",
    "devices",
    "incident_actions",
    "incidents",
    "metadata",
    "portal_form_uses",
    "reports",
    "reviews",
    "seen_devices",
    "unblocks",
    "web_sessions",
]

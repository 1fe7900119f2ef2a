"""The alerts console: the list with its filters and live feed, one alert's page with the
pupil's timeline, and the DSL's actions on it (acknowledge, close with an outcome, reopen).

Everyone sees only the alerts of the audiences they hold (safeguarding, technical, staff
concerns for the headteacher); an alert of another audience answers 404, as if it did not
exist. The list works without JavaScript; alert_feed.js adds new alerts as they come, from
`/alerts/feed`, which answers under the same rules. Opening an alert that shows a person's
timeline is a look at that person, and is audited. The rules of each step live in
workflow/alert_cases.py; the wording in alert_views.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.routing import BuildError

from proxy_addons.alerts.alert_rows import CLOSED, NEW, OUTCOMES
from proxy_addons.alerts.routing import STAFF
from proxy_addons.web.alert_views import (
    announcement,
    event_facts,
    history_lines,
    may_close,
    read_filters,
    recipients_text,
    row_view,
)
from proxy_addons.web.context import actor, page, policy, problem, services
from proxy_addons.web.nav import needs, powers
from proxy_addons.web.wording import when_text
from proxy_addons.workflow import alert_cases, alert_queries
from proxy_addons.workflow.alert_queries import (
    AUDIENCE_TEXT,
    SEVERITY_TEXT,
    STATE_CHOICES,
    STATE_TEXT,
    kind_text,
)

SCRIPT = Path(__file__).resolve().parents[1] / "pages" / "static" / "alert_feed.js"
FEED_EVERY_MS = 4000
# The feed's `since` is its clock less this: a change stamped by a gateway whose clock is a
# little behind still reaches the list (a row sent twice is simply put in place again).
SINCE_MARGIN = timedelta(seconds=30)
NOT_FOUND = "There is no such alert."

bp = Blueprint("alert_pages", __name__)


def readable() -> frozenset[str]:
    """The audiences the signed-in person holds, and the addresses alerts were sent to them
    at (their account's and the policy's contact): an alert emailed to someone links here,
    so it opens for them (workflow/alert_queries.visible)."""
    mine = powers()
    account = g.get("account")
    emails = {policy().notifications.contacts.get(mine.user, "")}
    emails.add(account.email if account is not None and account.email else "")
    return mine.audiences() | {f"email:{e.lower()}" for e in emails if e}


@bp.get("/alerts")
@needs("console")
def alert_list() -> ResponseReturnValue:
    audiences = readable()
    form = read_filters(request.args, policy().timezone)
    before = request.args.get("before", type=int)
    store = services().store
    rows = alert_queries.listed(store, audiences, form.filters, before=before)
    categories, kinds = alert_queries.choices(store, audiences)
    older = None
    if len(rows) == alert_queries.PAGE_SIZE:
        older = url_for(".alert_list", before=rows[-1].id, **_args(form.args()))
    return page(
        "web_alerts.html",
        rows=[row_view(r, policy()) for r in rows],
        form=form,
        categories=categories,
        kinds=[(k, kind_text(k)) for k in kinds],
        states=[(k, label) for k, (label, _) in STATE_CHOICES.items()],
        severities=SEVERITY_TEXT,
        # The live feed only on the newest page: it adds alerts newer than the first row.
        feed=None if before else url_for(".alert_feed", **_args(form.args())),
        last=rows[0].id if rows else _latest(audiences),
        since=(services().workflow.clock() - SINCE_MARGIN).isoformat(),
        every=FEED_EVERY_MS,
        older=older,
        personal=bool(audiences & alert_queries.PERSONAL),
    )


def _args(values: dict[str, str]) -> dict[str, Any]:
    """Query arguments for url_for (typed loosely, as url_for takes them)."""
    return dict(values)


def _latest(audiences: frozenset[str]) -> int:
    """The newest alert id the reader may see under no filter (0 if none): the feed starts
    after it, so an empty filtered list still only shows what arrives from now on."""
    rows = alert_queries.listed(
        services().store, audiences, alert_queries.Filters(state="all"), limit=1
    )
    return int(rows[0].id) if rows else 0


@bp.get("/alerts/feed")
@needs("console")
def alert_feed() -> ResponseReturnValue:
    """Alerts newer than `after` matching the list's filters, newest first, each as the
    list's row, with a sentence for screen readers; and the rows up to `after` that changed
    since `since` (the last answer's time), to put in place of the old ones."""
    after = request.args.get("after", default=0, type=int)
    since = _since(request.args.get("since", ""))
    form = read_filters(request.args, policy().timezone)
    store, audiences, now = services().store, readable(), services().workflow.clock()
    rows = alert_queries.listed(store, audiences, form.filters, after=after)
    moved = alert_queries.changed(store, audiences, form.filters, since=since, upto=after)
    return jsonify(
        rows=[_feed_row(r) for r in rows],
        changed=[_feed_row(r) for r in moved],
        last=max([after, *(r.id for r in rows)]),
        since=(now - SINCE_MARGIN).isoformat(),
        announce=announcement(rows),
    )


def _feed_row(row: Any) -> dict[str, Any]:
    return {"id": row.id, "html": render_template("web_alert_row.html", a=row_view(row, policy()))}


def _since(text: str) -> datetime:
    """The feed's `since`, as its last answer gave it; without one (or unreadable), now."""
    now = services().workflow.clock()
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        return now - SINCE_MARGIN
    return found if found.tzinfo is not None else now - SINCE_MARGIN


@bp.get("/alerts/alert_feed.js")
def alert_script() -> Response:
    response = Response(SCRIPT.read_bytes(), mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/alerts/<int:alert_id>")
@needs("console")
def alert_detail(alert_id: int) -> ResponseReturnValue:
    return _detail_page(alert_id)


def _detail_page(
    alert_id: int, status: int = 200, error: str | None = None, typed: dict[str, str] | None = None
) -> ResponseReturnValue:
    store = services().store
    row = alert_queries.one(store, readable(), alert_id)
    if row is None:
        return problem(NOT_FOUND, 404)
    timeline = alert_queries.timeline(store, row)
    if timeline is not None:
        alert_cases.record_look(
            store,
            actor(),
            alert_id,
            whom=timeline.subject.audit_key,
            start=timeline.start,
            end=timeline.end,
            now=services().workflow.clock(),
        )
    return page(
        "web_alert.html",
        status,
        a=row_view(row, policy()),
        row=row,
        facts=event_facts(row),
        illegal=row.kind == "illegal_tier",
        recipients=recipients_text(row.recipients),
        history=history_lines(row, alert_cases.history(store, alert_id), policy()),
        timeline=timeline,
        raised_at=row.raised_at,
        school_tz=policy().timezone,
        category_label=_category_label,
        outcomes=outcomes_for(row.audience),
        outcome_text=outcomes_for(row.audience).get(row.outcome or "", ""),
        notes_needed=alert_cases.NOTES_NEEDED,
        for_whom=AUDIENCE_TEXT.get(row.audience, row.audience),
        state_text=STATE_TEXT.get(row.state, row.state),
        may_acknowledge=row.state == NEW,
        may_close=may_close(row),
        may_reopen=row.state == CLOSED,
        incident_new=_incident_link("incidents.incident_new", alert=alert_id),
        incident=_incident_link("incidents.incident_detail", incident_id=row.incident_id)
        if row.incident_id
        else None,
        escalated_to=row.escalation_level,
        escalated_at=when_text(policy(), row.escalated_at) if row.escalated_at else "",
        error=error,
        typed={"outcome": "", "notes": "", "reason": "", **(typed or {})},
        max_notes=alert_cases.MAX_NOTES,
    )


def _category_label(name: str) -> str:
    """A category as the policy names it for people ("Self-harm", not "self_harm")."""
    found = policy().categories.get(name)
    return found.label if found is not None else name.replace("_", " ")


def _incident_link(endpoint: str, **values: Any) -> str | None:
    """The incident pages' address, once they exist (another part of the console) and the
    person keeps the incident log."""
    if endpoint not in current_app.view_functions or not powers().incidents:
        return None
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


def _acted(alert_id: int, done: str) -> ResponseReturnValue:
    flash(done, "ok")
    return redirect(url_for(".alert_detail", alert_id=alert_id), 303)


def outcomes_for(audience: str) -> dict[str, str]:
    """The outcomes in words: a concern about a member of staff is not about a pupil."""
    if audience == STAFF:
        return {**OUTCOMES, "spoke_to_pupil": "Spoke to the member of staff"}
    return OUTCOMES


def _visible(alert_id: int) -> bool:
    return alert_queries.one(services().store, readable(), alert_id) is not None


@bp.post("/alerts/<int:alert_id>/acknowledge")
@needs("console")
def alert_acknowledge(alert_id: int) -> ResponseReturnValue:
    if not _visible(alert_id):
        return problem(NOT_FOUND, 404)
    try:
        alert_cases.acknowledge(services().store, actor(), alert_id, services().workflow.clock())
    except alert_cases.AlertCaseError as exc:
        return _detail_page(alert_id, 409, str(exc))
    return _acted(alert_id, "Acknowledged: the alert is yours; close it with its outcome.")


@bp.post("/alerts/<int:alert_id>/close")
@needs("console")
def alert_close(alert_id: int) -> ResponseReturnValue:
    if not _visible(alert_id):
        return problem(NOT_FOUND, 404)
    typed = {
        "outcome": request.form.get("outcome", ""),
        "notes": request.form.get("notes", "")[: alert_cases.MAX_NOTES + 1],
    }
    try:
        alert_cases.close(
            services().store,
            actor(),
            alert_id,
            expected=request.form.get("state", ""),
            outcome=typed["outcome"],
            notes=typed["notes"],
            now=services().workflow.clock(),
        )
    except alert_cases.AlertMoved as exc:
        return _detail_page(alert_id, 409, str(exc), typed)
    except alert_cases.AlertCaseError as exc:
        return _detail_page(alert_id, 400, str(exc), typed)
    return _acted(alert_id, f"Closed: {OUTCOMES[typed['outcome']]}.")


@bp.post("/alerts/<int:alert_id>/reopen")
@needs("console")
def alert_reopen(alert_id: int) -> ResponseReturnValue:
    if not _visible(alert_id):
        return problem(NOT_FOUND, 404)
    reason = request.form.get("reason", "")
    try:
        alert_cases.reopen(
            services().store, actor(), alert_id, reason=reason, now=services().workflow.clock()
        )
    except alert_cases.AlertMoved as exc:
        return _detail_page(alert_id, 409, str(exc), {"reason": reason})
    except alert_cases.AlertCaseError as exc:
        return _detail_page(alert_id, 400, str(exc), {"reason": reason})
    return _acted(alert_id, "Reopened: the alert is open again, and acknowledged by you.")


__all__ = ["bp"]

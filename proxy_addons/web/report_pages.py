"""Reports from users in the console: each one seen, picked up and closed with an outcome.

Pupils and staff report from the gateway's portal: a block they think is a mistake, or a
page that got through (workflow/user_reports.py says who each goes to). Here the people of
that audience see them: the DSL and deputies the safeguarding ones, the IT provider the
technical ones, newest first, the open ones unless they ask for others. A report's page
says what was reported and when; who sent it only to the safeguarding team (the look is
audited, as every look at a person's data is), the profile and pseudonyms to the IT
provider, as technical alerts do. Acknowledging and closing (an outcome and notes) are
audited steps in workflow/user_reports.py.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.pages import blockpage
from proxy_addons.web.context import actor, policy, problem, services
from proxy_addons.web.nav import needs, powers
from proxy_addons.workflow import audit, user_reports
from proxy_addons.workflow.user_reports import (
    OUTCOMES,
    REASONS,
    STATE_TEXT,
    ReportError,
    audience_of,
)

bp = Blueprint("report_pages", __name__)

REFUSAL = "Reports from users are for the safeguarding team and the IT provider."
FILTERS = {
    "open": "Open",
    "new": "New",
    "acknowledged": "Being looked at",
    "closed": "Closed",
    "all": "All",
}
AUDIENCE_TEXT = {"safeguarding": "Safeguarding", "technical": "IT"}


def reason_text(row: Any) -> str:
    found = REASONS.get(str(row.reason or "mistake"))
    return found.label if found else str(row.reason)


def page_text(row: Any) -> str:
    """The reported page as a person reads it: host and path, no query (it may hold a
    search the reporter typed)."""
    url = str(row.url or "")
    if not url:
        return "(no address given)"
    host = url.split("://", 1)[-1].split("/", 1)[0]
    return blockpage.short_address(host, url) if "://" in url else url[:60]


def _visible(row: Any) -> bool:
    return user_reports.audience_of(row) in powers().audiences()


def _words() -> dict[str, Any]:
    return {
        "reason_text": reason_text,
        "page_text": page_text,
        "state_text": STATE_TEXT,
        "audience_text": AUDIENCE_TEXT,
        "audience_of": user_reports.audience_of,
        "outcomes": OUTCOMES,
    }


@bp.get("/reports")
@needs("console", refusal=REFUSAL)
def report_list() -> ResponseReturnValue:
    state = request.args.get("state") or "open"
    if state not in FILTERS:
        state = "open"
    found = user_reports.list_reports(
        services().store, powers().audiences(), None if state == "all" else state
    )
    return render_template(
        "web_reports.html", reports=found, state=state, filters=FILTERS, **_words()
    )


@bp.get("/reports/<int:report_id>")
@needs("console", refusal=REFUSAL)
def report_detail(report_id: int) -> ResponseReturnValue:
    store = services().store
    row = user_reports.get(store, report_id)
    if row is None or not _visible(row):
        return problem("There is no such report, or it is not for you.", 404)
    if powers().safeguarding:  # a look at who sent it: audited, as every look at a person's data
        with store.begin() as conn:
            audit.append(
                conn,
                actor=actor().name,
                action="report.viewed",
                subject=f"report:{report_id}",
                detail={"reporter": row.username or row.ip or ""},
                address=actor().address,
            )
    return _detail_page(row)


def _detail_page(row: Any, error: str | None = None, typed: dict[str, str] | None = None) -> Any:
    store = services().store
    steps = [s for s in user_reports.history(store, row.id) if s.action != "report.viewed"]
    alerts_page = "alert_pages.alert_list" in current_app.view_functions
    page = render_template(
        "web_report.html",
        r=row,
        names_shown=powers().safeguarding,
        address=user_reports.page_for(str(row.url or ""), audience_of(row)),
        pseudonyms=user_reports.alert_fields(store, row.alert_id),
        steps=steps,
        alert_link=f"/alerts/{row.alert_id}" if alerts_page and row.alert_id else None,
        profile_label=_profile_label(str(row.profile)),
        error=error,
        typed=typed or {},
        **_words(),
    )
    return page, 400 if error else 200


def _profile_label(name: str) -> str:
    found = policy().profiles.get(name)
    return found.label if found else name


@bp.post("/reports/<int:report_id>/<any(acknowledge, close):action>")
@needs("console", refusal=REFUSAL)
def report_action(report_id: int, action: str) -> ResponseReturnValue:
    store = services().store
    row = user_reports.get(store, report_id)
    if row is None or not _visible(row):
        return problem("There is no such report, or it is not for you.", 404)
    now = services().workflow.clock()
    try:
        if action == "acknowledge":
            user_reports.acknowledge(store, report_id, actor(), now)
            flash("You are looking at this report: it shows as being looked at.", "ok")
        else:
            user_reports.close(
                store,
                report_id,
                actor(),
                request.form.get("outcome") or "",
                request.form.get("notes") or "",
                now,
            )
            flash("The report is closed, with what was done.", "ok")
    except ReportError as exc:
        typed = {"outcome": request.form.get("outcome", ""), "notes": request.form.get("notes", "")}
        return _detail_page(row, str(exc), typed)
    return redirect(url_for("report_pages.report_detail", report_id=report_id), 303)


__all__ = ["bp"]

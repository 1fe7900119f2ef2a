"""Incidents: the online-safety incident log in the console, for the DSL, deputies and the
headteacher (workflow/incidents.py holds the rules and the audit).

The list shows when, where, what kind and the state, not the people or what happened; the
incident's page shows everything, and opening it is audited as a look at a person's data.
Incidents opened from an alert about a member of staff are the headteacher's alone, as
the alert was. Exports (CSV for MyConcern, CPOMS and the like; JSON) are posted forms, so a
link can't take the log out in someone's name, and each is audited.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.store.schema import alerts
from proxy_addons.web.console_forms import (
    labelled_choices,
    local_input,
    read_day,
    read_time,
    text,
)
from proxy_addons.web.context import actor, page, policy, problem, services
from proxy_addons.web.nav import needs, powers
from proxy_addons.web.people import alert_link
from proxy_addons.workflow import audit, incident_export, incident_log, incidents
from proxy_addons.workflow.incident_log import Incident
from proxy_addons.workflow.incidents import Draft, IncidentError

bp = Blueprint("incidents", __name__)

REFUSAL = "The incident log is for the DSL, deputies and the headteacher."
NEW_FIELDS = ("occurred_at", "location", "category", "people", "description", "action_taken")
VIEWED = "incident.view"


def _kind_from(category: str | None) -> str:
    """The incident kind an alert's category names: alerts carry a category's label
    ("Gambling") or a phrase library's category ("self-harm"); none that fits, none."""
    if not category:
        return ""
    kinds = {name: c.label for name, c in policy().categories.items()}
    kinds.update(incident_log.INCIDENT_KINDS)
    wanted = category.strip().lower()
    for name, label in kinds.items():
        if wanted in (name.lower(), label.lower(), name.lower().replace("_", "-")):
            return name
    return ""


def _common() -> dict[str, Any]:
    current = policy()
    kinds = {name: c.label for name, c in current.categories.items()}
    kinds.update(incident_log.INCIDENT_KINDS)
    return {
        "categories": labelled_choices(kinds),
        "kind_label": lambda name: incident_log.kind_label(current, name),
        "alert_link": alert_link(),
    }


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(0), policy().timezone)


def _period(form: Mapping[str, str], problems: dict[str, str]) -> incident_log.Filter:
    """The incidents a list or an export covers: days (school time) and a state."""
    start = read_day(form, "from", problems, "The first day")
    end = read_day(form, "to", problems, "The last day")
    state = text(form, "state", 12)
    return incident_log.Filter(
        start=_midnight(start),
        end=_midnight(end + timedelta(days=1)) if end else None,
        state=state if state in (incident_log.OPEN, incident_log.CLOSED) else None,
        staff=powers().headteacher,
    )


def _visible(found: Incident | None) -> bool:
    return found is not None and (not found.about_staff or powers().headteacher)


def people_named(text: str) -> list[str]:
    """The people involved, one per line or separated by commas: each entry whole, so "a
    pupil on the Year 2 iPad" is one person, not six."""
    return [" ".join(part.split()) for part in re.split(r"[,;\n]+", text) if part.strip()]


@bp.get("/incidents")
@needs("incidents", refusal=REFUSAL)
def incident_list() -> ResponseReturnValue:
    problems: dict[str, str] = {}
    chosen = _period(request.args, problems)
    return page(
        "web_incidents.html",
        400 if problems else 200,
        found=incident_log.listing(services().store, chosen),
        problems=problems,
        form={name: text(request.args, name, 40) for name in ("from", "to", "state")},
        **_common(),
    )


@bp.post("/incidents/export")
@needs("incidents", refusal=REFUSAL)
def incident_export_all() -> ResponseReturnValue:
    form = request.form
    problems: dict[str, str] = {}
    chosen = _period(form, problems)
    if problems:
        return problem(" ".join(problems.values()), 400)
    found = incident_log.listing(services().store, chosen)
    scope = {k: v for k, v in (("from", form.get("from")), ("to", form.get("to"))) if v}
    return _export(found, form.get("format", "csv"), scope, "incidents")


def _export(found: list[Incident], fmt: str, scope: dict[str, Any], name: str) -> Response:
    current, now = policy(), services().workflow.clock()
    if fmt == "json":
        body, mimetype = incident_export.to_json(current, found, now), "application/json"
    else:
        fmt, body, mimetype = "csv", incident_export.to_csv(current, found), "text/csv"
    incident_export.record_export(services().store, actor(), fmt, found, scope, now)
    stamp = f"{now.astimezone(current.timezone):%Y-%m-%d}"
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.{fmt}"'},
    )


def _alert_seed(alert_id: int) -> Any:
    """The alert an incident is opened from, if the signed-in person may see it."""
    c = alerts.c
    with services().store.connect() as conn:
        return conn.execute(
            sa.select(
                c.id, c.raised_at, c.category, c.username, c.device_id, c.ip, c.summary, c.state
            ).where(c.id == alert_id, c.audience.in_(sorted(powers().audiences())))
        ).first()


def _new_page(
    form: dict[str, str], alert: Any, status: int = 200, problems: dict[str, str] | None = None
) -> ResponseReturnValue:
    return page(
        "web_incident_new.html",
        status,
        form=form,
        alert=alert,
        problems=problems or {},
        **_common(),
    )


def _alert_id(typed: str | None) -> int | None:
    return int(typed) if typed and typed.isdecimal() and len(typed) < 10 else None


@bp.get("/incidents/new")
@needs("incidents", refusal=REFUSAL)
def incident_new() -> ResponseReturnValue:
    form = dict.fromkeys(NEW_FIELDS, "")
    alert = None
    alert_id = _alert_id(request.args.get("alert"))
    if alert_id is not None:
        alert = _alert_seed(alert_id)
        if alert is None:
            return problem("There is no such alert, or it is not one you can see.", 404)
        where = alert.device_id or alert.ip
        form.update(
            occurred_at=local_input(policy(), alert.raised_at),
            category=_kind_from(alert.category),
            people=alert.username or "",
            description=alert.summary,
            location=f"On the school network (device {where})" if where else "",
        )
    else:
        form["occurred_at"] = local_input(policy(), services().workflow.clock())
    return _new_page(form, alert)


@bp.post("/incidents/new")
@needs("incidents", refusal=REFUSAL)
def incident_create() -> ResponseReturnValue:
    typed = {name: text(request.form, name) for name in NEW_FIELDS}
    typed["about_staff"] = "yes" if request.form.get("about_staff") == "yes" else ""
    alert_id = _alert_id(request.form.get("alert"))
    alert = _alert_seed(alert_id) if alert_id is not None else None
    if alert_id is not None and alert is None:
        return problem("There is no such alert, or it is not one you can see.", 404)
    problems: dict[str, str] = {}
    draft = Draft(
        occurred_at=read_time(typed, "occurred_at", policy(), problems),
        location=typed["location"],
        description=typed["description"],
        action_taken=typed["action_taken"],
        category=typed["category"] or None,
        people=tuple(dict.fromkeys(n.lower() for n in people_named(typed["people"]))),
        about_staff=request.form.get("about_staff") == "yes",
    )
    now = services().workflow.clock()
    # Everything wrong at once (a time that can't be read, and the empty fields); the rest
    # is kept as typed.
    problems = {**incidents.problems_of(draft, now), **problems}
    try:
        if problems:
            raise IncidentError(problems)
        incident_id = incidents.open_incident(
            services().store, actor(), draft, now, alert_id=alert_id, audiences=powers().audiences()
        )
    except IncidentError as exc:
        return _new_page(typed, alert, 400, exc.problems)
    closed = " The alert is closed with the outcome “Incident opened”." if alert else ""
    flash(f"Incident {incident_id} is in the log.{closed}", "ok")
    if not _visible(incident_log.get(services().store, incident_id)):
        # About a member of staff: the headteacher's from now on, not the recorder's.
        flash("It is about a member of staff, so only the headteacher can open it.", "ok")
        return redirect(url_for("incidents.incident_list"), 303)
    return redirect(url_for("incidents.incident_detail", incident_id=incident_id), 303)


def _detail_page(incident_id: int, status: int = 200, error: str = "") -> ResponseReturnValue:
    found = incident_log.get(services().store, incident_id)
    if not _visible(found):
        return problem("There is no such incident.", 404)
    assert found is not None
    who = actor()
    with services().store.begin() as conn:
        audit.append(
            conn,
            actor=who.name,
            action=VIEWED,
            subject=incidents.audit_subject(incident_id),
            detail={"people": len(found.people)},
            address=who.address,
            at=services().workflow.clock(),
        )
    return page(
        "web_incident.html",
        status,
        i=found,
        error=error,
        today=services().workflow.clock().astimezone(policy().timezone).date(),
        **_common(),
    )


@bp.get("/incidents/<int:incident_id>")
@needs("incidents", refusal=REFUSAL)
def incident_detail(incident_id: int) -> ResponseReturnValue:
    return _detail_page(incident_id)


def _step(incident_id: int, done: str, run: Any) -> ResponseReturnValue:
    """Run one step on a visible incident; its problem comes back on the page, with a 400."""
    if not _visible(incident_log.get(services().store, incident_id)):
        return problem("There is no such incident.", 404)
    try:
        run()
    except IncidentError as exc:
        return _detail_page(incident_id, 400, str(exc))
    flash(done, "ok")
    return redirect(url_for("incidents.incident_detail", incident_id=incident_id), 303)


@bp.post("/incidents/<int:incident_id>/actions")
@needs("incidents", refusal=REFUSAL)
def incident_add_action(incident_id: int) -> ResponseReturnValue:
    form = request.form
    problems: dict[str, str] = {}
    due = read_day(form, "due", problems, "The due date")

    def run() -> None:
        if problems:
            raise IncidentError(problems)
        incidents.add_action(
            services().store,
            actor(),
            incident_id,
            text(form, "text"),
            text(form, "owner", 200),
            due,
            services().workflow.clock(),
        )

    return _step(incident_id, "Follow-up action added.", run)


@bp.post("/incidents/<int:incident_id>/actions/<int:action_id>/done")
@needs("incidents", refusal=REFUSAL)
def incident_action_done(incident_id: int, action_id: int) -> ResponseReturnValue:
    def run() -> None:
        incidents.mark_done(
            services().store, actor(), incident_id, action_id, services().workflow.clock()
        )

    return _step(incident_id, "Marked done.", run)


@bp.post("/incidents/<int:incident_id>/close")
@needs("incidents", refusal=REFUSAL)
def incident_close(incident_id: int) -> ResponseReturnValue:
    def run() -> None:
        incidents.close(services().store, actor(), incident_id, services().workflow.clock())

    return _step(incident_id, "The incident is closed.", run)


@bp.post("/incidents/<int:incident_id>/export")
@needs("incidents", refusal=REFUSAL)
def incident_export_one(incident_id: int) -> ResponseReturnValue:
    found = incident_log.get(services().store, incident_id)
    if not _visible(found):
        return problem("There is no such incident.", 404)
    assert found is not None
    fmt = request.form.get("format", "json")
    return _export([found], fmt, {"incident": incident_id}, f"incident-{incident_id}")


__all__ = ["bp"]

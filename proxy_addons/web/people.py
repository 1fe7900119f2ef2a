"""People: one pupil's or device's history for the DSL and deputies, with its CSV export.

A look names a pupil (user name), a device (id, name or IP address) or a block's reference
code, may narrow to a term, a category and days, and must say why. Searches and exports
are posted forms (CSRF-protected, and the pupil's name stays out of addresses and server
logs); each page of results and each export is audited by workflow/history_views.py.
A link may prefill the form (`/people?user=...`, from an alert page), never search.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flask import Blueprint, Response, current_app, request, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.core.policy.model import Policy
from proxy_addons.web.console_forms import labelled_choices, read_day, text
from proxy_addons.web.context import actor, page, policy, services
from proxy_addons.web.nav import needs, powers
from proxy_addons.workflow import history_views, incident_log
from proxy_addons.workflow.alert_queries import SEVERITY_TEXT
from proxy_addons.workflow.history_views import Look, LookError

bp = Blueprint("people", __name__)

REFUSAL = "A person's history is for the DSL and deputies only."
FIELDS = ("user", "device", "reference", "term", "category", "start", "end", "reason")


def read_look(form: Mapping[str, str]) -> tuple[Look, dict[str, str]]:
    problems: dict[str, str] = {}
    look = Look(
        user=text(form, "user", 200).lower(),
        device=text(form, "device", 200),
        reference=text(form, "reference", 32).upper(),
        term=text(form, "term", 100),
        category=text(form, "category", 100),
        start=read_day(form, "start", problems, "The first day"),
        end=read_day(form, "end", problems, "The last day"),
        reason=text(form, "reason", history_views.MAX_REASON + 1),
    )
    return look, problems


def _form_page(form: Mapping[str, str], status: int = 200, **values: object) -> ResponseReturnValue:
    current = policy()
    shown = {name: text(form, name) for name in FIELDS}
    values.setdefault("problems", {})
    values.setdefault("found", None)
    return page(
        "web_people.html",
        status,
        form=shown,
        terms=[t.name for t in current.terms],
        categories=labelled_choices({name: c.label for name, c in current.categories.items()}),
        category_label=lambda name: category_label(current, name),
        tz=current.timezone,
        retention_days=current.monitoring.retention_days,
        alert_link=alert_link(),
        severity_text=SEVERITY_TEXT,
        subject_access=_link("subject_access.export_form"),
        **values,
    )


@bp.get("/people")
@needs("safeguarding", refusal=REFUSAL)
def people_search() -> ResponseReturnValue:
    return _form_page(request.args)


@bp.post("/people")
@needs("safeguarding", refusal=REFUSAL)
def people_look() -> ResponseReturnValue:
    form = request.form
    look, problems = read_look(form)
    problems.update(history_views.problems_of(look, policy()))
    if problems:
        return _form_page(form, 400, problems=problems)
    store, current, mine = services().store, policy(), powers()
    try:
        if form.get("do") == "csv":
            body = history_views.export_csv(store, current, actor(), look)
            return _download(body, look)
        found = history_views.history(
            store, current, actor(), look, page=_page_number(form.get("page"))
        )
    except LookError as exc:
        return _form_page(form, 400, problems=exc.problems)
    named = (
        incident_log.listing(
            store, incident_log.Filter(person=look.user, staff=mine.headteacher, limit=50)
        )
        if look.user
        else []
    )
    return _form_page(
        form,
        found=found,
        alerts=history_views.alerts_about(store, look, mine.audiences()),
        incidents=named,
        look=look,
    )


def category_label(current: Policy, name: str) -> str:
    found = current.categories.get(name)
    return found.label if found else name


def _link(endpoint: str) -> str | None:
    return url_for(endpoint) if endpoint in current_app.view_functions else None


def alert_link() -> Callable[[int], str] | None:
    """Links to the alert pages, once their blueprint is there (alerts/dispatch names the
    same address in every alert's message)."""
    if "alert_pages.alert_detail" not in current_app.view_functions:
        return None
    return lambda alert_id: url_for("alert_pages.alert_detail", alert_id=alert_id)


def _page_number(typed: str | None) -> int:
    return int(typed) if typed and typed.isdecimal() and len(typed) < 7 else 1


def _download(body: str, look: Look) -> Response:
    name = "".join(ch if ch.isalnum() else "-" for ch in look.whom())[:60]
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="history-{name}.csv"'},
    )


__all__ = ["alert_link", "bp", "category_label", "read_look"]

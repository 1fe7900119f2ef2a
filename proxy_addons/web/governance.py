"""The governance pages: the governors' termly report and the annual reviews.

The report (record/term_report.py) is shown as the same self-contained page the CLI
writes, for any term of the policy's calendar, with a bar to choose the term; it names no
pupil, so governors read it too. The annual reviews are listed for the same readers and
recorded by the safeguarding team or the headteacher (workflow/reviews.py, audited).
"""

from __future__ import annotations

from datetime import date, datetime

from flask import Blueprint, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.checks.report import governors_report
from proxy_addons.record.term_report import (
    current_term,
    find_term,
    render_report,
)
from proxy_addons.web.context import actor, page, policy, problem, services
from proxy_addons.web.nav import holds, needs, powers
from proxy_addons.workflow import reviews
from proxy_addons.workflow.reviews import ROLES, ReviewError

bp = Blueprint("governance", __name__)

PARTICIPANT_ROWS = 6  # rows on the form; empty ones are left out
FORM_FIELDS = ("held_on", "findings", "actions")


def _today() -> date:
    return services().workflow.clock().astimezone(policy().timezone).date()


@bp.get("/report/term")
@needs("reads_reports", refusal="The termly report is for governors, leaders, the DSL and IT.")
def term_report() -> ResponseReturnValue:
    current, store, today = policy(), services().store, _today()
    asked = (request.args.get("term") or "").strip()[:100]
    try:
        term = find_term(current, asked) if asked else current_term(current, today)
    except ValueError as exc:
        return problem(str(exc), 404)
    if term is None:
        return problem("The policy names no terms (school.terms): there is nothing to report.", 404)
    report = governors_report(store, current, term, today, services().workflow.clock())
    bar = {
        "action": url_for("governance.term_report"),
        "back": url_for("governance.review_list"),
        "terms": current.terms,
    }
    return render_report(report, bar=bar), 200


@bp.get("/reviews")
@needs("reads_reports", refusal="The reviews are for governors, leaders, the DSL and IT.")
def review_list() -> ResponseReturnValue:
    found = reviews.list_reviews(services().store)
    today = _today()
    first_day = reviews.first_record_day(services().store, policy())
    due = reviews.next_due(policy(), found, today, first_day)
    return page(
        "web_reviews.html",
        reviews=found,
        due=due,
        overdue=due <= today,
        today=today,
        every=policy().monitoring.review_every_months,
        may_record=holds(powers(), "records_reviews"),
    )


def _form_values() -> dict[str, str]:
    out = {name: (request.form.get(name) or "")[: reviews.MAX_TEXT] for name in FORM_FIELDS}
    for n in range(PARTICIPANT_ROWS):
        out[f"role_{n}"] = (request.form.get(f"role_{n}") or "")[:20]
        out[f"name_{n}"] = (request.form.get(f"name_{n}") or "")[: reviews.MAX_NAME]
    return out


def _new_page(
    form: dict[str, str], status: int = 200, error: str | None = None
) -> ResponseReturnValue:
    if error:
        flash(error, "error")
    return page("web_review_new.html", status, form=form, roles=ROLES, rows=PARTICIPANT_ROWS)


@bp.route("/reviews/new", methods=["GET", "POST"])
@needs("records_reviews", refusal="Reviews are recorded by the DSL or the headteacher.")
def review_new() -> ResponseReturnValue:
    if request.method == "GET":
        blank = dict.fromkeys(FORM_FIELDS, "") | {"held_on": _today().isoformat()}
        return _new_page(blank)
    form = _form_values()
    try:
        held_on = date.fromisoformat(form["held_on"])
    except ValueError:
        return _new_page(form, 400, "Give the date the review was held.")
    people = [
        (form[f"role_{n}"], form[f"name_{n}"])
        for n in range(PARTICIPANT_ROWS)
        if form[f"name_{n}"].strip()
    ]
    who = actor()
    now: datetime = services().workflow.clock()
    try:
        reviews.record_review(
            services().store,
            held_on=held_on,
            participants=people,
            findings=form["findings"],
            actions=form["actions"],
            actor=who.user,
            address=who.address,
            now=now,
            today=_today(),
        )
    except ReviewError as exc:
        return _new_page(form, 400, str(exc))
    flash("The review is recorded. The governors' report lists it.", "ok")
    return redirect(url_for("governance.review_list"), 303)


__all__ = ["bp"]

"""The unblock pages: the list, one request with what the signed-in person may do to it, the
actions (approve, reject, confirm, revoke, extend) and the new-request form.

A thin layer over `UnblockWorkflow`, which holds every rule (four eyes, who may decide, how
long): what the workflow refuses comes back to the person as its own sentence with a 400,
and nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from flask import Blueprint, flash, g, redirect, request, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.core.unblocks import Status
from proxy_addons.web.context import actor, page, policy, problem, services, staff_only
from proxy_addons.web.unblock_forms import (
    MAX_TEXT,
    MAX_URL,
    NEW_FIELDS,
    clip,
    parse_when,
    request_values,
)
from proxy_addons.web.wording import STATUS_TEXT, input_value, when_text
from proxy_addons.workflow.unblocks import WorkflowError

RECENT = 50  # finished unblocks shown under "Recent"
_LIVE = (Status.PENDING, Status.AWAITING_IT, Status.ACTIVE)

bp = Blueprint("unblocks", __name__)


@bp.get("/unblocks")
@staff_only
def unblock_list() -> ResponseReturnValue:
    workflow = services().workflow
    now = workflow.clock()
    everything = workflow.list()  # newest first
    waiting = [u for u in reversed(everything) if u.status in (Status.PENDING, Status.AWAITING_IT)]
    active = sorted(
        (u for u in everything if u.status is Status.ACTIVE and u.ends_at > now),
        key=lambda u: u.ends_at,
    )
    shown = {u.id for u in (*waiting, *active)}
    recent = [u for u in everything if u.id not in shown][:RECENT]
    return page("web_list.html", waiting=waiting, active=active, recent=recent)


def detail_page(
    unblock_id: str, status: int = 200, error: str | None = None
) -> ResponseReturnValue:
    workflow = services().workflow
    try:
        unblock = workflow.get(unblock_id)
        row = workflow.details(unblock_id)
    except WorkflowError as exc:
        return problem(str(exc), 404)
    me = g.account.username
    decider, it = workflow.is_decider(me), workflow.is_it_provider(me)
    own = unblock.requested_by == me
    live = unblock.status in _LIVE
    pending = unblock.status is Status.PENDING
    decide_note = None
    if pending and decider and own:
        decide_note = (
            "You asked for this unblock, so you can't approve or reject it: "
            "another DSL or deputy must decide (four eyes)."
        )
    elif pending and not decider:
        decide_note = "A DSL or deputy named in the policy decides this request."
    extend_note = None
    if live and decider and own:
        extend_note = "You can't extend your own unblock: ask another DSL or deputy."
    suggested_end = max(unblock.ends_at, workflow.clock()) + timedelta(hours=1)
    return page(
        "web_detail.html",
        status,
        u=unblock,
        row=row,
        error=error,
        can_decide=pending and decider and not own,
        decide_note=decide_note,
        can_confirm=it and unblock.status is Status.AWAITING_IT,
        can_revoke=live and (decider or it or own),
        can_extend=live and decider and not own,
        extend_note=extend_note,
        suggested_end=input_value(policy(), suggested_end),
    )


@bp.get("/unblocks/<unblock_id>")
@staff_only
def unblock_detail(unblock_id: str) -> ResponseReturnValue:
    return detail_page(unblock_id)


@bp.post("/unblocks/<unblock_id>/<action>")
@staff_only
def unblock_action(unblock_id: str, action: str) -> ResponseReturnValue:
    workflow = services().workflow
    form = request.form
    who = actor()
    try:
        if action == "approve":
            done = workflow.approve(who, unblock_id, clip(form.get("comment")))
            message = f"Approved: {done.id} is now {STATUS_TEXT[done.status].lower()}."
        elif action == "reject":
            workflow.reject(who, unblock_id, clip(form.get("comment")))
            message = "Rejected. The requester will be told."
        elif action == "confirm":
            workflow.confirm(who, unblock_id)
            message = "Confirmed: the unblock is active."
        elif action == "revoke":
            workflow.revoke(who, unblock_id, clip(form.get("reason")))
            message = "Revoked: the page is blocked again."
        elif action == "extend":
            until = parse_when(form.get("until"), policy(), workflow.clock())
            if until is None:
                raise WorkflowError("Give the new end time.")
            done = workflow.extend(who, unblock_id, until, clip(form.get("reason")))
            message = f"Extended until {when_text(policy(), done.ends_at)}."
        else:
            return problem("There is no such action.", 404)
    except WorkflowError as exc:
        return detail_page(unblock_id, 400, error=str(exc))
    flash(message, "ok")
    return redirect(url_for("unblocks.unblock_detail", unblock_id=unblock_id), 303)


def typed(values: Mapping[str, str]) -> dict[str, str]:
    """The new-request form's fields as typed (or as the block page sent them), clipped."""
    return {
        name: clip(values.get(name), MAX_URL if name == "url" else MAX_TEXT) for name in NEW_FIELDS
    }


@bp.route("/unblocks/new", methods=["GET", "POST"])
@staff_only
def unblock_new() -> ResponseReturnValue:
    workflow = services().workflow
    current = policy()
    profiles = sorted(current.profiles)
    if request.method == "GET":
        # What the teacher chose on the block page comes through sign-in in the address.
        form = typed(request.args)
        form["audience_kind"] = form["audience_kind"] or "users"
        if form["audience_kind"] == "user" and not form["audience"]:
            form["audience"] = actor().user  # "only me" on the block page
        return page("web_new.html", form=form, profiles=profiles)
    form = typed(request.form)
    try:
        unblock = workflow.request(actor(), **request_values(form, current, workflow.clock()))
    except WorkflowError as exc:
        flash(str(exc), "error")
        return page("web_new.html", 400, form=form, profiles=profiles)
    flash(f"Sent: {unblock.id} is waiting for a DSL or deputy to decide.", "ok")
    return redirect(url_for("unblocks.unblock_detail", unblock_id=unblock.id), 303)


__all__ = ["bp"]

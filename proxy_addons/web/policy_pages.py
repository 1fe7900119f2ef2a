"""Filtering changes in the console: propose one with a reason, approve or reject someone
else's, see what changed over time with each diff (workflow/policy_changes.py has the
rules: a second person in a role the policy names approves, never the proposer).

For the IT provider, the DSL's team and, where the policy names them, the headteacher.
Every step is a posted form with its CSRF token; an approved change is in force within
two seconds (the gateway's watched reload).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.core.policy.model import Policy
from proxy_addons.web.context import actor, page, policy, services
from proxy_addons.web.nav import needs
from proxy_addons.workflow.policy_changes import (
    ChangeError,
    PolicyChanges,
    may_approve,
    may_propose,
)
from proxy_addons.workflow.policy_edits import editable_lists

bp = Blueprint("policy_pages", __name__)

REFUSAL = "Filtering changes are for the IT provider, the DSL and the deputies."
HISTORY = 100  # changes shown; `schoolgate policy history` shows them all


def _flow() -> PolicyChanges:
    return PolicyChanges(services().store, policy)


def _rules(current: Policy) -> list[tuple[str, str]]:
    """(value, label) of every profile's own rules that block or allow categories."""
    out = []
    for name, profile in current.profiles.items():
        for rule in profile.rules:
            if rule.profile != name or not rule.categories:
                continue
            label = rule.name or f"rule {rule.index}"
            cats = ", ".join(sorted(rule.categories))
            out.append(
                (f"{name}|{rule.index}", f"{profile.label}: {label} ({rule.action.value}s {cats})")
            )
    return out


def _form(name: str) -> str:
    return str(request.form.get(name, ""))[:500].strip()


def _change_from_form() -> dict[str, Any]:
    what = _form("what")
    if what == "site":
        return {"kind": f"list_{_form('op')}", "list": _form("list"), "value": _form("value")}
    if what == "category":
        profile, _, rule = _form("rule").partition("|")
        return {
            "kind": f"category_{_form('op')}",
            "profile": profile,
            "rule": rule,
            "category": _form("category"),
        }
    times = [t for t in _form("times").replace(",", " ").split() if t]
    return {"kind": "schedule_times", "schedule": _form("schedule"), "times": times}


@bp.route("/changes")
@needs("filtering_changes", refusal=REFUSAL)
def change_list() -> ResponseReturnValue:
    current, flow, me = policy(), _flow(), actor().user
    changes = flow.history(limit=HISTORY)
    return page(
        "web_policy_changes.html",
        pending=[c for c in changes if c.state == "proposed"],
        done=[c for c in changes if c.state != "proposed"],
        viewer=me,
        may_propose=may_propose(flow.store, current, me),
        may_approve=may_approve(flow.store, current, me),
        approvers=sorted(current.changes.approvers),
        lists=list(editable_lists(current)),
        rules=_rules(current),
        categories=sorted((n, c.label) for n, c in current.categories.items()),
        schedules=sorted(current.schedules),
    )


@bp.route("/changes/propose", methods=["POST"])
@needs("filtering_changes", refusal=REFUSAL)
def change_propose() -> ResponseReturnValue:
    try:
        done = _flow().propose(actor().user, _change_from_form(), _form("reason"))
    except ChangeError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Proposed: {done.summary}. A second person approves it before it applies.", "ok")
    return redirect(url_for("policy_pages.change_list"), 303)


@bp.route("/changes/<int:cid>/<step>", methods=["POST"])
@needs("filtering_changes", refusal=REFUSAL)
def change_decide(cid: int, step: str) -> ResponseReturnValue:
    flow, me = _flow(), actor().user
    try:
        if step == "approve":
            done = flow.approve(me, cid, _form("note"))
            flash(f"Approved and applied: {done.summary}. The gateway has it within seconds.", "ok")
        elif step == "reject":
            done = flow.reject(me, cid, _form("note"))
            flash(f"Rejected: {done.summary}.", "ok")
        elif step == "withdraw":
            done = flow.withdraw(me, cid)
            flash(f"Withdrawn: {done.summary}.", "ok")
        else:
            flash("That is not a step a change can take.", "error")
    except ChangeError as exc:
        flash(str(exc), "error")
    return redirect(url_for("policy_pages.change_list"), 303)


__all__ = ["bp"]

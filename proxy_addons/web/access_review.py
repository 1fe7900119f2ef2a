"""The access review: who can sign in to the admin app, with which roles, whether they use
two-factor sign-in and when they last signed in. Both schools' policies ask for a yearly
review of who has access; this page is what the reviewers look at (and print).

It lists staff's names and e-mail addresses, so each look is written to the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, g, request
from flask.typing import ResponseReturnValue

from proxy_addons.web.context import page, policy, services
from proxy_addons.web.nav import needs
from proxy_addons.workflow import audit, two_factor
from proxy_addons.workflow.account_admin import list_accounts
from proxy_addons.workflow.accounts import Account

bp = Blueprint("access_review", __name__)

IDLE_DAYS = 90  # not signed in for this long: does this person still need access?


@dataclass(frozen=True)
class Line:
    account: Account
    roles: list[str]
    two_factor: str  # "on", "off", "required"
    last: str
    idle: bool


def _when(at: datetime | None) -> str:
    return at.astimezone(policy().timezone).strftime("%d %b %Y %H:%M") if at else "never"


def _named_without_account(accounts: list[Account]) -> list[str]:
    """People the policy names for a job (told of alerts, deciding) with no account."""
    m, u = policy().monitoring, policy().unblocks
    named = m.safeguarding | m.deputies | m.technical | m.headteacher | m.chair_of_governors
    named |= u.deciders | u.it_provider
    return sorted(named - {a.username for a in accounts})


@bp.get("/access-review")
@needs("console", refusal="The access review is for the headteacher, the DSL and IT.")
def review() -> ResponseReturnValue:
    found = services()
    now = found.workflow.clock()
    accounts = list_accounts(found.store)
    lines = []
    for a in accounts:
        required = two_factor.required_for(policy(), a)
        state = "on" if a.two_factor else ("required" if required else "off")
        idle = not a.disabled and (
            a.last_sign_in_at is None or now - a.last_sign_in_at > timedelta(days=IDLE_DAYS)
        )
        roles = sorted(two_factor.roles_held(policy(), a))
        lines.append(Line(a, roles, state, _when(a.last_sign_in_at), idle))
    with found.store.begin() as conn:
        audit.append(
            conn, actor=g.account.username, action="access_review.viewed", subject="accounts",
            detail={"accounts": len(accounts)}, address=request.remote_addr, at=now,
        )  # fmt: skip
    return page(
        "web_access_review.html",
        lines=lines,
        unaccounted=_named_without_account(accounts),
        printed=_when(now),
        idle_days=IDLE_DAYS,
        school=policy().school,
    )


__all__ = ["bp"]

"""Two-factor sign-in in the admin app: the code asked for after the password, and setting
it up (the secret as text and an otpauth:// address, confirmed by a first code, then ten
recovery codes shown once).

Where the policy's `authentication.require_2fa_for` names one of a person's roles, every
page but this one and signing out sends them here until it is set up. A code is checked
with the sign-in throttle's counters, so guessing codes is slowed just like passwords.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, flash, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.web.auth import PENDING, finish_sign_in, may_sign_in
from proxy_addons.web.context import page, policy, services
from proxy_addons.workflow import totp, two_factor
from proxy_addons.workflow.accounts import Account, get_account
from proxy_addons.workflow.roles import Powers

logger = logging.getLogger(__name__)

bp = Blueprint("two_factor", __name__)

PENDING_SECONDS = 5 * 60  # from a right password to its code
# What someone who must set two-factor up may still open.
OPEN_WHILE_ENROLLING = frozenset({"two_factor.setup", "auth.logout", "auth.login"})


@bp.before_app_request
def enrol_first() -> ResponseReturnValue | None:
    """Roles the policy names set two-factor up before anything else."""
    account: Account | None = g.get("account")
    if account is None or account.two_factor or not two_factor.required_for(policy(), account):
        return None
    g.powers = Powers(user=account.username)  # no pages, no menu, until it is set up
    if request.endpoint in OPEN_WHILE_ENROLLING:
        return None
    if request.method == "GET":
        return redirect(url_for("two_factor.setup"))
    return redirect(url_for("two_factor.setup"), 303)


def _pending() -> tuple[Account, dict[str, Any]] | None:
    """The account whose password was just right, if that was recent and still holds."""
    note = session.get(PENDING)
    if not isinstance(note, dict) or not isinstance(note.get("user"), str):
        return None
    age = services().workflow.clock().timestamp() - float(note.get("at", 0))
    account = get_account(services().store, note["user"])
    if not 0 <= age <= PENDING_SECONDS or account is None or account.disabled:
        return None
    if note.get("stamp") != account.password_stamp or not account.two_factor:
        return None
    return account, note


@bp.route("/login/code", methods=["GET", "POST"])
def code() -> ResponseReturnValue:
    found = services()
    pending = _pending()
    if pending is None:
        session.pop(PENDING, None)
        flash("Please sign in again: the code must follow the password within 5 minutes.", "error")
        return redirect(url_for("auth.login"), 303 if request.method == "POST" else 302)
    account, note = pending
    if request.method == "GET":
        return page("web_login_code.html", error=None)
    address = request.remote_addr or "unknown"
    refused = found.throttle.refusal(
        account.username, address, found.browsers.knows(account.username)
    )
    if refused:
        logger.warning("code refused for %s from %s: too many failures", account.username, address)
        return page("web_login_code.html", 429, error=refused)
    typed = request.form.get("code", "")[:40]
    used = two_factor.check_code(found.store, account.username, typed, found.workflow.clock())
    if used is None or not may_sign_in(account):
        found.throttle.failed(account.username, address)
        logger.warning("wrong or reused code for %s from %s", account.username, address)
        message = "That code isn't right, or it has been used already: type the newest code."
        return page("web_login_code.html", 401, error=message)
    response = finish_sign_in(account, note.get("next"))
    if used == "recovery":
        left = two_factor.recovery_codes_left(found.store, account.username)
        flash(
            f"You signed in with a recovery code: {left} left. If your phone is lost, ask "
            "the IT provider to reset two-factor sign-in so you can set it up again.",
            "error",
        )
    return response


@bp.route("/account/two-factor", methods=["GET", "POST"])
def setup() -> ResponseReturnValue:
    account: Account | None = g.get("account")
    if account is None:
        return redirect(url_for("auth.login", next=url_for("two_factor.setup")))
    found = services()
    required = two_factor.required_for(policy(), account)
    if account.two_factor:
        left = two_factor.recovery_codes_left(found.store, account.username)
        return page("web_two_factor.html", state="on", left=left, required=required)
    secret = two_factor.pending_secret(found.store, account.username)
    if secret is None:
        secret = two_factor.begin_enrolment(found.store, account.username)
    error = None
    if request.method == "POST":
        codes = two_factor.confirm_enrolment(
            found.store, account.username, request.form.get("code", "")[:40],
            found.workflow.clock(), request.remote_addr,
        )  # fmt: skip
        if codes is not None:
            return page("web_two_factor.html", state="codes", codes=codes, required=required)
        error = "That code doesn't match: check the phone's clock, and type the newest code."
    return page(
        "web_two_factor.html",
        200 if error is None else 400,
        state="setup",
        required=required,
        error=error,
        secret=totp.grouped(secret),
        uri=totp.otpauth_uri(secret, account.username, policy().school),
    )


__all__ = ["bp"]

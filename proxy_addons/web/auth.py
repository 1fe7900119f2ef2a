"""Signing in and out of the admin app, and who is signed in on each request.

Sessions are kept in the store (`web_sessions`): the cookie (Secure, HttpOnly, SameSite=Lax,
signed) carries only a random session id, looked up on every request, for eight hours from
sign-in. Signing out deletes it on the server, so a copy of the cookie stops working too.
Each request re-reads the account, so disabling it or changing its password ends its sessions.
An account with two-factor sign-in on gives its code next (two_factor_pages.py) before any
session starts; a successful sign-in is recorded for the access review.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, flash, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.web.context import page, problem, services
from proxy_addons.web.nav import home_address
from proxy_addons.workflow import sessions as web_sessions
from proxy_addons.workflow.account_admin import record_sign_in
from proxy_addons.workflow.accounts import (
    Account,
    get_account,
    normalise_username,
    password_matches,
)
from proxy_addons.workflow.roles import powers_of

logger = logging.getLogger(__name__)

SESSION_LIFETIME = timedelta(hours=8)
PENDING = "pending_2fa"  # the signed cookie's note: password right, code still to come

bp = Blueprint("auth", __name__)


@bp.before_app_request
def load_account() -> None:
    """The signed-in account: its session must be live in the store (not signed out,
    not expired), and the account is re-read so disabling it or a new password ends it."""
    g.account = None
    if "sid" not in session:
        return
    found = services()
    user = web_sessions.user_of(found.store, session.get("sid"), found.workflow.clock())
    account = get_account(found.store, user) if user else None
    if account is None or account.disabled or session.get("stamp") != account.password_stamp:
        session.clear()
        return
    g.account = account


@bp.get("/")
def home() -> ResponseReturnValue:
    if g.get("account") is None:
        return redirect(url_for("auth.login", next="/"))
    start = home_address()
    if start is None:
        return problem("Your account has no pages here yet: ask the IT provider.", 403)
    return redirect(start)


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    found = services()
    store, workflow, throttle = found.store, found.workflow, found.throttle
    next_page = safe_next(request.values.get("next"))
    if request.method == "GET":
        return page("web_login.html", next=next_page, username="", error=None)
    username = normalise_username(request.form.get("username", ""))[:200]
    password = request.form.get("password", "")
    address = request.remote_addr or "unknown"
    # An unknown name may be a password typed into the wrong box: never logged.
    logged = username if get_account(store, username) is not None else "an unknown name"
    refused = throttle.refusal(username, address, found.browsers.knows(username))
    if refused:
        logger.warning("sign-in refused for %s from %s: too many failures", logged, address)
        return page("web_login.html", 429, next=next_page, username=username, error=refused)
    account = password_matches(store, username, password)
    if account is None:
        throttle.failed(username, address)
        logger.warning("failed sign-in for %s from %s", logged, address)
        message = "That user name and password don't match an account."
        return page("web_login.html", 401, next=next_page, username=username, error=message)
    if account.disabled:  # only someone who knows the password learns this
        logger.warning("sign-in refused for %s from %s: account disabled", username, address)
        message = (
            "This account has been disabled, so it can't sign in. If you still need it, "
            "ask the IT provider."
        )
        return page("web_login.html", 403, next=next_page, username=username, error=message)
    if not may_sign_in(account):
        logger.warning("sign-in refused for %s from %s: not staff", account.username, address)
        message = "This site is for school staff only."
        return page("web_login.html", 403, next=next_page, username=username, error=message)
    if account.two_factor:
        # The password was right; the session starts only once the code is too.
        session.clear()
        session[PENDING] = {
            "user": account.username,
            "stamp": account.password_stamp,
            "at": workflow.clock().timestamp(),
            "next": next_page,
        }
        return redirect(url_for("two_factor.code"), 303)
    return finish_sign_in(account, next_page)


def finish_sign_in(account: Account, next_page: str | None) -> ResponseReturnValue:
    """Both factors (or the one the account has) are proven: a new session."""
    found = services()
    address = request.remote_addr or "unknown"
    now = found.workflow.clock()
    found.throttle.succeeded(account.username, address)
    session.clear()  # a new session (and CSRF token): nothing set before sign-in survives
    session.permanent = True
    session["sid"] = web_sessions.start(found.store, account.username, now, SESSION_LIFETIME)
    session["stamp"] = account.password_stamp
    record_sign_in(found.store, account.username, now)
    logger.info("%s signed in from %s", account.username, address)
    response = redirect(next_page or url_for("auth.home"), 303)
    found.browsers.remember(response, account.username)
    return response


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    account: Account | None = g.account
    if account is not None:
        logger.info("%s signed out", account.username)
    web_sessions.end(services().store, session.get("sid"))  # a copy of the cookie no longer works
    session.clear()
    flash("You have signed out.", "ok")
    return redirect(url_for("auth.login"), 303)


def may_sign_in(account: Account) -> bool:
    """Staff, the DSL's team, the IT provider, the headteacher and governors."""
    found = services()
    mine = powers_of(
        found.workflow.policy(),
        account.username,
        frozenset(account.roles),
        is_staff=found.workflow.is_staff(account.username),
    )
    return mine.signs_in


def safe_next(value: str | None) -> str | None:
    """Only a path on this site: "//host" or "/\\host" would send people elsewhere."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in value):
        return None
    return value


__all__ = ["PENDING", "SESSION_LIFETIME", "bp", "finish_sign_in", "may_sign_in", "safe_next"]

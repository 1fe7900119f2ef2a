"""What every blueprint of the admin app shares: the services the factory was given (kept in
`app.extensions`, so the blueprints are plain modules), the staff-only guard and the helpers
that answer with a page or a problem."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.web.login_throttle import KnownBrowsers, LoginThrottle
from proxy_addons.workflow.accounts import Account
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow

EXTENSION = "schoolgate_web"


@dataclass(frozen=True)
class WebServices:
    """What the admin app works with, one set per app (tests build many apps)."""

    workflow: UnblockWorkflow
    store: Store
    throttle: LoginThrottle
    browsers: KnownBrowsers


def services() -> WebServices:
    found: WebServices = current_app.extensions[EXTENSION]
    return found


def policy() -> Policy:
    return services().workflow.policy()


def page(template: str, status: int = 200, **values: Any) -> ResponseReturnValue:
    return render_template(template, **values), status


def problem(message: str, status: int) -> ResponseReturnValue:
    return page("web_problem.html", status, message=message, code=status)


def actor() -> Actor:
    return Actor(g.account.username, request.remote_addr)


def here() -> str:
    return request.full_path.rstrip("?")


def staff_only[View: Callable[..., ResponseReturnValue]](view: View) -> View:
    """Pages for signed-in staff only; anyone else is sent to sign in or refused."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        account: Account | None = g.account
        if account is None:
            if request.method == "GET":
                return redirect(url_for("auth.login", next=here()))
            flash("Your session has ended: please sign in again.", "error")
            return redirect(url_for("auth.login"), 303)
        if not services().workflow.is_staff(account.username):
            return problem("This site is for school staff only.", 403)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


__all__ = [
    "WebServices",
    "actor",
    "page",
    "policy",
    "problem",
    "services",
    "staff_only",
]

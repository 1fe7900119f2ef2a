"""The console's menu and who may open each part of it.

Each page asks for one power of `workflow.roles.Powers` with `needs("safeguarding")` and so
on; the menu shows a link only to those who hold its power and only once its blueprint is
registered. A console part adds its line to `LINKS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import current_app, g, redirect, request, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.web.context import here, policy, problem, services
from proxy_addons.workflow.roles import Powers, powers_of

# (endpoint, label, power): in the order the menu shows them.
LINKS: tuple[tuple[str, str, str], ...] = (
    ("alert_pages.alert_list", "Alerts", "console"),
    ("report_pages.report_list", "Reports from users", "console"),
    ("people.people_search", "People", "safeguarding"),
    ("subject_access.export_form", "Subject access", "safeguarding"),
    ("incidents.incident_list", "Incidents", "incidents"),
    ("unblocks.unblock_list", "Unblocks", "staff"),
    ("unblocks.unblock_new", "Ask for an unblock", "staff"),
    ("device_pages.device_list", "Devices", "technical"),
    ("policy_pages.change_list", "Filtering changes", "filtering_changes"),
    ("governance.term_report", "Termly report", "reads_reports"),
    ("governance.review_list", "Annual review", "reads_reports"),
    ("access_review.review", "Access review", "console"),
    ("two_factor.setup", "Two-factor sign-in", "signs_in"),
)


def powers() -> Powers:
    """The signed-in person's powers (none when nobody is signed in); once per request."""
    found: Powers | None = g.get("powers")
    if found is not None:
        return found
    account = g.get("account")
    if account is None:
        return Powers(user="")
    workflow = services().workflow
    found = powers_of(
        policy(),
        account.username,
        frozenset(account.roles),
        is_staff=workflow.is_staff(account.username),
    )
    g.powers = found
    return found


def holds(mine: Powers, power: str) -> bool:
    return bool(getattr(mine, power))


def nav_links() -> list[tuple[str, str]]:
    """(address, label) of each menu link the signed-in person may follow."""
    mine = powers()
    return [
        (url_for(endpoint), label)
        for endpoint, label, power in LINKS
        if endpoint in current_app.view_functions and holds(mine, power)
    ]


def home_address() -> str | None:
    """Where a signed-in person starts: the first part of the menu they may open."""
    links = nav_links()
    return links[0][0] if links else None


def needs[View: Callable[..., ResponseReturnValue]](
    power: str, *, refusal: str = "Your account can't open this page."
) -> Callable[[View], View]:
    """Pages for people holding `power` only (others get `refusal`); anyone signed out is
    sent to sign in."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            if g.get("account") is None:
                if request.method == "GET":
                    return redirect(url_for("auth.login", next=here()))
                return redirect(url_for("auth.login"), 303)
            if not holds(powers(), power):
                return problem(refusal, 403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


__all__ = ["LINKS", "holds", "home_address", "nav_links", "needs", "powers"]

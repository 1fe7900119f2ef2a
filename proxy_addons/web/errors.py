"""The admin app's answers to errors: its own problem page, never Flask's default one.

A form refused because the session cookie never came back is, far more often than a forgery,
a deployment reached over plain HTTP (a Secure cookie is not kept from http://): the sign-in
page and the refusal then say that, and what to change, rather than "the form had expired".
"""

from __future__ import annotations

import ipaddress
import logging

from flask import Blueprint, current_app, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError

from proxy_addons.web.context import problem

logger = logging.getLogger(__name__)

bp = Blueprint("errors", __name__)


PLAIN_HTTP = (
    "This page was reached over plain HTTP, so your browser will not keep the sign-in "
    "cookie and signing in cannot work. Open the https:// address of this site instead. "
    "If Schoolgate is behind a reverse proxy, the proxy must serve HTTPS and send "
    "X-Forwarded-Proto: https, and 'schoolgate web' must be started with --trusted-proxies."
)


def over_plain_http() -> bool:
    """The browser reached us over http:// (as far as a trusted proxy says) to a host other
    than its own loopback (browsers keep Secure cookies from http://localhost only)."""
    if not current_app.config.get("SESSION_COOKIE_SECURE") or request.scheme == "https":
        return False
    host = request.host.rsplit(":", 1)[0].strip("[]") if request.host else ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


@bp.app_context_processor
def transport_values() -> dict[str, str | None]:
    """`plain_http`: the warning the sign-in page shows, or None."""
    return {"plain_http": PLAIN_HTTP if over_plain_http() else None}


@bp.app_errorhandler(CSRFError)
def csrf_failed(exc: CSRFError) -> ResponseReturnValue:
    logger.warning("CSRF check failed from %s: %s", request.remote_addr, exc.description)
    if over_plain_http():
        return problem(PLAIN_HTTP, 400)
    return problem(
        "This form had expired or did not come from this site. "
        "Go back, reload the page and try again.",
        400,
    )


@bp.app_errorhandler(404)
def not_found(exc: Exception) -> ResponseReturnValue:
    return problem("There is no such page.", 404)


@bp.app_errorhandler(405)
def wrong_method(exc: Exception) -> ResponseReturnValue:
    return problem("That page can't be used like that.", 405)


@bp.app_errorhandler(413)
def too_big(exc: Exception) -> ResponseReturnValue:
    return problem("That form was far too long.", 413)


__all__ = ["bp"]

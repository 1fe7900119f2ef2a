"""The admin app's answers to errors: its own problem page, never Flask's default one."""

from __future__ import annotations

import logging

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError

from proxy_addons.web.context import problem

logger = logging.getLogger(__name__)

bp = Blueprint("errors", __name__)


@bp.app_errorhandler(CSRFError)
def csrf_failed(exc: CSRFError) -> ResponseReturnValue:
    logger.warning("CSRF check failed from %s: %s", request.remote_addr, exc.description)
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

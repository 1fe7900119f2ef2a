"""The web apps `schoolgate web` serves: the admin app and the device API, each built by a
factory from its blueprints.

The admin app is for temporary educational unblocks (staff ask, a DSL or deputy decides)
and the IT provider's device inventory: auth.py signs people in, unblocks.py and
device_pages.py are the pages, errors.py answers errors with the app's own page. The pages
reuse the block page's look and need no JavaScript. Every form carries a CSRF token
(Flask-WTF).

The device API is a Flask app of its own (no sessions, no CSRF, JSON errors: see
devices/api.py), from the devices' blueprint and the termly checks' one; `mount` serves it
under `/api/` from the same server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from flask import Flask, Response
from flask_wtf.csrf import CSRFProtect

from agent.report import MAX_REPORT_BYTES
from proxy_addons.checks.device_api import checks_blueprint
from proxy_addons.core.network_access import DEVICE_API_PREFIX
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices.api import device_blueprint
from proxy_addons.store import Store
from proxy_addons.web import (
    access_review,
    alert_pages,
    auth,
    device_pages,
    errors,
    governance,
    incidents,
    people,
    policy_pages,
    report_pages,
    subject_access,
    two_factor_pages,
    unblocks,
)
from proxy_addons.web.auth import SESSION_LIFETIME
from proxy_addons.web.context import EXTENSION, WebServices
from proxy_addons.web.login_throttle import KnownBrowsers, LoginThrottle
from proxy_addons.web.wording import template_values
from proxy_addons.workflow.unblocks import UnblockWorkflow

TEMPLATES = Path(__file__).resolve().parents[1] / "pages" / "templates"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def create_app(
    workflow: UnblockWorkflow,
    store: Store,
    *,
    secret_key: bytes,
    secure_cookies: bool = True,
) -> Flask:
    """The admin app; `secure_cookies=False` only for tests on plain http over loopback."""
    if len(secret_key) < 16:
        raise ValueError("the web app's secret key must be at least 16 bytes")
    app = Flask("schoolgate-web", template_folder=str(TEMPLATES), static_folder=None)
    app.config.update(
        SECRET_KEY=secret_key,
        # "__Host-": the browser only keeps it from HTTPS, for this host, for every path.
        SESSION_COOKIE_NAME="__Host-schoolgate" if secure_cookies else "schoolgate",
        SESSION_COOKIE_SECURE=secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        WTF_CSRF_TIME_LIMIT=int(SESSION_LIFETIME.total_seconds()),
        # The strict check wants a Referer on HTTPS posts, but base.html asks browsers to
        # send none (block pages must not leak addresses). The token and SameSite=Lax suffice.
        WTF_CSRF_SSL_STRICT=False,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.jinja_env.undefined = jinja2.StrictUndefined  # a missing value is a bug
    app.extensions[EXTENSION] = WebServices(
        workflow, store, LoginThrottle(), KnownBrowsers(secret_key, secure_cookies)
    )
    app.context_processor(template_values)
    app.after_request(_security_headers)
    for blueprint in (
        auth.bp,
        two_factor_pages.bp,  # after auth: its check needs the signed-in account
        alert_pages.bp,
        people.bp,
        incidents.bp,
        unblocks.bp,
        device_pages.bp,
        report_pages.bp,
        governance.bp,
        subject_access.bp,
        access_review.bp,
        policy_pages.bp,
        errors.bp,
    ):
        app.register_blueprint(blueprint)
    # After auth's load_account, so a page refusing a form still knows who is signed in.
    CSRFProtect(app)
    return app


def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
        # The alert list's live feed (alert_feed.js, served by the app) and its polling.
        "script-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _now() -> datetime:
    return datetime.now(UTC)


def create_device_api(
    store: Store,
    policy: Callable[[], Policy],
    clock: Callable[[], datetime] = _now,
    var: Path | None = None,
) -> Flask:
    """The device API: enrol and report (devices/api.py), and the termly checks
    (checks/device_api.py: GET /api/v1/checks, POST /api/v1/checks/runs, check windows)."""
    app = Flask("schoolgate-devices")
    app.config.update(MAX_CONTENT_LENGTH=MAX_REPORT_BYTES)
    app.register_blueprint(device_blueprint(store, policy, clock, var))
    app.register_blueprint(checks_blueprint(store, policy, clock))
    return app


def mount(outer: WSGIApp, api: WSGIApp) -> WSGIApp:
    """A WSGI app sending `/api/...` to `api` and everything else to `outer`."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        target = api if path.startswith(DEVICE_API_PREFIX) else outer
        return target(environ, start_response)

    return dispatch


__all__ = ["create_app", "create_device_api", "mount"]

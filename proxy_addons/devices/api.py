"""The device API the agents talk to: enrol once, then report.

A blueprint for a Flask app of its own (`web.app.create_device_api`, which adds the termly
checks' blueprint) rather than routes in the admin app: it has no sessions and no CSRF
(devices authenticate with a bearer token), and keeping it apart means no admin-page rule
(sign-in redirects, HTML errors) ever applies to it. So its error handlers and headers are
the whole app's (`app_errorhandler`). `web.app.mount` serves it from the admin web app's
process under `/api/`, so `schoolgate web --cert ... --key ...` is the one HTTPS server on
the gateway.

Every answer is JSON. Bad input gets a 4xx with `{"error": ..., "field": ...}`; anything
unexpected is logged and answered 400, never 500 (the agent keeps a 5xx report and retries
it forever, which is right for an outage but not for a report that can't be stored).

A report speaks for the address it comes from (`devices.request_address`): the peer, or,
when the peer is one of the policy's `devices.trusted_relays`, the address that relay
forwarded in X-Forwarded-For. A forwarded address from anyone else is not read at all.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from agent.report import MAX_REPORT_BYTES, ReportError, parse_report
from agent.tunnel.config import valid_key
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices import enrolment, reports, tunnels
from proxy_addons.devices.device_thresholds import thresholds_for
from proxy_addons.devices.tunnel_watch import alert_tunnel_down
from proxy_addons.devices.watch import alert_noncompliance, load_eol, with_eol
from proxy_addons.store import Store
from proxy_addons.workflow.throttle import FailureCounter, address_key

logger = logging.getLogger(__name__)

_NUL = re.compile(rb"\\u0000", re.IGNORECASE)
MAX_ENROL_BYTES = 4096

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def _answer(status: int, **body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _problem(status: int, message: str, field: str | None = None) -> Response:
    return _answer(status, error=message, field=field)


def _json_body(limit: int) -> Any:
    """The request's JSON; raises ReportError("body", ...) on anything else."""
    length = request.content_length
    if length is not None and length > limit:
        raise _TooBig()
    raw = request.get_data(cache=False)
    if len(raw) > limit:
        raise _TooBig()
    # PostgreSQL refuses NUL in text and NaN in JSON: refused here, they are a 400, not a 503.
    if _NUL.search(raw):
        raise ReportError("body", "may not contain NUL characters")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError("body", "is not valid JSON") from exc


def _no_constant(name: str) -> Any:
    raise ReportError("body", f"{name} is not a JSON number")


class _TooBig(Exception):
    pass


def _small_object(what: str) -> dict[str, Any] | Response:
    """The body of an enrolment or tunnel request, a small JSON object, or the answer why not."""
    try:
        data = _json_body(MAX_ENROL_BYTES)
    except _TooBig:
        return _problem(413, f"the {what} request is too large")
    except ReportError as exc:
        return _problem(400, exc.message, exc.field)
    if not isinstance(data, dict):
        return _problem(400, "should be a JSON object", "body")
    return data


def _bearer() -> str | None:
    """The bearer token of the request, if it has one."""
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def device_blueprint(
    store: Store, policy: Callable[[], Policy], clock: Clock = _now, var: Path | None = None
) -> Blueprint:
    """POST /api/v1/enrol, /api/v1/report and /api/v1/tunnel, with the device API's JSON
    errors. `var` is the gateway's folder, where the tunnel's public key is (devices/tunnels.py)."""
    var = var or Path("var")
    bp = Blueprint("device_api", __name__)
    # Wrong enrolment secrets: 5 per 15 minutes per client (an IPv4 address, an IPv6 /64).
    throttle = FailureCounter(5, 15 * 60)
    # New tunnel keys: 10 an hour per device. Each is audited and changes the gateway's
    # peers, so a lying agent rotating in a loop would fill the audit trail.
    rotations = FailureCounter(10, 60 * 60)

    @bp.post("/api/v1/enrol")
    def enrol() -> Response:
        data = _small_object("enrolment")
        if isinstance(data, Response):
            return data
        secret, hostname = data.get("secret"), data.get("hostname")
        again = data.get("device_id")  # enrolling again under its old id: a new token
        if not isinstance(secret, str) or not secret:
            return _problem(400, "should be the school's enrolment secret", "secret")
        if not isinstance(hostname, str):
            return _problem(400, "should be the device's name", "hostname")
        if again is not None and (not isinstance(again, str) or not 1 <= len(again) <= 64):
            return _problem(400, "should be the id this device was enrolled with", "device_id")
        current = _bearer() if again is not None else None
        address = reports.request_address(request.environ, policy().devices.trusted_relays) or "?"
        if throttle.blocked(address_key(address)):
            return _problem(429, "too many wrong enrolment secrets: wait and try again", "secret")
        expected = enrolment.read_secret(policy().devices.enrolment_secret_file)
        try:
            device_id, token = enrolment.enrol(
                store,
                secret,
                expected,
                hostname,
                clock(),
                device_id=again,
                current_token=current,
                address=address,
            )
        except (enrolment.DeviceTaken, enrolment.NoSuchDevice) as exc:
            taken = isinstance(exc, enrolment.DeviceTaken)
            return _problem(409 if taken else 404, str(exc), "device_id")
        except enrolment.EnrolError as exc:
            wrong_secret = expected is not None and "secret" in str(exc)
            if wrong_secret:
                throttle.failed(address_key(address))
                logger.warning("enrolment with a wrong secret from %s", address)
            status = 403 if expected is None or wrong_secret else 400
            return _problem(status, str(exc), "secret" if wrong_secret else "hostname")
        return _answer(201, device_id=device_id, token=token)

    @bp.post("/api/v1/report")
    def report() -> Response:
        token = _bearer()
        checked = enrolment.check_token(store, token) if token else enrolment.TokenCheck(None)
        device_id = checked.device_id
        if device_id is None:
            message = "a valid device token is needed (enrol first)"
            if checked.revoked_at is not None:
                message = (
                    f"this device's token was revoked on {checked.revoked_at:%Y-%m-%d %H:%M} "
                    "UTC: enrol it again (schoolgate-agent enrol --device-id ...)"
                )
            response = _problem(401, message)
            response.headers["WWW-Authenticate"] = 'Bearer realm="schoolgate"'
            return response
        try:
            parsed = parse_report(_json_body(MAX_REPORT_BYTES))
        except _TooBig:
            return _problem(413, f"a report may be at most {MAX_REPORT_BYTES} bytes")
        except ReportError as exc:
            return _problem(400, exc.message, exc.field)
        if parsed.device_id != device_id:
            return _problem(403, "is not the device this token was issued to", "device_id")
        # -- device watch: the gateway's OS end-of-life verdict, and an alert on failing --
        now, current = clock(), policy()
        parsed = with_eol(parsed, load_eol(current.devices.eol_file), now.date())
        source = reports.request_address(request.environ, current.devices.trusted_relays)
        try:
            pool = current.devices.tunnel.pool if current.devices.tunnel else None
            ignored = reports.record_report(store, parsed, now, source=source, tunnels=pool)
        except reports.ReportRejected as exc:
            return _problem(409, str(exc), "generated_at")
        try:  # the report is stored: a 5xx now would only make the agent resend it
            alert_noncompliance(store, current, parsed, now)
            alert_tunnel_down(store, current, parsed, now)
        except Exception:  # not remembered as raised, so the next report tries again
            logger.exception("device API: alert for %s not raised", device_id)
        # -- end device watch --
        logger.info("report from %s: compliant=%s", device_id, parsed.compliant)
        # Said back, so an agent (and whoever runs it) can see which addresses count; and
        # the policy's thresholds, which the agent judges its next report by.
        return _answer(
            202,
            accepted=True,
            compliant=parsed.compliant,
            address=source,
            ignored_ips=ignored,
            thresholds=thresholds_for(store, current.devices, device_id, parsed.hostname).to_json(),
        )

    @bp.post("/api/v1/tunnel")
    def tunnel() -> Response:
        """The device's WireGuard public key in, its tunnel's configuration out."""
        token = _bearer()
        device_id = enrolment.verify_token(store, token) if token else None
        if device_id is None:
            response = _problem(401, "a valid device token is needed (enrol first)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="schoolgate"'
            return response
        current = policy()
        offered = current.devices.tunnel
        if offered is None:
            return _problem(404, "this gateway offers no tunnels (policy devices.tunnel)")
        gateway_key = tunnels.gateway_public_key(offered, var)
        if gateway_key is None:
            logger.error("device API: no tunnel key yet: run `schoolgate tunnel up` on the gateway")
            return _problem(503, "the gateway's tunnel is not up yet; try again later")
        data = _small_object("tunnel")
        if isinstance(data, Response):
            return data
        key = data.get("public_key")
        if not valid_key(key):
            return _problem(400, "should be the device's WireGuard public key", "public_key")
        had = tunnels.binding_of(store, device_id)
        new_key = had is not None and had.public_key != key
        if new_key and rotations.blocked(device_id):
            return _problem(429, "too many new keys for this device: try again later", "public_key")
        try:
            binding = tunnels.bind(
                store, offered, device_id, str(key), clock(), "device", gateway_key
            )
        except tunnels.TunnelError as exc:
            status = 409 if isinstance(exc, tunnels.KeyTaken) else 400
            return _problem(status, str(exc), "public_key")
        if new_key:
            rotations.failed(device_id)  # counted, not failed: the counter's word for it
        config = tunnels.device_config(
            offered, binding, gateway_key, current.devices.school_resolvers
        )
        return _answer(200, tunnel=config.to_json())

    @bp.app_errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.code == 413:
            return _problem(413, f"a report may be at most {MAX_REPORT_BYTES} bytes")
        return _problem(exc.code or 400, exc.description or exc.name)

    @bp.app_errorhandler(sa.exc.DBAPIError)
    def store_down(exc: sa.exc.DBAPIError) -> Response:
        # The store is unreachable: a 503 makes the agent keep the report and send it later.
        logger.error("device API: store error on %s: %s", request.path, exc.orig)
        return _problem(503, "the gateway can't store reports just now; try again later")

    @bp.app_errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # Logged with its traceback for us; the device gets a 4xx, never a 500 (see above).
        logger.exception("device API: unexpected error on %s", request.path)
        return _problem(400, "the request could not be processed")

    @bp.after_app_request
    def headers(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return bp


__all__ = ["device_blueprint"]

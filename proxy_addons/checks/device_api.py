"""The device API's termly-check endpoints: an enrolled agent fetches the suite, runs it over
the device's own network path, and posts what it saw (`schoolgate-agent checks`).

- `GET /api/v1/checks`: the suite's cases for the profile the gateway puts this device in
  (the user of its fresh report, else its address; as the filter would), with that profile.
- `POST /api/v1/checks/runs`: one run. Each case's observation (status, block reference,
  error, evidence) is validated field by field, and the gateway judges it itself with the
  shared `check_suite.classify` (the agent's own verdict is only for its screen). Recorded
  with source "agent", the device's id and OS from the inventory, and failures alert.
  Posting a run closes the device's check window.
- `POST /api/v1/checks/windows`: announces a run about to start (checks/announced.py): for a few
  minutes the suite's URLs for this device's profile, from the address the device API sees it
  at, raise no monitoring alerts. `{"seconds": N}` is optional (clamped to 60..900). The
  answer's `starts_in` is how long the gateways take to see it (they read windows every few
  seconds). `DELETE` closes the device's window (a run given up).

Answers are JSON; bad input is a 4xx naming the field, never a 500 (as devices/api.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, request

from agent.check_suite import Observation
from proxy_addons.checks.alerts import record_and_alert
from proxy_addons.checks.announced import (
    DEFAULT_SECONDS,
    REFRESH_SECONDS,
    close_windows,
    open_window,
)
from proxy_addons.checks.records import CheckRecordError, CheckRun, result_for, term_at
from proxy_addons.core.decide import Identity, resolve_profile
from proxy_addons.core.policy.check_suite_file import Suite, SuiteError, load_suite
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices import enrolment, inventory, reports
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

MAX_RUN_BYTES = 256 * 1024
_NUL = re.compile(rb"\\u0000|\x00", re.IGNORECASE)
MAX_NAME = 100
MAX_AGE = timedelta(days=7)  # a run older than this is not this term's evidence
FUTURE_SLACK = timedelta(minutes=10)
DEVICE_TYPES = {"linux": "Linux PC", "macos": "Mac", "windows": "Windows laptop or PC"}
RUN_KEYS = {
    "suite",
    "profile",
    "started_by",
    "started_at",
    "finished_at",
    "network_path",
    "device_type",
    "results",
}


class BadRun(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def _answer(status: int, **body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _bearer_device(store: Store) -> str | None:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return enrolment.verify_token(store, token.strip())


def _address(policy: Policy) -> str | None:
    """Where this request comes from: the peer, or what a trusted relay forwards (devices.py)."""
    return reports.request_address(request.environ, policy.devices.trusted_relays)


def _unauthorised() -> Response:
    response = _answer(401, error="a valid device token is needed (enrol first)", field=None)
    response.headers["WWW-Authenticate"] = 'Bearer realm="schoolgate"'
    return response


def device_profile(store: Store, policy: Policy, ip: str | None, now: datetime) -> str:
    """The profile the filter gives this device's traffic: the signed-in user of a fresh report
    from this address (devices.identity_minutes), else the address's network, else the default.
    Directory groups are not looked up here (the web process has no LDAP connection)."""
    user = inventory.user_at(store, ip, now, policy.devices.identity_minutes) if ip else None
    return resolve_profile(policy, Identity(user, (), ip))[0].name


def _time(data: dict[str, Any], key: str, now: datetime) -> datetime:
    raw = data.get(key)
    try:
        at = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise BadRun(key, "should be an ISO 8601 time with its time zone")
    if at > now + FUTURE_SLACK:
        raise BadRun(key, "is in the future")
    if at < now - MAX_AGE:
        raise BadRun(key, "is more than 7 days ago")
    return at


def _text(data: dict[str, Any], key: str, limit: int, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise BadRun(key, f"should be some text of at most {limit} characters")
    return " ".join(value.split())


def parse_run(
    data: Any, suite: Suite, profile: str, policy: Policy, device: inventory.Device, now: datetime
) -> CheckRun:
    """A posted run as a CheckRun, judged here; BadRun names the first field that is wrong."""
    if not isinstance(data, dict):
        raise BadRun("body", "should be a JSON object")
    for key in data:
        if key not in RUN_KEYS:
            raise BadRun(str(key)[:40], "is not a field of a check run")
    if data.get("suite") != suite.name:
        raise BadRun("suite", f"should be the gateway's suite '{suite.name}' (fetch it again)")
    if data.get("profile") != profile:
        raise BadRun("profile", f"the gateway puts this device in '{profile}' now: run again")
    started_by = _text(data, "started_by", MAX_NAME) or ""
    started, finished = _time(data, "started_at", now), _time(data, "finished_at", now)
    if finished < started:
        raise BadRun("finished_at", "is before started_at")
    path = _text(data, "network_path", 200, required=False)
    device_type = _text(data, "device_type", 40, required=False)
    items = data.get("results")
    cases = {c.id: c for c in suite.cases_for(profile)}
    if not isinstance(items, list) or not items or len(items) > len(cases):
        raise BadRun("results", f"should list between 1 and {len(cases)} cases")
    results = []
    for i, item in enumerate(items):
        where = f"results[{i}]"
        if not isinstance(item, dict) or set(item) - {"case", "observation", "outcome"}:
            raise BadRun(where, "should be {case, observation}")
        case = cases.pop(str(item.get("case")), None)
        if case is None:
            raise BadRun(f"{where}.case", "is not a case of the suite for this profile (or twice)")
        seen = item.get("observation")
        if not isinstance(seen, dict):
            raise BadRun(f"{where}.observation", "should be a JSON object")
        try:
            observation = Observation.from_json(seen)
        except ValueError as exc:
            raise BadRun(f"{where}.observation", str(exc)) from exc
        if observation.status is not None and not 100 <= observation.status <= 599:
            raise BadRun(f"{where}.observation.status", "should be an HTTP status (100-599)")
        results.append(result_for(case, observation))
    os_name = " ".join(x for x in (device.os_name, device.os_version) if x) or None
    term = term_at(policy, started)
    return CheckRun(
        started_at=started,
        finished_at=finished,
        started_by=started_by,
        source="agent",
        profile=profile,
        results=tuple(results),
        suite=suite.name,
        device_id=device.device_id,
        device_type=device_type or DEVICE_TYPES.get(device.os_name or "", "Other"),
        os=os_name,
        browser=f"schoolgate-agent {device.agent_version or '?'}" + (f" ({path})" if path else ""),
        term=term.name if term else None,
    )


def checks_blueprint(
    store: Store, policy: Callable[[], Policy], clock: Callable[[], datetime]
) -> Blueprint:
    bp = Blueprint("device_checks", __name__)

    def suite_now() -> tuple[Policy, Suite] | Response:
        current = policy()
        if current.checks.suite is None:
            return _answer(404, error="the school's policy has no check suite", field=None)
        try:
            return current, load_suite(current.checks.suite)
        except (OSError, SuiteError) as exc:
            logger.error("device API: the check suite can't be read: %s", exc)
            return _answer(503, error="the check suite can't be read just now", field=None)

    @bp.get("/api/v1/checks")
    def suite_for_device() -> Response:
        device_id = _bearer_device(store)
        if device_id is None:
            return _unauthorised()
        found = suite_now()
        if isinstance(found, Response):
            return found
        current, suite = found
        profile = device_profile(store, current, _address(current), clock())
        return _answer(200, profile=profile, device_id=device_id, **suite.to_json(profile))

    @bp.post("/api/v1/checks/windows")
    def open_check_window() -> Response:
        # The address is the one this request comes from, as for the suite's profile: where
        # the gateway sees the device now, not an address the device says it has (a device
        # could name another pupil's and silence that pupil's alerts).
        device_id = _bearer_device(store)
        if device_id is None:
            return _unauthorised()
        raw = request.get_data(cache=False)
        if len(raw) > 1024:
            return _answer(413, error="a window request may be at most 1024 bytes", field=None)
        try:
            data = json.loads(raw or b"{}", parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError):
            return _answer(400, error="is not valid JSON", field="body")
        if not isinstance(data, dict) or set(data) - {"seconds"}:
            return _answer(400, error="should be {seconds}", field="body")
        seconds = data.get("seconds", DEFAULT_SECONDS)
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
            return _answer(400, error="should be a whole number of seconds", field="seconds")
        found = suite_now()
        if isinstance(found, Response):
            return found
        current, suite = found
        ip = _address(current)
        if not ip:
            return _answer(400, error="the device's address is not known", field=None)
        now = clock()
        profile = device_profile(store, current, ip, now)
        urls = [c.url for c in suite.cases_for(profile)]
        window_id, expires, count = open_window(store, device_id, ip, urls, now, seconds)
        logger.info("check window %d for device %s (%d URLs)", window_id, device_id, count)
        return _answer(
            201,
            window_id=window_id,
            profile=profile,
            urls=count,
            expires_at=expires.isoformat(),
            starts_in=REFRESH_SECONDS + 1,
        )

    @bp.delete("/api/v1/checks/windows")
    def close_check_window() -> Response:
        device_id = _bearer_device(store)
        if device_id is None:
            return _unauthorised()
        return _answer(200, closed=close_windows(store, device_id, clock()))

    @bp.post("/api/v1/checks/runs")
    def post_run() -> Response:
        device_id = _bearer_device(store)
        if device_id is None:
            return _unauthorised()
        close_windows(store, device_id, clock())  # the run is over, whatever becomes of it
        if (request.content_length or 0) > MAX_RUN_BYTES:
            return _answer(413, error=f"a run may be at most {MAX_RUN_BYTES} bytes", field=None)
        raw = request.get_data(cache=False)
        if len(raw) > MAX_RUN_BYTES:
            return _answer(413, error=f"a run may be at most {MAX_RUN_BYTES} bytes", field=None)
        if _NUL.search(raw):  # PostgreSQL refuses NUL in text: a 400 here, not a 503 later
            return _answer(400, error="may not contain NUL characters", field="body")
        try:
            data = json.loads(raw, parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError):
            return _answer(400, error="is not valid JSON", field="body")
        found = suite_now()
        if isinstance(found, Response):
            return found
        current, suite = found
        now = clock()
        device = inventory.get_device(store, device_id, now, current.devices.stale_days)
        if device is None:
            return _unauthorised()
        profile = device_profile(store, current, _address(current), now)
        try:
            run = parse_run(data, suite, profile, current, device, now)
        except BadRun as exc:
            return _answer(400, error=exc.message, field=exc.field)
        try:
            run_id = record_and_alert(store, current, run)
        except CheckRecordError as exc:
            return _answer(400, error=str(exc), field=None)
        outcomes = [r.outcome.value for r in run.results]
        logger.info("check run %d from device %s (%s)", run_id, device_id, profile)
        return _answer(
            201,
            run_id=run_id,
            passed=outcomes.count("pass"),
            failed=outcomes.count("fail"),
            errors=outcomes.count("error"),
            results=[
                {"case": r.case_id, "outcome": r.outcome.value, "evidence": r.evidence}
                for r in run.results
            ],
        )

    return bp


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


__all__ = ["checks_blueprint", "device_profile", "parse_run"]

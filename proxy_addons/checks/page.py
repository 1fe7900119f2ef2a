"""The browser check page, on the portal: a termly filtering check from any device's browser.

For the devices a school can't install the agent on (iPads, Chromebooks, guests' laptops):
a member of staff opens `http://<portal host>/checks`, gives their name and the device type,
and the page tries each test URL of the suite for the profile the gateway puts this browser
in. A page can't read another site's answer, so for each case it first arms a probe
(checks/probes.py) and the gateway itself notes what it did with this browser's request; the
page adds what the browser saw (an answer, a network error, a time-out), and the gateway
judges the case with the shared `agent.check_suite.classify`. When every case is done the
run is recorded (checks/records.py, source "browser") with the browser and OS from its
User-Agent.

Served over plain http on purpose: from an https page a browser refuses to fetch the http
test URLs at all (mixed content), so an https visit is sent to the http address.

A run lives in memory (this gateway process: checks/browser_runs.py) until it is finished
and recorded; it can only be driven from the address that started it, and its token is
unguessable. JSON bodies are required, so another site can't post to it from a form (and a
cross-site JSON post needs a CORS preflight the portal never grants).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from flask import Flask, Response, abort, jsonify, redirect, request
from flask.typing import ResponseReturnValue

from agent.check_suite import CheckCase
from proxy_addons.checks.alerts import record_and_alert
from proxy_addons.checks.browser_runs import BrowserRun, BrowserRuns
from proxy_addons.checks.probes import BrowserSaw, ProbeBook, ProbeBusy, ProbeError, conclude
from proxy_addons.checks.records import CheckRecordError, CheckRun, result_for, term_at
from proxy_addons.checks.user_agent import browser_of, os_of
from proxy_addons.core.policy.check_suite_file import Suite, SuiteError, load_suite
from proxy_addons.core.policy.model import Policy
from proxy_addons.pages import blockpage
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

DEVICE_TYPES = (
    "Windows laptop or PC",
    "Mac",
    "Chromebook",
    "iPad",
    "iPhone",
    "Android tablet",
    "Android phone",
    "Linux PC",
    "Interactive whiteboard or display",
    "Guest or visitor device",
    "Other",
)
TIMEOUT_MS = 15_000  # the page's time-out for one test URL
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src *; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

Loaded = Callable[[], tuple[Policy, Suite] | None]  # the policy and suite in force, if any
Record = Callable[[CheckRun], int]  # stores a finished run, returns its id
ProfileOf = Callable[[str | None, str | None], str]  # (user, ip) -> profile name


def add_check_page(
    app: Flask,
    *,
    loaded: Loaded,
    profile_of: ProfileOf,
    record: Record,
    book: ProbeBook,
    who: Callable[[], tuple[str | None, str | None]],
    school: Callable[[], str],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    form_token: Callable[[], str] = lambda: "",
) -> BrowserRuns:
    """Add /checks to the portal app. `who` gives the (proxy user, client address);
    `form_token` the start form's CSRF token for them (the portal checks it on the post)."""
    runs = BrowserRuns()

    def page(name: str, status: int = 200, **values: Any) -> Response:
        body = blockpage.render_page(name, school=school(), **values)
        response = Response(body, status=status, mimetype="text/html")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Cache-Control"] = "no-store"
        return response

    def current() -> tuple[Policy, Suite]:
        found = loaded()
        if found is None:
            abort(503, "the school's check suite is not set up (policy 'checks:')")
        return found

    def own_run(token: str) -> BrowserRun:
        run = runs.get(token)
        _, ip = who()
        if run is None or not secrets.compare_digest(run.ip, ip or ""):
            abort(404)
        return run

    def json_body() -> dict[str, Any]:
        data = request.get_json(silent=True) if request.is_json else None
        if not isinstance(data, dict):
            abort(400, "a JSON object is needed")
        return data

    @app.get("/check")
    def checks_alias() -> ResponseReturnValue:
        return redirect("/checks", code=302)

    @app.get("/checks")
    def checks_start() -> ResponseReturnValue:
        if request.scheme == "https":  # see the module docstring: mixed content
            return redirect(f"http://{request.host}/checks", code=302)
        policy, suite = current()
        user, ip = who()
        profile = profile_of(user, ip)
        label = policy.profiles[profile].label if profile in policy.profiles else profile
        return page(
            "check_start.html",
            profile=profile,
            profile_label=label,
            case_count=len(suite.cases_for(profile)),
            suite_name=suite.name,
            device_types=DEVICE_TYPES,
            by=user or "",
            problem=None,
            form_token=form_token(),
        )

    @app.post("/checks")
    def checks_begin() -> ResponseReturnValue:
        policy, suite = current()
        user, ip = who()
        profile = profile_of(user, ip)
        by = " ".join((request.form.get("by") or "").split())[:100]
        device_type = (request.form.get("device_type") or "").strip()
        device_name = " ".join((request.form.get("device_name") or "").split())[:64] or None
        problem = None
        if len(by) < 2:
            problem = "Please give your name: the record says who ran the check."
        elif device_type not in DEVICE_TYPES:
            problem = "Please choose the type of device you are checking."
        elif not suite.cases_for(profile):
            problem = f"The check suite has no cases for the profile '{profile}'."
        if problem:
            label = policy.profiles[profile].label if profile in policy.profiles else profile
            return page(
                "check_start.html",
                400,
                profile=profile,
                profile_label=label,
                case_count=len(suite.cases_for(profile)),
                suite_name=suite.name,
                device_types=DEVICE_TYPES,
                by=by,
                problem=problem,
                form_token=form_token(),
            )
        run = BrowserRun(
            token=secrets.token_urlsafe(24),
            ip=ip or "",
            started_by=by,
            device_type=device_type,
            device_name=device_name,
            profile=profile,
            user_agent=(request.headers.get("User-Agent") or "")[:500],
            suite=suite.name,
            cases=suite.cases_for(profile),
            started_at=clock(),
            created=time.monotonic(),
        )
        runs.add(run)
        logger.info("browser check started by %s as profile %s", by, profile)
        return redirect(f"/checks/run/{run.token}", code=303)

    @app.get("/checks/run/<token>")
    def checks_run(token: str) -> Response:
        run = own_run(token)
        cases = [{"id": c.id, "category": c.category, "expect": c.expect.value} for c in run.cases]
        return page(
            "check_run.html",
            run=run,
            cases=cases,
            token=token,
            browser=browser_of(run.user_agent) or "unknown browser",
            os=os_of(run.user_agent) or "unknown OS",
        )

    @app.get("/checks/check.js")
    def checks_script() -> Response:
        body = (Path(__file__).parents[1] / "pages" / "static" / "check_run.js").read_bytes()
        response = Response(body, mimetype="text/javascript")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/checks/run/<token>/arm")
    def checks_arm(token: str) -> ResponseReturnValue:
        run = own_run(token)
        case = _case(run, json_body())
        try:
            book.arm(f"{token}/{case.id}", run.ip, case.url)
        except ProbeBusy as exc:
            return jsonify(error=str(exc)), 409
        except ProbeError as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(url=case.url, timeout_ms=TIMEOUT_MS)

    @app.post("/checks/run/<token>/result")
    def checks_result(token: str) -> ResponseReturnValue:
        run = own_run(token)
        data = json_body()
        case = _case(run, data)
        try:
            saw = BrowserSaw(str(data.get("saw")))
        except ValueError:
            return jsonify(error="saw should be response, error or timeout"), 400
        detail = str(data.get("detail") or "")[:200]
        probe = book.settle(f"{token}/{case.id}")
        if probe is None:
            return jsonify(error="this case was not armed (or waited too long): try again"), 409
        seen = conclude(probe, saw, detail, book.tunnel_open(run.ip, probe.hosts))
        result = result_for(case, seen)
        run.results[case.id] = result
        return jsonify(case=case.id, outcome=result.outcome.value, evidence=result.evidence)

    @app.post("/checks/run/<token>/finish")
    def checks_finish(token: str) -> ResponseReturnValue:
        run = own_run(token)
        json_body()
        with run.finishing:
            return _finish(run)

    def _finish(run: BrowserRun) -> ResponseReturnValue:
        if run.run_id is None:
            missing = [c.id for c in run.cases if c.id not in run.results]
            if missing:
                return jsonify(error=f"cases not tried yet: {', '.join(missing)}"), 409
            policy, _ = current()
            term = term_at(policy, run.started_at)
            try:
                run.run_id = record(
                    CheckRun(
                        started_at=run.started_at,
                        finished_at=clock(),
                        started_by=run.started_by,
                        source="browser",
                        profile=run.profile,
                        results=tuple(run.results[c.id] for c in run.cases),
                        suite=run.suite,
                        device_id=run.device_name,
                        device_type=run.device_type,
                        os=os_of(run.user_agent),
                        browser=browser_of(run.user_agent),
                        term=term.name if term else None,
                    )
                )
            except CheckRecordError as exc:
                return jsonify(error=str(exc)), 400
            except sa.exc.DBAPIError as exc:  # the store is down: the run is still here
                logger.error("browser check not recorded: %s", exc.orig)
                return jsonify(error="the gateway can't store the check just now"), 503
            logger.info("browser check recorded as run %s", run.run_id)
        outcomes = [r.outcome.value for r in run.results.values()]
        return jsonify(
            run_id=run.run_id,
            passed=outcomes.count("pass"),
            failed=outcomes.count("fail"),
            errors=outcomes.count("error"),
        )

    return runs


def _case(run: BrowserRun, data: dict[str, Any]) -> CheckCase:
    wanted = data.get("case")
    case = next((c for c in run.cases if c.id == wanted), None)
    if case is None:
        abort(400, "no such case in this run")
    return case


# -- wiring into the portal ------------------------------------------------------------------


class Gateway(Protocol):
    """What the check page reads of the running gateway (its services)."""

    @property
    def policy(self) -> Policy | None: ...
    @property
    def store(self) -> Store | None: ...
    @property
    def probes(self) -> ProbeBook: ...
    def profile_for(self, user: str | None, ip: str | None) -> str: ...


class _SuiteCache:
    """The suite file named by the policy, read again only when it changes."""

    def __init__(self) -> None:
        self._key: tuple[Path, int] | None = None
        self._suite: Suite | None = None

    def get(self, path: Path) -> Suite:
        key = (path, path.stat().st_mtime_ns)
        if key != self._key or self._suite is None:
            self._suite, self._key = load_suite(path), key
        return self._suite


def suite_path(policy: Policy) -> Path | None:
    """The check suite the policy names (its `checks:` section)."""
    return policy.checks.suite


def wire(
    app: Flask,
    gateway: Gateway,
    who: Callable[[], tuple[str | None, str | None]],
    school: Callable[[], str],
    form_token: Callable[[], str],
) -> BrowserRuns:
    """The check page on the portal app, fed from the running gateway's services."""
    cache = _SuiteCache()

    def loaded() -> tuple[Policy, Suite] | None:
        policy = gateway.policy
        path = suite_path(policy) if policy is not None else None
        if policy is None or path is None:
            return None
        try:
            return policy, cache.get(path)
        except (OSError, SuiteError) as exc:
            logger.error("check page: the suite can't be read: %s", exc)
            return None

    def record(run: CheckRun) -> int:
        policy, store = gateway.policy, gateway.store
        if store is None or policy is None:
            raise CheckRecordError("the gateway has no store or policy to record the check in")
        return record_and_alert(store, policy, run)  # alerts on failed cases

    return add_check_page(
        app,
        loaded=loaded,
        profile_of=gateway.profile_for,
        record=record,
        book=gateway.probes,
        who=who,
        school=school,
        form_token=form_token,
    )


__all__ = ["DEVICE_TYPES", "add_check_page", "suite_path", "wire"]

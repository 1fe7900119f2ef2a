"""`schoolgate-agent checks --by NAME`: the termly filtering check from this device.

The agent fetches the suite from the gateway's device API (the cases for the profile the
gateway puts this device in), tries each URL over the device's own network path exactly as
its browser would (agent/net_path.py: PAC, proxy settings, or direct when the school
intercepts transparently), judges what it saw with the shared `agent.check_suite` functions, prints
the table and posts the run back with its evidence. The gateway judges the run again itself
and records it (source "agent", this device's id and OS).

Before the first test URL the agent opens a check window on the gateway
(`POST /api/v1/checks/windows`): for a few minutes the suite's URLs from this device's address
raise no monitoring alerts (a canary is nobody's doing); posting the run closes it. Without a
window (an older gateway, an error) the run goes ahead and says its requests may alert.

The device API is reached directly with the pinned CA (like every agent call), never through
the proxy: the test URLs are what goes the browser's way, not the agent's own reporting.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.check_suite import CheckCase, Observation, Outcome, classify
from agent.client import Client, ClientError
from agent.client_cli import DEFAULT_STATE
from agent.net_path import ProxyFinder, fetch

SUITE_PATH = "/api/v1/checks"
RUNS_PATH = "/api/v1/checks/runs"
WINDOWS_PATH = "/api/v1/checks/windows"


@dataclass(frozen=True)
class Tried:
    case: CheckCase
    observation: Observation
    outcome: Outcome
    route: str


def fetch_suite(client: Client) -> tuple[str, str, list[CheckCase]]:
    """The suite's name, this device's profile and its cases, from the gateway."""
    status, answer = client.call("GET", SUITE_PATH)
    if status != 200:
        raise ClientError(f"the gateway did not give the suite ({status}): {answer.get('error')}")
    try:
        cases = [CheckCase.from_json(c) for c in answer["cases"]]
        return str(answer["name"]), str(answer["profile"]), cases
    except (KeyError, TypeError, ValueError) as exc:
        raise ClientError("the gateway's suite was not understood") from exc


def open_window(client: Client, cases: int, timeout: float) -> str | None:
    """Announce the run and wait until the gateway applies it; None if the window is open,
    else why not (the run goes ahead)."""
    seconds = int(cases * timeout) + 60  # every case timing out, and some; the gateway caps it
    try:
        status, answer = client.call("POST", WINDOWS_PATH, {"seconds": seconds})
    except ClientError as exc:
        return str(exc)
    if status != 201:
        return f"{status}: {answer.get('error')}"
    starts_in = answer.get("starts_in")
    if isinstance(starts_in, int | float) and 0 < starts_in <= 30:
        time.sleep(starts_in)  # the gateways read open windows every few seconds
    return None


def close_window(client: Client) -> None:
    """A run given up: end its window now rather than at its expiry (best effort)."""
    try:
        client.call("DELETE", WINDOWS_PATH)
    except ClientError:
        pass


def run_cases(
    cases: list[CheckCase], finder: ProxyFinder, context: ssl.SSLContext, timeout: float
) -> list[Tried]:
    tried = []
    for case in cases:
        seen, route = fetch(case.url, finder, context, timeout)
        tried.append(Tried(case, seen, classify(case, seen), route))
    return tried


def run_body(
    suite: str,
    profile: str,
    by: str,
    started: datetime,
    finished: datetime,
    finder: ProxyFinder,
    tried: list[Tried],
    device_type: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "suite": suite,
        "profile": profile,
        "started_by": by,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "network_path": finder.source[:200],
        "results": [
            {
                "case": t.case.id,
                "outcome": t.outcome.value,
                "observation": {
                    **t.observation.to_json(),
                    "evidence": f"{t.observation.evidence} ({t.route})"[:1000],
                },
            }
            for t in tried
        ],
    }
    if device_type:
        body["device_type"] = device_type
    return body


def _table(profile: str, source: str, tried: list[Tried]) -> str:
    lines = [f"profile {profile}; network path: {source}"]
    for t in tried:
        lines.append(f"  {t.outcome.value.upper():6} {t.case.id:28} {t.case.expect.value:11}")
        lines.append(f"  {'':6} {t.observation.evidence} ({t.route})")
    return "\n".join(lines)


def trust_context(extra: str | None) -> ssl.SSLContext:
    """The system's CAs (SSL_CERT_FILE counts), plus `extra`: what the device's browser trusts."""
    context = ssl.create_default_context()
    if extra:
        context.load_verify_locations(cafile=extra)
    return context


def cmd_checks(args: argparse.Namespace) -> int:
    by = " ".join((args.by or "").split())
    if len(by) < 2:
        print("agent: say who is running the check: --by 'Your Name'", file=sys.stderr)
        return 3
    client = Client(Path(args.state))
    try:
        suite, profile, cases = fetch_suite(client)
        finder = ProxyFinder(pac=args.pac, direct=args.direct)
        context = trust_context(args.trust)
    except (ClientError, OSError, ssl.SSLError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 3
    not_open = open_window(client, len(cases), args.timeout)
    if not_open:
        print(
            f"agent: no check window on the gateway ({not_open}): "
            "the test URLs may raise monitoring alerts",
            file=sys.stderr,
        )
    started = datetime.now(UTC)
    try:
        tried = run_cases(cases, finder, context, args.timeout)
    except BaseException:  # e.g. Ctrl-C: the run won't be posted, so its window is closed here
        close_window(client)
        raise
    finished = datetime.now(UTC)
    body = run_body(suite, profile, by, started, finished, finder, tried, args.device_type)
    if args.format == "json":
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        print(_table(profile, finder.source, tried))
    try:
        status, answer = client.call("POST", RUNS_PATH, body)
    except ClientError as exc:
        print(f"agent: the run was not recorded: {exc}", file=sys.stderr)
        close_window(client)
        return 3
    if status != 201:
        where = answer.get("field")
        print(
            f"agent: the gateway refused the run ({status}): {answer.get('error')}"
            + (f" [{where}]" if where else ""),
            file=sys.stderr,
        )
        return 3
    print(
        f"recorded as check run {answer.get('run_id')}: {answer.get('passed')} passed, "
        f"{answer.get('failed')} failed, {answer.get('errors')} could not be judged"
    )
    if answer.get("failed"):
        return 1
    return 2 if answer.get("errors") else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "checks",
        help="run the termly filtering check from this device and record it on the gateway",
        description="Exit status: 0 all passed, 1 a case failed, 2 some could not be judged, "
        "3 the check could not be run or recorded.",
    )
    p.add_argument("--by", required=True, help="the member of staff running the check")
    p.add_argument("--state", default=DEFAULT_STATE)
    p.add_argument("--pac", help="a PAC file (URL or path); default: the system's, if any")
    p.add_argument("--direct", action="store_true", help="ignore proxy settings (transparent)")
    p.add_argument("--trust", help="a CA file the device's browser trusts beyond the system's")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds per test URL")
    p.add_argument("--device-type", help="e.g. 'Windows laptop or PC' (default: from the OS)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_checks)


__all__ = [
    "add_parser",
    "cmd_checks",
    "close_window",
    "fetch_suite",
    "open_window",
    "run_body",
    "run_cases",
]

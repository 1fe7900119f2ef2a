"""`schoolgate checks run|list|show|action|due|report`: termly filtering checks (docs/checks.md)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from agent.check_suite import CheckCase
from proxy_addons.checks.alerts import record_and_alert
from proxy_addons.checks.identity import read_token, token_path
from proxy_addons.checks.records import (
    CaseResult,
    CheckRecordError,
    CheckRun,
    add_action,
    get_run,
    load_runs,
    term_at,
)
from proxy_addons.checks.report import build_checks_report, write_checks_report
from proxy_addons.checks.runner import GatewayTarget, run_cases, this_machine
from proxy_addons.checks.schedule import check_status, remind_if_due
from proxy_addons.cli.common import open_policy_and_store
from proxy_addons.core.policy.check_suite_file import Suite, SuiteError, load_suite
from proxy_addons.core.policy.load import PolicyError
from proxy_addons.core.policy.model import Policy
from proxy_addons.record.term_report import find_term


def _fail(message: str, code: int = 1) -> int:
    print(f"schoolgate: {message}", file=sys.stderr)
    return code


def _suite(args: argparse.Namespace, policy: Policy) -> Suite:
    path = Path(args.suite) if args.suite else policy.checks.suite
    if path is None:
        raise SuiteError([])  # said by the caller
    return load_suite(path)


def _when(policy: Policy, at: datetime) -> str:
    return at.astimezone(policy.timezone).strftime("%Y-%m-%d %H:%M")


def cmd_checks_run(args: argparse.Namespace) -> int:
    try:
        policy, store = open_policy_and_store(args)
    except PolicyError as exc:
        return _fail(str(exc))
    if args.profile not in policy.profiles:
        return _fail(f"no profile '{args.profile}' (profiles: {', '.join(policy.profiles)})")
    if not args.suite and policy.checks.suite is None:
        return _fail("no suite: give --suite FILE or set checks.suite in the policy")
    try:
        suite = _suite(args, policy)
    except SuiteError as exc:
        return _fail(str(exc))
    var = Path(args.var)
    try:
        token = read_token(var)
    except OSError as exc:
        return _fail(
            f"cannot read the gateway's check token {token_path(var)} ({exc.strerror}): run this "
            "on the gateway, as its user, with the --var it runs with"
        )
    ca = Path(args.ca) if args.ca else var / "ca" / "mitmproxy-ca-cert.pem"
    cases = suite.cases_for(args.profile)
    auth = None
    if args.proxy_user:
        password = os.environ.get("SCHOOLGATE_CHECK_PROXY_PASSWORD")
        if password is None:
            password = getpass.getpass(f"Proxy password for {args.proxy_user}: ")
        auth = (args.proxy_user, password)
    target = GatewayTarget(
        args.proxy, ca if ca.exists() else None, args.profile, token, args.timeout, auth
    )
    print(
        f"Checking {len(cases)} cases of '{suite.name}' as profile {args.profile} via {args.proxy}"
    )

    def show(case: CheckCase, result: CaseResult) -> None:
        print(f"  {result.outcome.value.upper():<5} {case.id:<28} {result.evidence}", flush=True)

    started = datetime.now(UTC)
    results = run_cases(target, cases, show)
    finished = datetime.now(UTC)
    term = term_at(policy, started)
    run = CheckRun(
        started_at=started,
        finished_at=finished,
        started_by=args.by,
        source="gateway",
        profile=args.profile,
        results=results,
        suite=suite.name,
        term=term.name if term else None,
        **this_machine(),
    )
    try:
        run_id = record_and_alert(store, policy, run)
    except CheckRecordError as exc:
        return _fail(str(exc))
    passed, failed = len([r for r in results if r.outcome.value == "pass"]), len(run.failures)
    errors = len(results) - passed - failed
    print(
        f"Run {run_id} recorded{f' for {term.name}' if term else ' (outside any term)'}: "
        f"{passed} passed, {failed} failed, {errors} could not be judged."
    )
    if failed:
        print("The IT provider and the DSL have been alerted; record what is done with:")
        print(f"  schoolgate checks action {run_id} --case CASE --by NAME --text '...'")
    return 2 if failed else (3 if errors else 0)


def cmd_checks_list(args: argparse.Namespace) -> int:
    try:
        policy, store = open_policy_and_store(args)
    except PolicyError as exc:
        return _fail(str(exc))
    runs = load_runs(store, term=args.term, limit=args.limit)
    if not runs:
        print("No check runs recorded" + (f" in {args.term}." if args.term else "."))
        return 0
    print(f"{'run':>5}  {'when':<16} {'by':<16} {'from':<8} {'device':<14} {'profile':<12} result")
    for s in runs:
        r = s.run
        print(
            f"{s.id:>5}  {_when(policy, r.started_at):<16} {r.started_by[:16]:<16} "
            f"{r.source:<8} {(r.device_type or '-')[:14]:<14} {r.profile[:12]:<12} "
            f"{s.passed} pass, {s.failed} fail, {s.errors} error, {len(s.actions)} action(s)"
        )
    return 0


def cmd_checks_show(args: argparse.Namespace) -> int:
    try:
        policy, store = open_policy_and_store(args)
    except PolicyError as exc:
        return _fail(str(exc))
    stored = get_run(store, args.run)
    if stored is None:
        return _fail(f"there is no check run {args.run}")
    r = stored.run
    print(f"run {stored.id}: {r.suite}, profile {r.profile}, term {r.term or '-'}")
    print(f"  by {r.started_by} from {r.source}, {_when(policy, r.started_at)}")
    device = ", ".join(x for x in (r.device_type, r.device_id, r.os, r.browser) if x)
    print(f"  device: {device or '-'}")
    for res in r.results:
        print(
            f"  {res.outcome.value.upper():<5} {res.case_id:<28} {res.category:<20} {res.evidence}"
        )
    for a in stored.actions:
        print(f"  action {_when(policy, a.at)} {a.author} [{a.case_id or 'run'}]: {a.text}")
    return 0


def cmd_checks_action(args: argparse.Namespace) -> int:
    try:
        _, store = open_policy_and_store(args)
        action_id = add_action(store, args.run, args.case, args.by, args.text)
    except (PolicyError, CheckRecordError) as exc:
        return _fail(str(exc))
    print(f"Action {action_id} recorded on run {args.run}.")
    return 0


def cmd_checks_due(args: argparse.Namespace) -> int:
    """Is this term's check due and not done? With --remind, remind the named people now."""
    try:
        policy, store = open_policy_and_store(args)
    except PolicyError as exc:
        return _fail(str(exc))
    now = datetime.now(UTC)
    due = check_status(store, policy, now.astimezone(policy.timezone).date())
    if due is None:
        print("No termly check is due today (before the due date or outside a term).")
        return 0
    if due.done:
        print(f"The check for {due.term.name} is done: every profile has a run.")
        return 0
    print(
        f"The check for {due.term.name} is due (since {due.due_on}); "
        f"not yet checked: {', '.join(sorted(due.missing))}."
    )
    if args.remind:
        sent = remind_if_due(store, policy, now)
        print("Reminder queued." if sent else "No reminder sent (already today, or nobody named).")
    return 3


def cmd_checks_report(args: argparse.Namespace) -> int:
    try:
        policy, store = open_policy_and_store(args)
        term = find_term(policy, args.term)
    except (PolicyError, ValueError) as exc:
        return _fail(str(exc))
    report = build_checks_report(store, policy, term)
    for path in write_checks_report(report, policy, Path(args.out)):
        print(path)
    return 0

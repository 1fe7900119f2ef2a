"""`schoolgate-agent`: subcommands on one parser, so `enrol` and `run` can join `check`."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from agent.checks import run_checks
from agent.checks.base import Context
from agent.checks.memory import Memory
from agent.checks.thresholds import Thresholds
from agent.client import Client
from agent.client_cli import DEFAULT_STATE
from agent.client_cli import add_parsers as add_client_parsers
from agent.device_facts import current_platform, gather
from agent.report import DeviceReport
from agent.runner import FixtureRunner, Runner, SystemRunner
from agent.tunnel.commands import add_parser as add_tunnel


def agent_version() -> str:
    try:
        return metadata.version("schoolgate")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_report(
    runner: Runner,
    platform: str,
    thresholds: Thresholds | None = None,
    device_id: str | None = None,
    now: datetime | None = None,
    memory: Memory | None = None,
) -> DeviceReport:
    """Run the platform's checks and wrap them with the device's facts; `memory` is what the
    checks remember between reports (first-seen updates, the last software list)."""
    now = now or datetime.now(UTC)
    ctx = Context(runner, thresholds or Thresholds(), now, memory or Memory())
    results = tuple(run_checks(platform, ctx))
    facts = gather(runner, platform)
    fallback = re.sub(r"[^A-Za-z0-9._:-]", "-", facts.hostname)[:64].lstrip("-._:") or "device"
    return DeviceReport(
        device_id=device_id or fallback,
        hostname=facts.hostname,
        os_name=platform,
        os_version=facts.os_version,
        agent_version=agent_version(),
        generated_at=now,
        results=results,
        serial=facts.serial,
        user=facts.user,
        ips=facts.ips,
        macs=facts.macs,
        os_release=facts.os_release,
    )


def _table(report: DeviceReport) -> str:
    lines = [
        f"{report.hostname} ({report.os_release or report.os_name}) "
        f"{'COMPLIANT' if report.compliant else 'NOT COMPLIANT'}"
    ]
    for r in report.results:
        lines.append(f"  {r.status.upper():8} {r.id:16} {r.reason}")
        for key, value in r.evidence.items():
            lines.append(f"  {'':8} {'':16}   {key}: {json.dumps(value, ensure_ascii=False)[:200]}")
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    runner: Runner = SystemRunner(args.root)
    platform, now = args.platform or current_platform(), None
    if args.fixture:  # a recorded device: its platform and clock come with it
        runner = FixtureRunner(args.fixture)
        meta = json.loads((Path(args.fixture) / "meta.json").read_text())
        platform, now = args.platform or meta["platform"], datetime.fromisoformat(meta["now"])
    thresholds = Client(Path(args.state)).thresholds()  # the school's, once the gateway gave them
    # what the checks remembered at the last report; read, never saved by a check by hand
    memory = Memory() if args.fixture else Memory.load(Path(args.state))
    report = build_report(runner, platform, thresholds, now=now, memory=memory)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(_table(report))
    return 0 if report.compliant else 1


# The termly filtering check (agent/filter_checks.py) carries HTTP and PAC libraries (pypac,
# requests: about 6 MB resident) that the service's `check` and `run` never use, so its module
# is loaded only when `checks` is the command (bench/agent_bench.py measures the difference).
FILTER_CHECKS = "agent.filter_checks"
FILTER_CHECKS_HELP = "run the termly filtering check from this device and record it on the gateway"


def parser(with_filter_checks: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="schoolgate-agent", description="Schoolgate device agent")
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="run the compliance checks here and print them")
    check.add_argument("--format", choices=("table", "json"), default="table")
    check.add_argument("--root", default="/", help="filesystem root to read (e.g. a mounted image)")
    check.add_argument(
        "--state", default=DEFAULT_STATE, help="where the gateway's thresholds were kept"
    )
    check.add_argument("--platform", choices=("linux", "macos", "windows"), help=argparse.SUPPRESS)
    check.add_argument("--fixture", help=argparse.SUPPRESS)  # a recorded device, for demos
    check.set_defaults(func=cmd_check)
    # enrol, send, run: talking to the gateway (agent/client_cli.py).
    add_client_parsers(
        sub,
        build=lambda t, m: build_report(
            SystemRunner("/"), current_platform(), t, memory=m
        ).to_json(),
    )
    # checks: the termly filtering check over this device's network path (agent/filter_checks.py).
    if with_filter_checks:
        importlib.import_module(FILTER_CHECKS).add_parser(sub)
    else:  # listed in --help; its own options come with its module
        sub.add_parser("checks", help=FILTER_CHECKS_HELP)
    # tunnel setup|status|up|down: the off-site tunnel by hand (agent/tunnel/commands.py).
    add_tunnel(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(with_filter_checks=bool(argv) and argv[0] == "checks").parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

"""The agent's `enrol`, `send` and `run` subcommands (added to agent/cli.py's parser).

`run` also keeps the device's off-site tunnel, when the gateway offers one (agent/tunnel/):
each round brings it where the place calls for, and the report carries its state.

The enrolment secret is read from a file or standard input, never from the command line,
where any local user could see it in the process list.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.checks.memory import Memory
from agent.checks.thresholds import Thresholds
from agent.client import Client, ClientError
from agent.device_facts import current_platform
from agent.report import ReportError, TunnelState
from agent.tunnel.service import keeper_for, setup
from agent.tunnel.wgconf import INTERFACE

logger = logging.getLogger(__name__)

DEFAULT_STATE = "/var/lib/schoolgate-agent"
TUNNEL_SECONDS = 15.0  # between rounds, the tunnel is kept this often (where am I, up/down)
BuildReport = Callable[[], dict[str, Any]]  # the current report's JSON form (agent/cli.py)
# The same, judged by the given thresholds (the ones the gateway gave last, `Client.thresholds`)
# with the checks' memory between reports (agent/checks/memory.py).
BuildJudged = Callable[[Thresholds, Memory], dict[str, Any]]
KeepTunnel = Callable[[], TunnelState | None]  # one round of the tunnel's keeper


def cmd_enrol(args: argparse.Namespace) -> int:
    source = sys.stdin if args.secret_file == "-" else open(args.secret_file)  # noqa: SIM115
    with source:
        secret = source.readline().strip()
    if not secret:
        print("agent: the enrolment secret is empty", file=sys.stderr)
        return 1
    client = Client(Path(args.state), args.gateway, Path(args.ca))
    try:
        device_id = client.enrol(
            secret, args.hostname or socket.gethostname(), device_id=args.device_id
        )
    except ClientError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 1
    print(f"enrolled as {device_id}")
    _set_up_tunnel(client)
    return 0


def _set_up_tunnel(client: Client) -> None:
    """After enrolling: take the tunnel the gateway offers, if it offers one. Said on
    standard error, so standard output stays the one line `enrolled as <id>`."""
    try:
        config = setup(client)
    except (ClientError, ReportError) as exc:
        note = f"enrolled, but the tunnel isn't set up ({exc}): run `tunnel setup`"
    else:
        note = (
            "the gateway offers no off-site tunnel: none set up"
            if config is None
            else f"tunnel set up: address {config.address}, gateway {config.endpoint}"
        )
    print(f"agent: {note}", file=sys.stderr)


def cmd_send(args: argparse.Namespace) -> int:
    """Send one report (a JSON file, or `-` for standard input), or just the spool."""
    client = Client(Path(args.state))
    try:
        if args.report:
            text = sys.stdin.read() if args.report == "-" else Path(args.report).read_text()
            result = client.send(_as_this_device(client, json.loads(text)))
        else:
            result = client.flush()
    except (ClientError, OSError, ValueError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 1
    print(f"sent {result.sent}, refused {result.rejected}, waiting {result.waiting}")
    return 0 if result.rejected == 0 else 2


def _as_this_device(client: Client, report: dict[str, Any]) -> dict[str, Any]:
    """The report under the device id the gateway gave at enrolment."""
    if client.device_id is None:
        raise ClientError("this device is not enrolled: run `enrol` first")
    return {**report, "device_id": client.device_id}


def _fingerprint(report: dict[str, Any]) -> str:
    """What the report says, leaving out when it was made: a change means send now."""
    body = {k: v for k, v in report.items() if k != "generated_at"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def run_loop(
    client: Client,
    build: BuildReport,
    *,
    check_every: float,
    report_every: float,
    rounds: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    tunnel: KeepTunnel | None = None,
    tunnel_every: float = TUNNEL_SECONDS,
) -> None:
    """Check every `check_every` seconds; report on a change or after `report_every`.

    With `tunnel`, each round first keeps the tunnel and puts its state into the report (a
    report made while the tunnel is down waits in the spool until it is back); between
    rounds it is kept every `tunnel_every` seconds too, so a laptop that leaves school gets
    its tunnel (and, failing closed, its firewall) within seconds, not at the next check."""
    last_sent, last_print = 0.0, ""
    done = 0
    while rounds is None or done < rounds:
        try:
            state = _kept(tunnel)
            report = _as_this_device(client, build())
            if state is not None:
                report["tunnel"] = state.to_json()
            print_ = _fingerprint(report)
            if print_ != last_print or time.monotonic() - last_sent >= report_every:
                result = client.send(report)
                last_sent, last_print = time.monotonic(), print_
                logger.info("report: sent %d, waiting %d", result.sent, result.waiting)
            else:
                client.flush()  # anything kept from earlier
        except ClientError as exc:
            logger.error("%s", exc)
        done += 1
        if rounds is None or done < rounds:
            _wait(check_every, sleep, tunnel, tunnel_every)


def _wait(
    seconds: float, sleep: Callable[[float], None], tunnel: KeepTunnel | None, every: float
) -> None:
    """Sleep until the next round, keeping the tunnel every `every` seconds meanwhile."""
    if tunnel is None or every <= 0:
        sleep(seconds)
        return
    waited = 0.0
    while waited < seconds:
        step = min(every, seconds - waited)
        sleep(step)
        waited += step
        if waited < seconds:
            _kept(tunnel)


def _kept(tunnel: KeepTunnel | None) -> TunnelState | None:
    """One round of the tunnel's keeper; a failure is logged, never stops the reports."""
    if tunnel is None:
        return None
    try:
        return tunnel()
    except Exception:  # a broken tunnel must not silence the device's reports
        logger.exception("keeping the tunnel failed this round")
        return None


def add_parsers(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    build: BuildJudged | None = None,
) -> None:
    """Add `enrol` and `send`, and `run` when given the function that builds a report."""
    enrol = sub.add_parser("enrol", help="enrol this device with the school's gateway")
    enrol.add_argument("--gateway", required=True, help="e.g. https://gateway.school.example:8081")
    enrol.add_argument("--ca", required=True, help="the gateway's CA certificate (PEM): pinned")
    enrol.add_argument("--secret-file", required=True, help="file with the secret, or - (stdin)")
    enrol.add_argument("--hostname", help="default: this machine's name")
    enrol.add_argument(
        "--device-id", help="enrol again under this id (revoked, or to change the token)"
    )
    enrol.add_argument("--state", default=DEFAULT_STATE)
    enrol.set_defaults(func=cmd_enrol)

    send = sub.add_parser("send", help="send a report (file or -), then any kept ones")
    send.add_argument("report", nargs="?", help="report JSON file, - for stdin; none: the spool")
    send.add_argument("--state", default=DEFAULT_STATE)
    send.set_defaults(func=cmd_send)

    if build is None:
        return
    run = sub.add_parser("run", help="check and report on a schedule and on changes")
    run.add_argument("--state", default=DEFAULT_STATE)
    run.add_argument("--check-minutes", type=float, default=5.0)
    run.add_argument("--report-minutes", type=float, default=15.0)
    run.add_argument("--once", action="store_true", help="check and report once, then stop")
    run.add_argument("--interface", default=INTERFACE, help="the tunnel's interface name")
    run.add_argument("--no-tunnel", action="store_true", help="leave the tunnel alone")
    run.add_argument(
        "--tunnel-seconds",
        type=float,
        default=TUNNEL_SECONDS,
        help="how often the tunnel is kept between checks (leaving school is noticed this fast)",
    )

    def cmd_run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        client = Client(Path(args.state))
        if client.device_id is None:
            print("agent: this device is not enrolled: run `enrol` first", file=sys.stderr)
            return 1
        keeper = None if args.no_tunnel else keeper_for(client, current_platform(), args.interface)
        rounds = [0]
        memory = Memory.load(client.state_dir)

        def judged() -> dict[str, Any]:
            report = build(client.thresholds(), memory)
            try:  # kept with the report: "new since the last report" moves on from here
                memory.save(client.state_dir)
            except OSError as exc:
                logger.error("check memory not saved: %s", exc)
            return report

        def keep() -> TunnelState | None:
            if keeper is None:
                return None
            rounds[0] += 1
            return keeper.tick(refresh=rounds[0] == 1)  # the policy may have changed meanwhile

        try:
            run_loop(
                client,
                judged,
                check_every=args.check_minutes * 60,
                report_every=args.report_minutes * 60,
                rounds=1 if args.once else None,
                tunnel=keep,
                tunnel_every=args.tunnel_seconds,
            )
        except KeyboardInterrupt:
            pass
        return 0

    run.set_defaults(func=cmd_run)


__all__ = ["add_parsers", "run_loop"]

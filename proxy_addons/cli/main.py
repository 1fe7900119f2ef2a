"""`schoolgate`: run the gateway, check and explain policies, show status."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.core.decide import Identity, decide, resolve_profile
from proxy_addons.core.hosts import HostError, canonical_host, canonical_url, valid_authority
from proxy_addons.core.lists.sources import ListSourceError, iter_domains, iter_urls
from proxy_addons.core.names import Names, decide_names
from proxy_addons.core.pipeline import after_filter
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.runtime import PolicyLoadError, load_all

DEFAULT_POLICY = os.environ.get("SCHOOLGATE_POLICY", "policies/school.yaml")
DEFAULT_VAR = os.environ.get("SCHOOLGATE_VAR", "var")


def _fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    if args.workers != 1 and args.worker_index is None:
        from proxy_addons.cli.workers import run_supervised

        return run_supervised(args)
    if args.worker_index is not None:
        from proxy_addons.ops.workers import enable_reuse_port

        enable_reuse_port()
    return _run_gateway(args)


def _run_gateway(args: argparse.Namespace) -> int:
    from mitmproxy import exceptions, options
    from mitmproxy.tools.dump import DumpMaster

    from proxy_addons.gateway import hook_dispatch
    from proxy_addons.gateway.chain import gateway_addons

    try:
        policy = load_policy(Path(args.policy))
    except PolicyError as exc:
        return _fail(f"Schoolgate cannot start: {exc}")
    var = Path(args.var)
    from proxy_addons.ops import school_ca

    if school_ca.ensure(var / "ca", policy.school):  # a CA named for the school, not "mitmproxy"
        print(f"Created the school's CA in {var / 'ca'} (schoolgate ca show)", flush=True)
    settings: dict[str, object] = {
        "listen_host": args.listen_host,
        "listen_port": args.listen_port,
        "confdir": str(var / "ca"),
        "connection_strategy": "lazy",
        "onboarding": False,
        "schoolgate_policy": str(Path(args.policy).resolve()),
        "schoolgate_var": str(var.resolve()),
    }

    async def main() -> int:
        # As mitmdump does: the root logger passes everything; termlog filters by verbosity.
        logging.getLogger().setLevel(logging.DEBUG)
        for noisy in ("tornado", "asyncio", "hpack", "quic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        master = DumpMaster(options.Options(), with_termlog=True, with_dumper=False)
        master.addons.add(*gateway_addons())
        hook_dispatch.install(master.addons)  # skip add-ons without the hook (hook_dispatch.py)
        try:
            master.options.update(**settings)
            master.options.set(*(args.set or []))  # "name=value", parsed by the option's type
        except (exceptions.OptionsError, KeyError) as exc:
            print(exc, file=sys.stderr)
            return 1
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, master.shutdown)
        print(
            f"Schoolgate for {policy.school} on {args.listen_host}:{args.listen_port}", flush=True
        )
        await master.run()
        return 0

    return asyncio.run(main())


def cmd_policy_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(Path(args.file))
    except PolicyError as exc:
        return _fail(str(exc))
    total = 0
    for category in policy.categories.values():
        count = 0
        try:
            for source in category.sources.sources:
                if source.kind in ("ut1", "domains", "hosts"):
                    count += sum(1 for _ in iter_domains(source))
                if source.kind in ("ut1", "urls"):
                    count += sum(1 for _ in iter_urls(source))
        except ListSourceError as exc:
            return _fail(f"{exc}")
        total += count
        print(f"  category {category.name:<20} {count:>9} entries  ({category.label})")
    tier = policy.illegal
    print(f"  illegal tier: {len(tier.exact)} exact, {len(tier.prefixes)} prefix entries")
    print(
        f"{policy.path}: OK: {len(policy.profiles)} profiles, {len(policy.categories)} "
        f"categories, {total} list entries, default profile '{policy.identities.default_profile}'"
    )
    return 0


def cmd_policy_explain(args: argparse.Namespace) -> int:
    try:
        loaded = load_all(Path(args.policy), Path(args.var) / "index")
    except PolicyLoadError as exc:
        return _fail(str(exc))
    when = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=loaded.policy.timezone)
    target = args.url if "://" in args.url else f"https://{args.url}"
    try:
        url = canonical_url(target)
    except HostError as exc:
        return _fail(str(exc))
    path = url.path + (f"?{url.query}" if url.query else "")
    identity = Identity(args.user, tuple(args.group or ()), args.ip)
    request_path = None if args.host_only else path
    try:  # the other names a request may carry: decided too, as the gateway does
        claimed = [valid_authority(args.host_header)[0]] if args.host_header else []
        claimed += [canonical_host(args.sni)] if args.sni else []
    except HostError as exc:
        return _fail(f"the gateway would refuse this request (400): {exc}")
    decision = decide_names(
        lambda request: decide(loaded.policy, loaded.index, identity, request, when),
        Names(url.host, tuple(claimed)),
        request_path,
        url.scheme,
    )
    # Then what the gateway's later add-ons do with it: circumvention and safe search.
    profile, _ = resolve_profile(loaded.policy, identity)
    decision, enforced = after_filter(decision, profile, request_path)
    print(f"at:        {when.isoformat()}")
    print(decision.explain())
    if enforced:
        print(f"enforced:  {enforced}")
    return 0 if not decision.blocked else 3


def cmd_status(args: argparse.Namespace) -> int:
    """The gateway's state: 0 running and ok, 1 not running, 2 a problem (also a status
    that is not a gateway's)."""
    from proxy_addons.ops.status import (
        StatusError,
        age,
        found_problems,
        is_running,
        read_status,
    )

    var = Path(args.var)
    path = var / "run" / "status.json"
    try:
        found = read_status(var, args.status_url)
    except StatusError as exc:
        return _fail(
            f"The gateway's status cannot be read: {exc}\nNo gateway answers on its /status "
            f"either. A running gateway writes {path} again at its next reload (touch the "
            "policy file); if none is running, delete it.",
            2,
        )
    if found is None:
        return _fail(f"No gateway status at {path}: is a gateway running with --var {args.var}?")
    status = found.status
    running = is_running(found)
    print(f"gateway:   {'running' if running.running else 'not running'}: {running.why}")
    if found.live:
        print(f"status:    live from {found.source}")
    else:
        written = found.written_at
        print(f"status:    {found.source}, written at {written.isoformat()} ({age(written)})")
    for line in _worker_lines(var):
        print(line)
    print(f"school:    {status.get('school')}")
    print(f"policy:    {status.get('policy')} (in force since {status.get('loaded_at')})")
    profiles = ", ".join(status["profiles"])
    print(f"lists:     {status.get('list_entries')} entries; profiles: {profiles}")
    index = status.get("list_index") or {}
    if index.get("state") == "ok":
        print(f"index:     checksum verified at {index.get('verified_at')}")
    print(f"reloads:   {status.get('reloads')} ({status.get('failed_reloads', 0)} failed)")
    bad, look = found_problems(found)
    for line in look:
        print(f"WARNING:   {line}")
    for line in bad:
        print(f"PROBLEM:   {line}")
    if not running.running:
        print("state:     not running (the lines above are what it last wrote)")
        return 2 if bad else 1
    if bad:
        return 2
    print("state:     ok")
    return 0


def _worker_lines(var: Path) -> list[str]:
    """A supervisor's workers (var/run/workers.json), each checked to be a gateway process
    started before the file was written."""
    from proxy_addons.ops.status import gateway_process
    from proxy_addons.ops.workers import read_state

    path = var / "run" / "workers.json"
    state = read_state(path)
    if state is None:
        return []
    lines = []
    try:
        written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        for worker in state["workers"]:
            pid, restarts = worker["pid"], worker["restarts"]
            if not isinstance(pid, int | None) or isinstance(pid, bool):
                raise TypeError(pid)
            running = pid is not None and pid > 0 and gateway_process(pid, written).running
            lines.append(
                f"worker {worker['index']}:  {'running' if running else 'not running'} "
                f"(pid {pid}, {int(restarts)} restarts)"
            )
    except (OSError, KeyError, TypeError, ValueError):
        return [f"WARNING:   {path} is not a list of workers (damaged?); ignored"]
    return lines


def cmd_web(args: argparse.Namespace) -> int:
    from proxy_addons.web.app import run_web

    return int(run_web(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="schoolgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--policy", default=DEFAULT_POLICY)
    run.add_argument("--var", default=DEFAULT_VAR, help="state folder (CA, index, status)")
    run.add_argument("--listen-host", default="127.0.0.1")
    run.add_argument("--listen-port", type=int, default=8080)
    run.add_argument("--set", action="append", metavar="OPTION=VALUE", help="a mitmproxy option")
    run.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("SCHOOLGATE_WORKERS", "1")),
        help="gateway processes sharing the listening port (one per core)",
    )
    run.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)

    policy = sub.add_parser("policy", help="check or explain a policy").add_subparsers(
        dest="policy_command", required=True
    )
    check = policy.add_parser("check", help="validate a policy and its lists")
    check.add_argument("file")
    check.set_defaults(func=cmd_policy_check)
    explain = policy.add_parser("explain", help="show the decision for a URL and why")
    explain.add_argument("url")
    explain.add_argument("--policy", default=DEFAULT_POLICY)
    explain.add_argument("--var", default=DEFAULT_VAR)
    explain.add_argument("--user")
    explain.add_argument("--group", action="append", help="a directory group of the user")
    explain.add_argument("--ip")
    explain.add_argument("--at", help="ISO time, e.g. 2026-11-25T12:30 (school time zone)")
    explain.add_argument(
        "--host-only", action="store_true", help="decide on the host name only (no decryption)"
    )
    explain.add_argument("--host-header", help="a Host header naming another site than the URL")
    explain.add_argument("--sni", help="a TLS server name naming another site than the URL")
    explain.set_defaults(func=cmd_policy_explain)

    from proxy_addons.cli.workflow import add_parsers

    add_parsers(sub, DEFAULT_POLICY, DEFAULT_VAR)
    from proxy_addons.cli import backup as cli_backup
    from proxy_addons.cli import ca as cli_ca

    cli_ca.add_parsers(sub, DEFAULT_VAR)
    cli_backup.add_parsers(sub, DEFAULT_POLICY, DEFAULT_VAR)
    from proxy_addons.cli import checks as cli_checks

    cli_checks.add_parsers(sub, DEFAULT_POLICY, DEFAULT_VAR)  # termly filtering checks
    from proxy_addons.cli import doctor as cli_doctor
    from proxy_addons.cli import lists as cli_lists

    cli_doctor.add_parsers(sub, DEFAULT_POLICY, DEFAULT_VAR)  # doctor, store upgrade
    cli_lists.add_parsers(sub, DEFAULT_POLICY, DEFAULT_VAR)  # lists update

    web = sub.add_parser("web", help="run the admin web app (unblock approvals) and the device API")
    web.add_argument("--policy", default=DEFAULT_POLICY)
    web.add_argument("--var", default=DEFAULT_VAR)
    web.add_argument("--dsn", default=os.environ.get("SCHOOLGATE_DSN") or None)
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8081)
    web.add_argument("--cert", help="TLS certificate (PEM) to serve HTTPS directly")
    web.add_argument("--key", help="its private key (PEM)")
    web.add_argument(
        "--trusted-proxies", type=int, default=0, help="reverse-proxy hops to trust X-Forwarded-*"
    )
    web.set_defaults(func=cmd_web)

    status = sub.add_parser("status", help="the running gateway's state")
    status.add_argument("--var", default=DEFAULT_VAR)
    status.add_argument(
        "--status-url",
        help="the gateway's live /status (default: the one the status file names, "
        "then http://127.0.0.1:9464/status)",
    )
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    from proxy_addons.cli.args import missing_defaults

    args = build_parser().parse_args(argv)
    problem = missing_defaults(args, DEFAULT_POLICY, DEFAULT_VAR)
    if problem:
        return _fail(f"schoolgate: {problem}")
    try:
        return int(args.func(args))
    except Exception as exc:  # a file, policy or store problem is a message, not a traceback
        if not _plain_error(exc):
            raise
        return _fail(f"schoolgate: {exc}")


def _plain_error(exc: Exception) -> bool:
    """An error the person can act on from its message alone (bugs keep their traceback)."""
    if isinstance(exc, PolicyError | PolicyLoadError | OSError):
        return True
    return type(exc).__module__.startswith("sqlalchemy.")  # the store can't be opened or read


if __name__ == "__main__":
    sys.exit(main())

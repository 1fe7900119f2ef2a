"""`schoolgate run`: the gateway itself (mitmproxy with Schoolgate's add-on chain), or with
`--workers N` a supervisor of N such processes sharing the port (cli/workers.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from mitmproxy import exceptions, options
from mitmproxy.tools.dump import DumpMaster

from proxy_addons.cli.common import fail
from proxy_addons.cli.workers import run_supervised
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.gateway import hook_dispatch
from proxy_addons.gateway.chain import gateway_addons
from proxy_addons.ops import school_ca
from proxy_addons.ops.workers import enable_reuse_port


def cmd_run(args: argparse.Namespace) -> int:
    if args.workers != 1 and args.worker_index is None:
        return run_supervised(args)
    if args.worker_index is not None:
        enable_reuse_port()
    return _run_gateway(args)


def _run_gateway(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(Path(args.policy))
    except PolicyError as exc:
        return fail(f"Schoolgate cannot start: {exc}")
    var = Path(args.var)
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

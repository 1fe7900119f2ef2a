"""One gateway process, as `schoolgate run` starts it: mitmproxy's DumpMaster with the
gateway's add-on chain (chain.py), the school's CA in VAR/ca, until SIGINT or SIGTERM.

Here rather than in cli/run.py: mitmproxy is imported only under gateway/ (and by
ops/school_ca.py), so the command line hands its arguments over and waits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import exceptions, options
from mitmproxy.tools.dump import DumpMaster

from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.gateway import hook_dispatch
from proxy_addons.gateway.chain import gateway_addons
from proxy_addons.gateway.log_setup import quiet_connection_logs
from proxy_addons.ops import school_ca


def serve(
    policy_path: Path, var: Path, listen_host: str, listen_port: int, sets: Sequence[str]
) -> int:
    """Run the gateway until stopped; 1 when it can't start. `sets` are "name=value"
    mitmproxy options, parsed by each option's type."""
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        print(f"Schoolgate cannot start: {exc}", file=sys.stderr)
        return 1
    if school_ca.ensure(var / "ca", policy.school):  # a CA named for the school, not "mitmproxy"
        print(f"Created the school's CA in {var / 'ca'} (schoolgate ca show)", flush=True)
    settings: dict[str, object] = {
        "listen_host": listen_host,
        "listen_port": listen_port,
        "confdir": str(var / "ca"),
        "connection_strategy": "lazy",
        "onboarding": False,
        "schoolgate_policy": str(policy_path.resolve()),
        "schoolgate_var": str(var.resolve()),
    }

    async def main() -> int:
        # As mitmdump does: the root logger passes everything; termlog filters by verbosity.
        logging.getLogger().setLevel(logging.DEBUG)
        for noisy in ("tornado", "asyncio", "hpack", "quic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        quiet_connection_logs()  # no line per connection at the default level (log_setup.py)
        master = DumpMaster(options.Options(), with_termlog=True, with_dumper=False)
        master.addons.add(*gateway_addons())
        hook_dispatch.install(master.addons)  # skip add-ons without the hook (hook_dispatch.py)
        try:
            master.options.update(**settings)
            master.options.set(*sets)
        except (exceptions.OptionsError, KeyError) as exc:
            print(exc, file=sys.stderr)
            return 1
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, master.shutdown)
        print(f"Schoolgate for {policy.school} on {listen_host}:{listen_port}", flush=True)
        await master.run()
        return 0

    return asyncio.run(main())


__all__ = ["serve"]

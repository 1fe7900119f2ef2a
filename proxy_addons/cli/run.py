"""`schoolgate run`: the gateway itself (gateway/serve.py: mitmproxy with Schoolgate's add-on
chain), or with `--workers N` a supervisor of N such processes sharing the port
(cli/workers.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from proxy_addons.cli.workers import run_supervised
from proxy_addons.gateway.serve import serve
from proxy_addons.ops.workers import enable_reuse_port


def cmd_run(args: argparse.Namespace) -> int:
    if args.workers != 1 and args.worker_index is None:
        return run_supervised(args)
    if args.worker_index is not None:
        enable_reuse_port()
    return serve(
        Path(args.policy), Path(args.var), args.listen_host, args.listen_port, args.set or []
    )

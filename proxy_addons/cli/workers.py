"""`schoolgate run --workers N`: the supervisor side of the command (see workers.py)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.ops.workers import Supervisor, metrics_port_for

MAX_WORKERS = 64
DEFAULT_METRICS_PORT = 9464  # the Metrics add-on's default


def _metrics_base(sets: list[str]) -> int:
    base = DEFAULT_METRICS_PORT
    for item in sets:
        name, _, value = item.partition("=")
        if name.strip() == "schoolgate_metrics_port":
            base = int(value)
    return base


def worker_command(args: argparse.Namespace, index: int) -> list[str]:
    sets = list(args.set or [])
    command = [
        sys.executable,
        "-m",
        "proxy_addons.cli.main",
        "run",
        "--policy",
        str(args.policy),
        "--var",
        str(args.var),
        "--listen-host",
        args.listen_host,
        "--listen-port",
        str(args.listen_port),
        "--workers",
        "1",
        "--worker-index",
        str(index),
    ]
    for item in sets:
        if item.partition("=")[0].strip() != "schoolgate_metrics_port":  # set per worker below
            command += ["--set", item]
    command += ["--set", f"schoolgate_metrics_port={metrics_port_for(index, _metrics_base(sets))}"]
    return command


def run_supervised(args: argparse.Namespace) -> int:
    if not 1 <= args.workers <= MAX_WORKERS:
        print(f"--workers must be between 1 and {MAX_WORKERS}", file=sys.stderr)
        return 2
    if args.listen_port == 0:
        print("--workers needs a fixed --listen-port for the workers to share", file=sys.stderr)
        return 2
    try:
        _metrics_base(list(args.set or []))
    except ValueError:
        print("schoolgate_metrics_port must be a number", file=sys.stderr)
        return 2
    try:  # fail fast here rather than in every worker, over and over
        policy = load_policy(Path(args.policy))
    except PolicyError as exc:
        print(f"Schoolgate cannot start: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="schoolgate supervisor: %(message)s")
    supervisor = Supervisor(
        command=lambda index: worker_command(args, index),
        count=args.workers,
        state_file=Path(args.var) / "run" / "workers.json",
    )
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    print(
        f"Schoolgate for {policy.school} on {args.listen_host}:{args.listen_port} "
        f"with {args.workers} workers",
        flush=True,
    )
    return supervisor.run()

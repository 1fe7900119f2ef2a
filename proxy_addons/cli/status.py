"""`schoolgate status`: the running gateway's state, from its live /status or its status file."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.cli.common import fail
from proxy_addons.ops.status import (
    StatusError,
    age,
    found_problems,
    gateway_process,
    is_running,
    read_status,
)
from proxy_addons.ops.workers import read_state


def cmd_status(args: argparse.Namespace) -> int:
    """The gateway's state: 0 running and ok, 1 not running, 2 a problem (also a status
    that is not a gateway's)."""
    var = Path(args.var)
    path = var / "run" / "status.json"
    try:
        found = read_status(var, args.status_url)
    except StatusError as exc:
        return fail(
            f"The gateway's status cannot be read: {exc}\nNo gateway answers on its /status "
            f"either. A running gateway writes {path} again at its next reload (touch the "
            "policy file); if none is running, delete it.",
            2,
        )
    if found is None:
        return fail(f"No gateway status at {path}: is a gateway running with --var {args.var}?")
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

"""How light the device agent is: resident memory and CPU of one full check.

Runs `schoolgate-agent check --format json` several times as a child process on
this machine and prints its peak resident memory and CPU time, and the average
CPU share that gives at the service loop's default interval (a check every 5
minutes). Targets: under 40 MB resident, well under 1% CPU on average.

    python bench/agent_bench.py [--runs 5] [--interval-minutes 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The agent of the tree this file is in (run from a checkout of an older commit, it measures
# that commit's agent: how "before" figures are taken).
TREE = Path(__file__).resolve().parents[1]
AGENT = [sys.executable, "-m", "agent.cli"]


def one_run() -> tuple[float, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([*AGENT, "check", "--format", "json"], cwd=TREE, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


_SELF_RSS = """
import resource, sys
from agent.cli import main
try:
    main(["check", "--format", "json"])
except SystemExit:
    pass
sys.stderr.write("SELF_RSS_KB=%d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def agent_own_rss() -> float:
    """Peak RSS of the agent's own process, without the commands it runs (apt, ...)."""
    out = subprocess.run(
        [sys.executable, "-c", _SELF_RSS], cwd=TREE, capture_output=True, text=True
    )
    line = [x for x in out.stderr.splitlines() if x.startswith("SELF_RSS_KB=")][-1]
    return int(line.split("=")[1]) / 1024


_PER_CHECK = """
import json, resource, sys, time
from agent.checks import checks_for
from agent.checks.base import Context
from agent.device_facts import current_platform
from agent.runner import SystemRunner

def used():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime

ctx = Context(SystemRunner("/"))  # one memory for both rounds, as the service keeps it
rows = []
for round in (1, 2):
    for check in checks_for(current_platform()):
        (own0, kid0), wall0 = used(), time.perf_counter()
        status = check.probe(ctx).status
        (own1, kid1), wall1 = used(), time.perf_counter()
        rows.append([round, check.id, status, own1 - own0, kid1 - kid0, wall1 - wall0])
print(json.dumps(rows))
"""


def per_check(runs: int) -> dict[int, list[tuple[str, str, float, float, float]]]:
    """Each check's CPU (the agent's own, and the commands it runs) and wall time, the
    median over `runs` fresh processes; what a new check adds shows here by name. Round 1 is
    a first check (as `check` by hand); round 2 the next one in the same process, with what
    the checks keep between checks (agent/checks/memory.py), as the service runs them."""
    samples: dict[tuple[int, str], list[list[float]]] = {}
    status: dict[tuple[int, str], str] = {}
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _PER_CHECK], cwd=TREE, capture_output=True, text=True
        )
        for row in json.loads(out.stdout):
            if len(row) == 5:  # an older tree's bench script: one round
                row = [1, *row]
            round_, cid, st, own, kids, wall = row
            samples.setdefault((round_, cid), []).append([own, kids, wall])
            status[(round_, cid)] = st
    found: dict[int, list[tuple[str, str, float, float, float]]] = {}
    for (round_, cid), rows in samples.items():
        own, kids, wall = (statistics.median(col) for col in zip(*rows, strict=True))
        found.setdefault(round_, []).append((cid, status[(round_, cid)], own, kids, wall))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval-minutes", type=float, default=5)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    walls, cpus, rss = zip(*runs, strict=True)
    cpu = statistics.median(cpus)
    share = cpu / (args.interval_minutes * 60) * 100
    print(f"schoolgate-agent check, {args.runs} runs on this machine:")
    print(f"  wall time     median {statistics.median(walls):.2f} s")
    print(f"  CPU time      median {cpu:.2f} s (agent and the commands it runs)")
    print(f"  agent's own peak RSS {agent_own_rss():.1f} MB (target < 40 MB)")
    print(f"  peak RSS of any command it ran (e.g. apt-get -s) {max(rss):.1f} MB")
    print(
        f"  average CPU   {share:.3f}% with a check every {args.interval_minutes:g} min "
        "(target well under 1%)"
    )
    titles = {1: "a first check (as `check` by hand)", 2: "the next check, as the service runs"}
    for round_, rows in per_check(args.runs).items():
        print(f"per check, {titles[round_]} (median; agent's own CPU, its commands', wall):")
        for cid, status, own, kids, wall in rows:
            ms = (
                f"own {own * 1e3:7.1f} ms  commands {kids * 1e3:7.1f} ms  wall {wall * 1e3:7.1f} ms"
            )
            print(f"  {cid:18} {status:8} {ms}")
        total = sum(own + kids for _, _, own, kids, _ in rows)
        share = total / (args.interval_minutes * 60) * 100
        every = f"a check every {args.interval_minutes:g} min"
        print(f"  all checks: CPU {total:.2f} s, {share:.3f}% at {every}")


if __name__ == "__main__":
    main()

"""How light the device agent is: resident memory and CPU of one full check.

Runs `schoolgate-agent check --format json` several times as a child process on
this machine and prints its peak resident memory and CPU time, and the average
CPU share that gives at the service loop's default interval (a check every 5
minutes). Targets: under 40 MB resident, well under 1% CPU on average.

    python bench/agent_bench.py [--runs 5] [--interval-minutes 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

AGENT = str(Path(sys.executable).parent / "schoolgate-agent")


def one_run() -> tuple[float, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([AGENT, "check", "--format", "json"], capture_output=True, check=False)
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
    out = subprocess.run([sys.executable, "-c", _SELF_RSS], capture_output=True, text=True)
    line = [x for x in out.stderr.splitlines() if x.startswith("SELF_RSS_KB=")][-1]
    return int(line.split("=")[1]) / 1024


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


if __name__ == "__main__":
    main()

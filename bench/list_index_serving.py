"""The serving process of bench/list_index_bench.py: opens an index, looks up hosts, and
prints its memory as JSON. A script of its own so it imports what a gateway worker does
(ListIndex), not the builder and numpy.

    .venv/bin/python bench/list_index_serving.py INDEX HOSTS_FILE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy_addons.core.lists.index import ListIndex  # noqa: E402


def main(index: str, hosts_file: str) -> None:
    proc = psutil.Process()
    hosts = Path(hosts_file).read_text().split()
    before = proc.memory_info().rss
    idx = ListIndex.open(Path(index))
    lookups = 0
    while lookups < 1_000_000:
        for host in hosts:
            idx.match_host(host)
        lookups += len(hosts)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    full = proc.memory_full_info()
    print(
        json.dumps(
            {
                "before_open": before,
                "rss": full.rss,
                "uss": full.uss,
                "rss_file_kb": int(status["RssFile"].split()[0]),
                "rss_anon_kb": int(status["RssAnon"].split()[0]),
                "lookups": lookups,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""Full host decisions per second: canonical_host + decide() as the proxy calls them.

The list index benchmark (list_index_bench.py) measures the index alone at 5M
entries; this one measures the whole decision on one core, with the example
policy (real UT1 lists), a learner identity found by network and a staff
identity whose rules carry schedules.

    python bench/decision_bench.py [--n 200000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.core.decide import Identity, Request, decide
from proxy_addons.core.hosts import canonical_host
from proxy_addons.core.policy.standalone import load_all

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    loaded = load_all(ROOT / "policies/school.yaml", Path(tempfile.mkdtemp()))
    policy, index = loaded.policy, loaded.index
    rng = random.Random(7)
    listed = [
        line.strip()
        for line in (ROOT / "policies/lists/ut1/shopping/domains").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.strip()[-1].isdigit()
    ]
    hosts = []
    for i in range(args.n):
        if i % 2:
            hosts.append("www." + rng.choice(listed))
        else:
            hosts.append(f"cdn{rng.randrange(10**6)}.site{rng.randrange(10**5)}.co.uk")
    now = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    print(f"example policy: {index.entry_count:,} list entries, {len(policy.profiles)} profiles")
    for label, identity in (
        ("learner (ks2, by network)", Identity(None, (), "10.10.4.20")),
        ("staff (scheduled rules)", Identity(None, (), "10.20.0.5")),
    ):
        canonical_host.cache_clear()
        started = time.perf_counter()
        blocked = 0
        for raw in hosts:
            d = decide(policy, index, identity, Request(canonical_host(raw)), now)
            blocked += d.blocked
        rate = len(hosts) / (time.perf_counter() - started)
        print(
            f"host decisions/s, {label:<27} {rate:>10,.0f}   "
            f"({blocked / len(hosts):.0%} blocked; target >= 300,000 on one core)"
        )


if __name__ == "__main__":
    main()

"""The doctor's check of the illegal tier: fed and current (ops/illegal_feeds/health.py says
how), and, on a production install, more than the shipped test entries."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.ops.doctor.findings import Check, fail, ok, warn
from proxy_addons.ops.illegal_feeds.health import tier_health

FIX = (
    "schoolgate lists update --feeds-only (see its message); journalctl -u "
    "schoolgate-illegal-feeds; docs/illegal-content.md"
)


def check_illegal_tier(
    policy_path: Path, *, production: bool, now: datetime | None = None
) -> list[Check]:
    try:
        tier = load_policy(policy_path).illegal
    except PolicyError:
        return []  # the lists check says the policy does not load
    health = tier_health(tier, production=production, now=now)
    found = [fail("illegal tier", p, FIX) for p in health.problems]
    found += [warn("illegal tier", w, FIX) for w in health.warnings]
    if not found or health.fit:
        counts = f"{len(tier.exact)} exact, {len(tier.prefixes)} prefix, {len(tier.hashed)} hashed"
        fed = "; ".join(health.notes) or "no feed"
        found.insert(0, ok("illegal tier", f"{counts} entries; {fed}"))
    return found

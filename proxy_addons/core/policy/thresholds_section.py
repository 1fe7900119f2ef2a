"""`devices.thresholds:`, the figures devices are judged by, read into the agent's `Thresholds`.

Each figure names where it comes from (policies/school.yaml, docs/policy.md): the DfE cyber
security standard sets patches (14 days) and lockout (10 attempts) as maxima, so a policy
may be stricter, never looser; the rest are the school's choice within sensible bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from agent.checks.thresholds import Thresholds
from proxy_addons.core.policy.checker import Checker
from proxy_addons.core.policy.yaml_reader import Where


@dataclass(frozen=True)
class Figure:
    key: str  # as written in the policy
    field: str  # the Thresholds field it sets
    low: int
    high: int
    scale: int = 1  # policy unit -> Thresholds unit (minutes -> seconds)
    limit_note: str = ""  # why `high` is the most allowed, when a standard says so


FIGURES = (
    Figure("screen_lock_minutes", "idle_lock_max_s", 1, 60, scale=60),
    Figure("screen_lock_delay_seconds", "lock_delay_max_s", 0, 300),
    Figure("patch_max_age_days", "security_update_max_days", 1, 14, limit_note="the DfE standard"),
    Figure("antimalware_max_age_days", "av_signature_max_days", 1, 60),
    Figure("password_min_length", "password_min_length", 8, 64),
    Figure("lockout_max_attempts", "lockout_max_attempts", 1, 10, limit_note="the DfE standard"),
    Figure("laptop_support_years", "laptop_support_years", 1, 10),
    Figure("tablet_support_years", "tablet_support_years", 1, 10),
)


def load_thresholds(ck: Checker, raw: Any, where: Where) -> Thresholds:
    """The section's figures over the defaults; a wrong one is named with its line."""
    m = ck.mapping(raw, where, "devices.thresholds", [f.key for f in FIGURES])
    if m is None:
        return Thresholds()
    defaults = Thresholds()
    values: dict[str, Any] = {}
    for figure in FIGURES:
        default = getattr(defaults, figure.field) // figure.scale
        value = m.get(figure.key, default)
        if figure.limit_note and isinstance(value, int) and value > figure.high:
            ck.fail(
                m.at(figure.key),
                f"{figure.key} should be at most {figure.high}: {figure.limit_note} "
                f"allows no more (a school may be stricter)",
            )
            continue
        values[figure.field] = ck.whole(m, figure.key, default, figure.low, figure.high) * (
            figure.scale
        )
    return replace(defaults, **values)


__all__ = ["FIGURES", "load_thresholds"]

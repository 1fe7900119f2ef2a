"""The device's compliance checks: data (an id, a platform and a probe that turns what it reads
into a result), one module per platform, built from `base`; `run_checks` runs a platform's.
"""

from __future__ import annotations

from agent.checks import linux, macos, windows
from agent.checks.base import PLATFORMS, Check, Context, fit, unknown
from agent.report import CheckResult


def checks_for(platform: str) -> tuple[Check, ...]:
    table = {"linux": linux.CHECKS, "macos": macos.CHECKS, "windows": windows.CHECKS}
    if platform not in table:
        raise ValueError(f"unsupported platform {platform!r}; expected one of {PLATFORMS}")
    return table[platform]


def run_checks(platform: str, ctx: Context) -> list[CheckResult]:
    """Run every check for the platform; a probe that crashes reports unknown, not a traceback,
    and every result is cut to fit the report (base.fit)."""
    results = []
    for check in checks_for(platform):
        try:
            results.append(fit(check.probe(ctx)))
        except Exception as exc:  # noqa: BLE001 - a bug in one probe must not hide the rest
            results.append(fit(unknown(check.id, f"The probe failed: {type(exc).__name__}: {exc}")))
    return results

"""What every platform's checks are made of: a check, the context its probe reads, the
pass/fail/unknown results, and the judgements all platforms share (OS support, patches).

Every probe answers pass, fail or unknown with a reason and the raw evidence; any
error, timeout or output it can't parse becomes unknown, which never counts as compliant.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from agent.checks.memory import Memory
from agent.checks.thresholds import Thresholds
from agent.report import MAX_EVIDENCE_CHARS, CheckResult
from agent.runner import CommandResult, Runner

PLATFORMS = ("linux", "macos", "windows")


@dataclass(frozen=True)
class Context:
    runner: Runner
    thresholds: Thresholds = field(default_factory=Thresholds)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    memory: Memory = field(default_factory=Memory)  # kept between reports (checks/memory.py)


Probe = Callable[[Context], CheckResult]


@dataclass(frozen=True)
class Check:
    id: str
    platform: str
    probe: Probe
    thresholds: tuple[str, ...] = ()  # names of the Thresholds fields it reads


def ok(check_id: str, reason: str, **evidence: Any) -> CheckResult:
    return CheckResult(check_id, "pass", reason, evidence)


def fail(check_id: str, reason: str, **evidence: Any) -> CheckResult:
    return CheckResult(check_id, "fail", reason, evidence)


def unknown(check_id: str, reason: str, **evidence: Any) -> CheckResult:
    return CheckResult(check_id, "unknown", reason, evidence)


def clip(text: str, limit: int = 600) -> str:
    """Evidence must stay small (the report caps it), so long raw output is cut."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"


MAX_REASON = 500  # agent/report.py refuses a longer reason, and with it the whole report


def _shrink(value: Any, chars: int, items: int) -> Any:
    if isinstance(value, str):
        return clip(value, chars)
    if isinstance(value, list | tuple):
        cut = [_shrink(v, chars, items) for v in list(value)[:items]]
        return cut + [f"… {len(value) - items} more"] if len(value) > items else cut
    if isinstance(value, dict):
        return {clip(str(k), 60): _shrink(v, chars, items) for k, v in list(value.items())[:40]}
    return value


def fit(result: CheckResult) -> CheckResult:
    """The result cut to what a report carries (a 500-character reason, evidence under
    MAX_EVIDENCE_CHARS), so 2000 applications, 500 administrators or a name thousands of
    characters long can't get the whole report refused; the verdict is never changed."""
    reason = clip(result.reason, MAX_REASON - 1)
    evidence = result.evidence
    for chars, items in ((200, 30), (80, 10), (30, 3)):
        if len(repr(evidence)) <= MAX_EVIDENCE_CHARS:
            break
        evidence = {**_shrink(result.evidence, chars, items), "evidence_cut": True}
    if len(repr(evidence)) > MAX_EVIDENCE_CHARS:
        evidence = {"evidence_cut": True}
    if reason == result.reason and evidence is result.evidence:
        return result
    return replace(result, reason=reason, evidence=evidence)


def describe(result: CommandResult) -> str:
    """A short sentence for why a command gave us nothing usable."""
    detail = " ".join(clip(result.stderr or result.stdout, 200).split()) or "no output"
    return f"exit {result.returncode}: {detail}"


def version_tuple(version: str) -> tuple[int, ...] | None:
    parts = re.findall(r"\d+", version)
    return tuple(int(p) for p in parts) if parts else None


def os_support(
    check_id: str, os_id: str, version: str, ctx: Context, **evidence: Any
) -> CheckResult:
    """Minimum version is decided here; end of life only with the gateway's EOL table."""
    evidence = {"os": os_id, "version": version, **evidence}
    have = version_tuple(version)
    if not os_id or have is None:
        return unknown(check_id, "Couldn't read the OS name and version.", **evidence)
    minimum = ctx.thresholds.min_os_versions.get(os_id)
    want = version_tuple(minimum) if minimum else None
    if want is not None and have < want:
        return fail(check_id, f"{os_id} {version} is older than the minimum {minimum}.", **evidence)
    for key, until in ctx.thresholds.eol.items():
        name, _, eol_version = key.partition(" ")
        eol_tuple = version_tuple(eol_version)
        if name != os_id or eol_tuple is None or have[: len(eol_tuple)] != eol_tuple:
            continue
        try:
            end = date.fromisoformat(until)
        except ValueError:
            return unknown(check_id, f"The EOL date for {key} is not a date.", **evidence)
        evidence["eol"] = until
        if ctx.now.date() > end:
            return fail(check_id, f"{os_id} {version} reached end of life on {until}.", **evidence)
        return ok(check_id, f"{os_id} {version} is supported until {until}.", **evidence)
    return unknown(
        check_id, "End of life is decided on the gateway; no EOL table here.", **evidence
    )


@dataclass(frozen=True)
class Pending:
    """A pending security update; `published` when the OS says (Windows Update, dnf)."""

    name: str
    published: datetime | None = None


def pending_ages(updates: list[Pending], ctx: Context) -> list[tuple[Pending, int, str]]:
    """Each update's age in days, oldest first, and its basis: the OS's publication date,
    else when this agent first saw it pending (remembered between reports)."""
    seen = ctx.memory.first_seen("security_updates", [u.name for u in updates], ctx.now)
    aged = []
    for u in updates:
        if u.published is not None:
            aged.append((u, (ctx.now - u.published).days, "published"))
        else:
            aged.append((u, (ctx.now - seen[u.name]).days, "first seen pending"))
    return sorted(aged, key=lambda a: -a[1])


def days_text(n: int) -> str:
    """ "1 day", "3 days": reasons are read by people."""
    return "1 day" if n == 1 else f"{n} days"


def _updates(n: int) -> str:
    return "1 security update" if n == 1 else f"{n} security updates"


def judge_patches(
    cid: str, ev: dict[str, object], ctx: Context, updates: list[Pending] | None = None
) -> CheckResult:
    """Shared by all platforms: security updates must not wait longer than the policy allows.

    The age that counts is the oldest pending security update's: its publication date where
    the OS tells (Windows Update, dnf updateinfo), else when this agent first saw it pending.
    A first-seen age is a lower bound, so it can fail a device but only passes it once the
    agent has watched long enough; without a list of updates, the last successful update
    stands in (pending security updates and no update for N days: they waited N days).
    """
    t = ctx.thresholds
    last = ev.get("last_update")
    days = None
    if isinstance(last, str):
        try:
            days = (ctx.now - datetime.fromisoformat(last)).days
        except ValueError:
            days = None
    ev = {**ev, "days_since_update": days}
    if updates:
        aged = pending_ages(updates, ctx)
        oldest, age, basis = aged[0]
        ev["oldest_pending_days"] = age
        ev["oldest_pending"] = oldest.name
        ev["oldest_basis"] = basis
        ev["security_pending"] = [f"{u.name} ({a} d, {b})" for u, a, b in aged[:20]]
    if ev.get("reboot_required") is True:
        return fail(cid, "Updates are installed but waiting for a reboot.", **ev)
    if ev.get("auto_updates") is False:
        return fail(cid, "Automatic updates are off.", **ev)
    security = ev.get("security")
    limit = t.security_update_max_days
    if updates:
        oldest, age, basis = aged[0]
        if age > limit:
            return fail(
                cid,
                f"{_updates(len(updates))} pending; the oldest, {oldest.name}, "
                f"has waited {days_text(age)} ({basis}), more than {limit}.",
                **ev,
            )
        watched = all(b == "published" for _, _, b in aged) or (days is not None and days <= limit)
        if not watched:
            since = "no update known" if days is None else f"no update for {days_text(days)}"
            return unknown(
                cid,
                f"{_updates(len(updates))} pending, first seen {days_text(age)} ago, and "
                f"{since}: how long they have waited can't be told yet.",
                **ev,
            )
    elif isinstance(security, int) and security > 0:
        if days is None:
            return unknown(
                cid, f"{security} security updates pending; couldn't tell since when.", **ev
            )
        if days > limit:
            return fail(
                cid, f"{_updates(security)} pending and no update for {days_text(days)}.", **ev
            )
    if ev.get("auto_updates") is None:
        return unknown(cid, "Couldn't tell whether automatic updates are on.", **ev)
    if updates:
        return ok(
            cid,
            f"{_updates(len(updates))} pending, the oldest {ev['oldest_pending_days']} "
            f"days ({ev['oldest_basis']}); within {limit}.",
            **ev,
        )
    return ok(
        cid, f"{ev.get('pending')} updates pending, {security} security; within policy.", **ev
    )

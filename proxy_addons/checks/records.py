"""The record of termly effectiveness checks: runs, per-case results, and actions taken.

The standards ask the school to record when a check took place, who did it, what was tested,
the results and the resulting actions; this module keeps exactly that in the store, whichever
way the check ran (gateway, agent, browser). `db` is a `Store` or a SQLAlchemy `Engine`:
anything with `begin()` for writes and `connect()` for reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from agent.check_suite import CheckCase, Observation, Outcome, classify
from proxy_addons.core.policy.model import Policy, Term
from proxy_addons.store.schema import check_actions, check_results, check_runs

SOURCES = ("gateway", "agent", "browser")


class Database(Protocol):
    def begin(self) -> Any: ...
    def connect(self) -> Any: ...


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    url: str
    category: str
    expected: str  # blocked | allowed | safe_search
    outcome: Outcome
    evidence: str
    status: int | None = None
    block_reference: str | None = None


def result_for(case: CheckCase, observation: Observation) -> CaseResult:
    """One case's result: what it expected, what was seen, and the verdict."""
    return CaseResult(
        case_id=case.id,
        url=case.url,
        category=case.category,
        expected=case.expect.value,
        outcome=classify(case, observation),
        evidence=observation.evidence or (observation.error or ""),
        status=observation.status,
        block_reference=observation.block_reference,
    )


@dataclass(frozen=True)
class CheckRun:
    started_at: datetime
    finished_at: datetime
    started_by: str  # a named member of staff
    source: str  # gateway | agent | browser
    profile: str
    results: tuple[CaseResult, ...]
    suite: str = ""
    device_id: str | None = None
    device_type: str | None = None
    os: str | None = None
    browser: str | None = None
    term: str | None = None

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def failures(self) -> tuple[CaseResult, ...]:
        return tuple(r for r in self.results if r.outcome is Outcome.FAIL)


@dataclass(frozen=True)
class Action:
    id: int
    run_id: int
    case_id: str | None
    at: datetime
    author: str
    text: str


@dataclass(frozen=True)
class StoredRun:
    """A run as read back, with its results and the actions added since."""

    id: int
    run: CheckRun
    actions: tuple[Action, ...] = field(default=())

    @property
    def passed(self) -> int:
        return self.run.count(Outcome.PASS)

    @property
    def failed(self) -> int:
        return self.run.count(Outcome.FAIL)

    @property
    def errors(self) -> int:
        return self.run.count(Outcome.ERROR)


class CheckRecordError(ValueError):
    """A run or action that can't be recorded as given."""


def term_at(policy: Policy, at: datetime) -> Term | None:
    """The policy's term that `at` (school time) falls in; None in the holidays."""
    day = at.astimezone(policy.timezone).date()
    return next((t for t in policy.terms if t.start <= day <= t.end), None)


def _aware(at: datetime, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise CheckRecordError(f"{what} needs a time zone")
    return at.astimezone(UTC)


def _short(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = " ".join(str(value).split())
    return value[:limit] or None


def record_run(db: Database, run: CheckRun) -> int:
    """Store a run and its results in one transaction; returns its id."""
    who = _short(run.started_by, 200)
    if not who:
        raise CheckRecordError("a check run needs the name of the member of staff who ran it")
    if run.source not in SOURCES:
        raise CheckRecordError(f"source should be one of {', '.join(SOURCES)}, not {run.source!r}")
    if not run.profile.strip():
        raise CheckRecordError("a check run needs the profile it was run as")
    started, finished = _aware(run.started_at, "started_at"), _aware(run.finished_at, "finished_at")
    if finished < started:
        raise CheckRecordError("a check run cannot finish before it starts")
    with db.begin() as conn:
        run_id = conn.execute(
            sa.insert(check_runs)
            .values(
                started_at=started,
                finished_at=finished,
                started_by=who,
                source=run.source,
                device_id=_short(run.device_id, 64),
                device_type=_short(run.device_type, 40),
                os=_short(run.os, 100),
                browser=_short(run.browser, 200),
                profile=run.profile.strip()[:100],
                term=_short(run.term, 100),
                suite=(_short(run.suite, 200) or ""),
                passed=run.count(Outcome.PASS),
                failed=run.count(Outcome.FAIL),
                errors=run.count(Outcome.ERROR),
            )
            .returning(check_runs.c.id)
        ).scalar_one()
        if run.results:
            conn.execute(
                sa.insert(check_results),
                [
                    {
                        "run_id": run_id,
                        "case_id": r.case_id[:64],
                        "url": r.url,
                        "category": r.category[:100],
                        "expected": r.expected[:20],
                        "outcome": Outcome(r.outcome).value,
                        "status": r.status,
                        "block_reference": _short(r.block_reference, 32),
                        "evidence": (r.evidence or "")[:2000],
                    }
                    for r in run.results
                ],
            )
    return int(run_id)


def add_action(
    db: Database,
    run_id: int,
    case_id: str | None,
    author: str,
    text: str,
    at: datetime | None = None,
) -> int:
    """Record what someone did about a run (or one case of it); returns the action's id."""
    who, words = _short(author, 200), (text or "").strip()
    if not who:
        raise CheckRecordError("an action needs the name of who took it")
    if not words:
        raise CheckRecordError("an action needs some text saying what was done")
    when = _aware(at, "at") if at else datetime.now(UTC)
    with db.begin() as conn:
        exists = conn.execute(
            sa.select(check_runs.c.id).where(check_runs.c.id == run_id)
        ).scalar_one_or_none()
        if exists is None:
            raise CheckRecordError(f"there is no check run {run_id}")
        if case_id is not None:
            found = conn.execute(
                sa.select(check_results.c.id).where(
                    check_results.c.run_id == run_id, check_results.c.case_id == case_id
                )
            ).first()
            if found is None:
                raise CheckRecordError(f"run {run_id} has no case '{case_id}'")
        action_id = conn.execute(
            sa.insert(check_actions)
            .values(run_id=run_id, case_id=case_id, at=when, author=who, text=words[:5000])
            .returning(check_actions.c.id)
        ).scalar_one()
    return int(action_id)


# -- reading -----------------------------------------------------------------------------------


def _run_from(row: Any, results: Sequence[Any]) -> CheckRun:
    return CheckRun(
        started_at=row.started_at,
        finished_at=row.finished_at,
        started_by=row.started_by,
        source=row.source,
        profile=row.profile,
        suite=row.suite,
        device_id=row.device_id,
        device_type=row.device_type,
        os=row.os,
        browser=row.browser,
        term=row.term,
        results=tuple(
            CaseResult(
                case_id=r.case_id,
                url=r.url,
                category=r.category,
                expected=r.expected,
                outcome=Outcome(r.outcome),
                evidence=r.evidence,
                status=r.status,
                block_reference=r.block_reference,
            )
            for r in results
        ),
    )


def load_runs(
    db: Database,
    *,
    term: str | None = None,
    run_ids: Iterable[int] | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[StoredRun]:
    """Runs with their results and actions, newest first."""
    query = sa.select(check_runs).order_by(check_runs.c.started_at.desc(), check_runs.c.id.desc())
    if term is not None:
        query = query.where(check_runs.c.term == term)
    if run_ids is not None:
        query = query.where(check_runs.c.id.in_(list(run_ids)))
    if since is not None:
        query = query.where(check_runs.c.started_at >= since)
    if limit is not None:
        query = query.limit(limit)
    with db.connect() as conn:
        rows = conn.execute(query).all()
        ids = [r.id for r in rows]
        results: dict[int, list[Any]] = {i: [] for i in ids}
        actions: dict[int, list[Action]] = {i: [] for i in ids}
        if ids:
            for r in conn.execute(
                sa.select(check_results)
                .where(check_results.c.run_id.in_(ids))
                .order_by(check_results.c.id)
            ):
                results[r.run_id].append(r)
            for a in conn.execute(
                sa.select(check_actions)
                .where(check_actions.c.run_id.in_(ids))
                .order_by(check_actions.c.at, check_actions.c.id)
            ):
                actions[a.run_id].append(Action(a.id, a.run_id, a.case_id, a.at, a.author, a.text))
    return [StoredRun(r.id, _run_from(r, results[r.id]), tuple(actions[r.id])) for r in rows]


def get_run(db: Database, run_id: int) -> StoredRun | None:
    found = load_runs(db, run_ids=[run_id])
    return found[0] if found else None


def profiles_covered(db: Database, term: str) -> set[str]:
    """Profiles with a run in `term` that judged at least one case (all errors is no check)."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(check_runs.c.profile)
            .where(check_runs.c.term == term, check_runs.c.passed + check_runs.c.failed > 0)
            .distinct()
        ).all()
    return {r.profile for r in rows}


def terms_with_runs(db: Database) -> list[tuple[str, date]]:
    """Every term that has runs, with the day of its first run, oldest first (for trends)."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(check_runs.c.term, sa.func.min(check_runs.c.started_at))
            .where(check_runs.c.term.is_not(None))
            .group_by(check_runs.c.term)
        ).all()
    out = [(str(t), first.date()) for t, first in rows]
    return sorted(out, key=lambda x: x[1])


__all__ = [
    "SOURCES",
    "Action",
    "CaseResult",
    "CheckRecordError",
    "CheckRun",
    "StoredRun",
    "add_action",
    "get_run",
    "load_runs",
    "profiles_covered",
    "record_run",
    "result_for",
    "term_at",
    "terms_with_runs",
]

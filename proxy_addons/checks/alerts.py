"""A termly check that failed: the IT provider and the DSL are told, through the alert outbox.

A failed case means the filter let through what it should stop (or stops what it shouldn't),
so both audiences hear of it: the IT provider to fix it, the DSL because it is a safeguarding
gap until fixed. The message names the run, the profile, the device and the failing cases by
id and category; never a test URL of the illegal tier (they are the provider's test entries,
but the rule for that tier is that no address travels in an alert).

Every way of running a check records through `record_and_alert`, so none forgets the alert.
"""

from __future__ import annotations

import logging

from agent.check_suite import Expect
from proxy_addons.alerts.dispatch import deliver_now, raise_alert
from proxy_addons.alerts.events import Audience, Event, local_time
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.checks.records import CheckRun, record_run
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

CHECK_FAILED = "check_failed"
ILLEGAL_CATEGORIES = frozenset({"child_sexual_abuse", "terrorism", "illegal"})


def _severity(run: CheckRun) -> int:
    failures = run.failures
    if any(r.category in ILLEGAL_CATEGORIES for r in failures):
        return 5  # the illegal tier let something through
    if any(r.expected != Expect.ALLOWED.value for r in failures):
        return 4  # something that should be stopped was not
    return 3  # over-blocking only


def failure_events(run_id: int, run: CheckRun, policy: Policy) -> list[Event]:
    """One event per audience for a run with failed cases; none for a clean run."""
    failures = run.failures
    if not failures:
        return []
    described = []
    for r in failures:
        if r.expected == Expect.ALLOWED.value:
            described.append(f"{r.case_id} ({r.category}: blocked but should be open)")
        elif r.expected == Expect.SAFE_SEARCH.value:
            described.append(f"{r.case_id} ({r.category}: safe search not enforced)")
        else:
            described.append(f"{r.case_id} ({r.category}: not blocked)")
    device = run.device_type or run.source
    if run.device_id:
        device += f" {run.device_id}"
    fields = {
        "profile": run.profile,
        "device": device,
        "checks": "; ".join(described),
        "categories": ", ".join(sorted({r.category for r in failures})),
        "reference": f"check run {run_id} (schoolgate checks show {run_id})",
        "time": local_time(policy.timezone, run.finished_at),
    }
    summary = (
        f"Filtering check failed: {len(failures)} of {len(run.results)} cases "
        f"for profile {run.profile}"
    )
    return [
        Event(
            kind=CHECK_FAILED,
            severity=_severity(run),
            audience=audience,
            summary=summary,
            fields=dict(fields),
            fold_key=f"{CHECK_FAILED}|{run_id}|{audience.value}",
            at=run.finished_at,
            timezone=policy.timezone.key,
        )
        for audience in (Audience.TECHNICAL, Audience.SAFEGUARDING)
    ]


def raise_failures(
    store: Store, policy: Policy, run_id: int, run: CheckRun, *, deliver: bool = True
) -> int:
    """Put a failed run's alerts in the outbox; returns the rows written (0 for a clean run).

    With `deliver`, they are also sent at once from here (the CLI or the check page is not the
    gateway's outbox worker, which would otherwise find them at its next poll); one that can't
    be sent now stays in the outbox for the gateway to retry. Leases stop a double send.
    """
    outbox = AlertOutbox(store)
    written: list[int] = []
    for event in failure_events(run_id, run, policy):
        logger.info("Check run %d failed: %s alert", run_id, event.audience.value)
        written += raise_alert(outbox, policy, event)
    if deliver and written:
        deliver_now(outbox, policy, written)
    return len(written)


def record_and_alert(store: Store, policy: Policy, run: CheckRun, *, deliver: bool = True) -> int:
    """Record a run and raise its failure alerts; returns the run's id."""
    run_id = record_run(store, run)
    if run.failures:
        raise_failures(store, policy, run_id, run, deliver=deliver)
    return run_id


__all__ = ["CHECK_FAILED", "failure_events", "raise_failures", "record_and_alert"]

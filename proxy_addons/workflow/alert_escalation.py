"""The escalation sweep: every minute, serious safeguarding alerts nobody acknowledged go to
the next people (alerts/escalation.py says who and when), and each step goes into the
audit trail.

One transaction per step: the claim on the alert's row, its email in the outbox and the
audit record commit together, so a step is either fully taken or not at all, and of several
gateways sharing the store exactly one takes it. The email is then tried at once; one that
fails waits in the outbox for the gateway's delivery workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from proxy_addons.alerts import escalation
from proxy_addons.alerts.dispatch import deliver_now
from proxy_addons.alerts.notify.from_policy import configured_channels
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.periodic import Periodic
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.workflow import audit
from proxy_addons.workflow.alert_cases import ESCALATE, audit_subject

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 60.0
ESCALATED = ESCALATE  # the audit trail's action, as alert_cases names it


@dataclass(frozen=True)
class Escalated:
    step: escalation.Step
    outbox_ids: tuple[int, ...]  # the email's rows (none: nobody with an address, no email)


def escalate_due(outbox: AlertOutbox, policy: Policy, now: datetime) -> list[Escalated]:
    """Take every escalation due at `now` that no other gateway took first; returns them."""
    store = outbox.store
    with store.connect() as conn:
        steps = escalation.due(conn, policy, now)
    configured = configured_channels(policy)
    done: list[Escalated] = []
    for step in steps:
        with store.begin() as conn:
            if not escalation.claim(conn, step, now):
                continue  # acknowledged meanwhile, or another gateway took it
            ids = escalation.queue(conn, policy, step, configured, now)
            audit.append(
                conn,
                actor="schoolgate",
                action=ESCALATED,
                subject=audit_subject(step.alert_id),
                detail={
                    "level": step.level,
                    "to": list(step.people),
                    "unacknowledged_minutes": step.minutes,
                    "emailed": bool(ids),
                },
                at=now,
            )
        logger.warning(
            "Alert %d not acknowledged after %d school minutes: escalated to level %d (%s)",
            step.alert_id,
            step.minutes,
            step.level,
            ", ".join(step.people) or "nobody named",
        )
        done.append(Escalated(step, tuple(ids)))
    sent = [i for e in done for i in e.outbox_ids]
    if sent:
        deliver_now(outbox, policy, sent)
    return done


class EscalationSweep(Periodic):
    """The escalation job: the gateway's services run one (gateway/services.py), for the
    store and policy in force at each run (none yet: nothing to do)."""

    interval = SWEEP_SECONDS
    thread_name = "schoolgate-escalation"
    failure = "Escalating unacknowledged alerts failed; trying again in a minute"

    def __init__(
        self,
        store: Callable[[], Store | None],
        policy: Callable[[], Policy | None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self.store, self.policy, self.clock = store, policy, clock
        self._outbox: AlertOutbox | None = None  # writes and tries; never runs workers

    def tick(self) -> None:
        self.sweep()

    def sweep(self) -> list[Escalated]:
        store, policy = self.store(), self.policy()
        if store is None or policy is None:
            return []
        if self._outbox is None or self._outbox.store is not store:
            self._outbox = AlertOutbox(store, clock=self.clock)
        return escalate_due(self._outbox, policy, self.clock())


__all__ = ["ESCALATED", "SWEEP_SECONDS", "Escalated", "EscalationSweep", "escalate_due"]

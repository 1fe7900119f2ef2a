"""Escalation of unacknowledged alerts, run by the gateway: a serious safeguarding alert
nobody acknowledged within the policy's time (in school hours) goes to the deputies, then
the headteacher (alerts/escalation.py decides; workflow/alert_escalation.py takes each step
and audits it). Every gateway sharing a store runs it; each step is taken once.
"""

from __future__ import annotations

from proxy_addons.gateway.services import Services
from proxy_addons.workflow.alert_escalation import EscalationSweep


class Escalation:
    """Adds the escalation sweep to the gateway's jobs (run once a minute)."""

    def __init__(self, services: Services) -> None:
        self.sweep = EscalationSweep(
            lambda: services.store, lambda: services.policy, services.clock
        )
        services.add_job(self.sweep)

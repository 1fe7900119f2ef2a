"""The termly-check add-on: reminds the named people when a term's filtering check is due.

Thin on purpose: `check_schedule.remind_if_due` decides and sends (through the outbox); this
only runs it hourly in the gateway, with the Filter's store and the policy in force.
"""

from __future__ import annotations

from proxy_addons.checks.schedule import CheckReminders
from proxy_addons.core.policy.model import Policy
from proxy_addons.gateway.addons.filter import Filter


class TermlyChecks:
    def __init__(self, gate: Filter) -> None:
        self.gate = gate
        self.reminders: CheckReminders | None = None

    def _policy(self) -> Policy:
        runtime = self.gate.runtime
        if runtime is None or runtime.current is None:
            raise RuntimeError("no policy is in force")
        return runtime.current.policy

    def running(self) -> None:
        if self.gate.store is not None and self.reminders is None:
            self.reminders = CheckReminders(self.gate.store, self._policy)
            self.reminders.start()

    def done(self) -> None:
        if self.reminders is not None:
            self.reminders.stop()
            self.reminders = None

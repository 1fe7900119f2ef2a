"""What a signed-in person may see and do in the console, from their account's roles and the
people the policy names.

Roles (accounts.ROLES) and the policy's lists both count: the policy names who is told
(monitoring.safeguarding, deputies, headteacher, technical...), an account's roles say who
may sign in to do the job. A governor reads reports and reviews and nothing about a person.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy_addons.core.policy.model import Policy


@dataclass(frozen=True)
class Powers:
    """One person's powers in the console; every page asks for one of these."""

    user: str
    safeguarding: bool = False  # DSL, deputies: safeguarding alerts, people, incidents, reports
    technical: bool = False  # the IT provider: technical alerts, IT reports, devices
    headteacher: bool = False  # concerns about staff, incidents, reviews
    governor: bool = False  # the governors' report and the reviews, read-only
    staff: bool = False  # unblock requests

    @property
    def console(self) -> bool:
        """Sees the DSL's console at all (alerts or reports of some kind)."""
        return self.safeguarding or self.technical or self.headteacher

    @property
    def reads_reports(self) -> bool:
        """Reads the governors' termly report and the annual reviews."""
        return self.safeguarding or self.headteacher or self.governor or self.technical

    @property
    def incidents(self) -> bool:
        """Keeps the incident log: the DSL's team and the headteacher."""
        return self.safeguarding or self.headteacher

    @property
    def signs_in(self) -> bool:
        return self.staff or self.console or self.governor

    @property
    def records_reviews(self) -> bool:
        return self.safeguarding or self.headteacher

    @property
    def filtering_changes(self) -> bool:
        """Filtering changes: the IT provider and the DSL's team propose and decide, the
        headteacher decides where changes.approvers names them."""
        return self.safeguarding or self.technical or self.headteacher

    def audiences(self) -> frozenset[str]:
        """The alert audiences (alerts table `audience`) this person sees."""
        out = set()
        if self.safeguarding:
            out.add("safeguarding")
        if self.technical:
            out.add("technical")
        if self.headteacher:
            out.add("staff")
        return frozenset(out)


def powers_of(policy: Policy, user: str, roles: frozenset[str], *, is_staff: bool) -> Powers:
    """`user`'s powers: from the policy's named people and the account's `roles`."""
    m, u = policy.monitoring, policy.unblocks
    return Powers(
        user=user,
        safeguarding=bool({"dsl", "deputy"} & roles)
        or user in m.safeguarding
        or user in m.deputies
        or user in u.deciders,
        technical="it" in roles or user in m.technical or user in u.it_provider,
        headteacher="headteacher" in roles or user in m.headteacher,
        governor="governor" in roles or user in m.chair_of_governors,
        staff=is_staff,
    )


__all__ = ["Powers", "powers_of"]

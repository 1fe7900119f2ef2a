"""Who holds which powers in the console: from account roles and the people the policy
names; a governor reads reports and nothing about a person."""

from __future__ import annotations

import pytest

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.workflow.roles import powers_of
from tests.core.test_policy_loader import EXAMPLE


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


@pytest.mark.parametrize(
    ("user", "roles", "audiences", "incidents", "reads_reports"),
    [
        ("mrs.patel", set(), {"safeguarding"}, True, True),  # the DSL, named in the policy
        ("someone", {"deputy"}, {"safeguarding"}, True, True),
        ("it.support", set(), {"technical"}, False, True),
        ("mrs.okafor", set(), {"staff"}, True, True),  # the headteacher: staff concerns
        ("anyone", {"headteacher"}, {"staff"}, True, True),
        ("mr.price", set(), set(), False, True),  # chair of governors: reports only
        ("a.governor", {"governor"}, set(), False, True),
        ("teacher", {"staff"}, set(), False, False),
    ],
)
def test_powers(
    policy: Policy,
    user: str,
    roles: set[str],
    audiences: set[str],
    incidents: bool,
    reads_reports: bool,
) -> None:
    mine = powers_of(policy, user, frozenset(roles), is_staff="staff" in roles)
    assert mine.audiences() == audiences
    assert mine.console == bool(audiences)
    assert (mine.incidents, mine.reads_reports) == (incidents, reads_reports)
    assert mine.signs_in


def test_nobody_named_and_no_role_holds_nothing(policy: Policy) -> None:
    mine = powers_of(policy, "pupil7", frozenset(), is_staff=False)
    assert not (mine.console or mine.reads_reports or mine.signs_in or mine.incidents)

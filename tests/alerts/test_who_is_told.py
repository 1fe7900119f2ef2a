"""`schoolgate policy check` says who the policy tells of what (alerts, escalation, concerns
about staff, the webhook's audience) and warns of what keeps alerts from people: nobody to
take concerns about staff, a named person with no email address."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_addons.alerts.who_is_told import summary, warnings
from proxy_addons.cli.main import main
from proxy_addons.core.policy.load import load_policy
from tests.alerts.test_routing_people import MONITORING, people_policy_file
from tests.core.test_policy_loader import EXAMPLE, example_copy


def test_the_example_says_who_is_told_and_warns_of_nothing() -> None:
    policy = load_policy(EXAMPLE)
    assert summary(policy) == [
        "alerts: safeguarding to mr.jones, mrs.patel; technical to it.support",
        "escalation: severity 4-5 safeguarding alerts nobody acknowledged within 15 minutes "
        "of school hours (08:00-17:00 on school days) go to mr.jones, then mrs.okafor",
        "concerns about staff (profiles staff and account holders): to mrs.okafor; about "
        "the headteacher, to mr.price",
    ]
    assert warnings(policy) == []


def test_missing_people_and_addresses_are_warned_of(tmp_path: Path) -> None:
    path = example_copy(
        tmp_path,
        ("  headteacher: [mrs.okafor]\n", ""),
        ("    mr.price: chair.governors@oakfield.example\n", ""),
    )
    policy = load_policy(path)
    assert warnings(policy) == [
        "no monitoring.headteacher: concerns about staff go to the safeguarding list "
        "(minus the person concerned) and escalation stops at the deputies",
        "mr.price (monitoring.chair_of_governors) has no address in notifications.contacts: "
        "they are sent no email",
    ]
    assert "then no headteacher" in summary(policy)[1]


def test_policy_check_prints_them_before_its_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monitoring = MONITORING.replace("  deputies: [mr.jones]\n", "  deputies: [mr.lee]\n")
    path = people_policy_file(tmp_path, 25, "https://it.example/hook", monitoring=monitoring)
    assert main(["policy", "check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  webhook: technical alerts" in out
    assert (
        "  warning: mr.lee (monitoring.deputies) has no address in notifications.contacts: "
        "they are sent no email"
    ) in out
    assert ": OK: " in out[-1]

"""The policy's DSL-side settings (issue 16): who alerts escalate to, where concerns about
staff go, the block page's help for sensitive categories, webhook audiences and retention;
each mistake named with its file and line."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Retention
from tests.core.test_policy_loader import EXAMPLE, example_copy, line_of, problems, the_problem


def test_the_example_names_who_is_told_and_for_how_long_records_are_kept() -> None:
    policy = load_policy(EXAMPLE)
    m = policy.monitoring
    assert (m.deputies, m.headteacher, m.chair_of_governors) == (
        {"mr.jones"},
        {"mrs.okafor"},
        {"mr.price"},
    )
    assert m.staff_profiles == {"staff"} and m.escalate_after_minutes == 15
    assert [(r.start, r.end) for r in m.school_hours] == [(time(8), time(17))]
    assert m.sensitive_categories == {"self_harm"} and len(m.trusted_adults) == 3
    assert m.review_every_months == 12
    assert policy.retention == Retention()  # the example states the defaults
    for person in ("mrs.okafor", "mr.price"):
        assert "@" in policy.notifications.contacts[person]


def test_left_out_the_settings_have_safe_defaults(tmp_path: Path) -> None:
    path = example_copy(tmp_path)
    text = path.read_text()
    start = text.index("  # A safeguarding alert of severity 4-5")
    path.write_text(text[:start] + text[text.index("\n# Enrolled devices") :])
    policy = load_policy(path)
    m = policy.monitoring
    assert (m.deputies, m.headteacher, m.sensitive_categories) == (set(), set(), set())
    assert m.staff_profiles == {"staff"}  # the example's one profile with audience: staff
    assert m.escalate_after_minutes == 15 and policy.retention == Retention()


def test_a_staff_profile_that_does_not_exist_is_named(tmp_path: Path) -> None:
    path = example_copy(tmp_path, ("staff_profiles: [staff]", "staff_profiles: [staf]"))
    file, line, message = the_problem(path)
    assert line == line_of(path, "staff_profiles:")
    assert "'staf' is not a profile" in message


def test_a_sensitive_category_that_does_not_exist_is_named(tmp_path: Path) -> None:
    path = example_copy(
        tmp_path, ("sensitive_categories: [self_harm]", "sensitive_categories: [selfharm]")
    )
    _, line, message = the_problem(path)
    assert line == line_of(path, "sensitive_categories:")
    assert "category 'selfharm' is not defined" in message


def test_escalation_minutes_and_retention_days_are_checked(tmp_path: Path) -> None:
    path = example_copy(
        tmp_path,
        ("after_minutes: 15", "after_minutes: 0"),
        ("reports_days: 365", "reports_days: soon"),
    )
    from_lines = {line for _, line, _ in problems(path)}
    assert from_lines == {line_of(path, "after_minutes:"), line_of(path, "  reports_days:")}


def test_a_webhook_audience_must_be_one_of_three(tmp_path: Path) -> None:
    path = example_copy(
        tmp_path,
        ("#  webhook:\n", "  webhook:\n"),
        ("#    url: https://it-provider", "    url: https://it-provider"),
        ("#    secret_file: secrets/webhook-secret\n", "    secret_file: secrets/webhook-secret\n"),
        ("#    audience: technical ", "    audience: pupils    "),
    )
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "webhook-secret").write_text("a shared secret for signatures\n")
    _, line, message = the_problem(path)
    assert line == line_of(path, "audience: pupils")
    assert "safeguarding, technical, all" in message
    path.write_text(path.read_text().replace("audience: pupils", "audience: technical"))
    webhook = load_policy(path).notifications.webhook
    assert webhook is not None and webhook.audience == "technical"


def test_left_out_staff_profiles_are_every_profile_for_staff(tmp_path: Path) -> None:
    path = example_copy(
        tmp_path,
        ("  staff_profiles: [staff]\n", ""),
        (
            "    label: Key Stage 2 pupils\n    audience: learner",
            "    label: Key Stage 2 pupils\n    audience: staff",
        ),
    )
    assert load_policy(path).monitoring.staff_profiles == {"staff", "ks2"}

"""What an unblock request may ask for: the window's end and the audience, each refused
with a sentence for the person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.unblocks import AudienceKind
from proxy_addons.store import Store
from proxy_addons.workflow.accounts import add_account
from proxy_addons.workflow.unblock_limits import check_audience, window_end
from tests.conftest import ROOT

POLICY = load_policy(ROOT / "tests/data/policy/school.yaml")
NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)  # a Wednesday, in the 10:00-11:00 lesson


def test_the_window_ends_at_the_time_given_after_minutes_or_with_the_lesson() -> None:
    assert window_end(POLICY, NOW, None, None) == datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    assert window_end(POLICY, NOW, None, 40) == NOW + timedelta(minutes=40)
    naive = datetime(2026, 11, 26, 9, 0)  # school time: London is on UTC in November
    assert window_end(POLICY, NOW, naive, None) == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("until", "minutes", "sentence"),
    [
        (None, 0, "more than 0"),
        (NOW - timedelta(minutes=1), None, "already passed"),
        (NOW + timedelta(days=8), None, "at most 7 days"),
    ],
)
def test_a_window_that_asks_too_much_is_refused(
    until: datetime | None, minutes: int | None, sentence: str
) -> None:
    with pytest.raises(ValueError, match=sentence):
        window_end(POLICY, NOW, until, minutes)


def test_outside_lessons_an_end_must_be_given() -> None:
    with pytest.raises(ValueError, match="not lesson time"):
        window_end(POLICY, NOW.replace(hour=12, minute=30), None, None)


def test_an_extension_counts_max_days_from_the_start() -> None:
    start = NOW - timedelta(days=6)
    assert window_end(POLICY, start, NOW + timedelta(hours=23), None, now=NOW)
    with pytest.raises(ValueError, match="at most 7 days"):
        window_end(POLICY, start, NOW + timedelta(days=2), None, now=NOW)


def test_the_audience_must_exist(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    check_audience(store, POLICY, AudienceKind.PROFILE, ("ks2",))
    check_audience(store, POLICY, AudienceKind.USERS, ("pupil", "teacher"))
    with pytest.raises(ValueError, match="No profile called ks9"):
        check_audience(store, POLICY, AudienceKind.PROFILE, ("ks9",))
    with pytest.raises(ValueError, match=r"Unknown user\(s\): visitor"):
        check_audience(store, POLICY, AudienceKind.USER, ("visitor",))
    add_account(store, "visitor", "a long passphrase 1", ["staff"])
    check_audience(store, POLICY, AudienceKind.USER, ("visitor",))

"""`devices.thresholds`: the figures devices are judged by; defaults are the DfE standard's
and NCSC's, a school may be stricter, and a mistake is named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.checks.thresholds import Thresholds
from proxy_addons.core.policy.load import PolicyError, load_policy
from tests.conftest import copy_policy


def with_devices(tmp_path: Path, section: str) -> Path:
    path = copy_policy(tmp_path)
    path.write_text(path.read_text() + "\n" + section)
    return path


def test_defaults_are_the_standards_figures(tmp_path: Path) -> None:
    got = load_policy(copy_policy(tmp_path)).devices.thresholds
    assert got == Thresholds()
    assert (got.security_update_max_days, got.lockout_max_attempts) == (14, 10)
    assert (got.laptop_support_years, got.tablet_support_years) == (5, 3)


def test_the_school_sets_its_own(tmp_path: Path) -> None:
    section = (
        "devices:\n  thresholds:\n    screen_lock_minutes: 5\n    screen_lock_delay_seconds: 0\n"
        "    patch_max_age_days: 7\n    password_min_length: 14\n    lockout_max_attempts: 5\n"
        "    laptop_support_years: 6\n    tablet_support_years: 4\n"
        "    antimalware_max_age_days: 3\n"
    )
    got = load_policy(with_devices(tmp_path, section)).devices.thresholds
    assert got == Thresholds(
        idle_lock_max_s=300,
        lock_delay_max_s=0,
        security_update_max_days=7,
        password_min_length=14,
        lockout_max_attempts=5,
        laptop_support_years=6,
        tablet_support_years=4,
        av_signature_max_days=3,
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("patch_max_age_days: 30", "patch_max_age_days should be at most 14: the DfE standard"),
        ("lockout_max_attempts: 20", "lockout_max_attempts should be at most 10: the DfE"),
        ("screen_lock_minutes: 0", "screen_lock_minutes should be a whole number from 1 to 60"),
        ("password_min_length: twelve", "password_min_length should be a whole number"),
        ("screen_lock_minute: 5", "Did you mean 'screen_lock_minutes'"),
    ],
)
def test_mistakes_are_named_with_their_line(tmp_path: Path, setting: str, message: str) -> None:
    path = with_devices(tmp_path, f"devices:\n  thresholds:\n    {setting}\n")
    line = len(path.read_text().splitlines())
    with pytest.raises(PolicyError, match=message) as caught:
        load_policy(path)
    assert f":{line}" in str(caught.value) or f"line {line}" in str(caught.value)

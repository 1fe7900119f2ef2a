"""The shared judgements of the DfE device checks (agent/checks/judge.py, base.judge_patches)
and the memory they keep between reports (agent/checks/memory.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from agent.checks.base import Context, Pending, judge_patches
from agent.checks.judge import (
    chassis_kind,
    judge_accounts,
    judge_hardware_age,
    judge_password_policy,
    judge_removable_storage,
    judge_software,
    matches,
)
from agent.checks.memory import Memory
from agent.checks.thresholds import Thresholds, thresholds_from_json
from agent.runner import FixtureRunner

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def ctx(memory: Memory | None = None, **changes: object) -> Context:
    runner = FixtureRunner(Path(__file__).parents[1] / "data" / "agent" / "debian-12")
    return Context(runner, replace(Thresholds(), **changes), NOW, memory or Memory())


def test_lists_travel_from_gateway_to_agent_and_odd_ones_keep_defaults() -> None:
    t = Thresholds(software_banned=("tor browser*",), usb_storage_allowed=True)
    assert thresholds_from_json(t.to_json()) == t
    odd = {"software_banned": "tor", "admin_accounts_approved": [1], "usb_storage_allowed": "yes"}
    assert thresholds_from_json(odd) == Thresholds()


def test_patterns_ignore_case() -> None:
    assert matches("Tor Browser 13.0", ["tor browser*"]) == "tor browser*"
    assert matches("Firefox", ["tor*"]) is None


def test_software_banned_unapproved_and_new_since_the_last_report() -> None:
    memory = Memory()
    c = ctx(memory, software_banned=("*utorrent*",), software_approved=("firefox", "libre*"))
    first = judge_software("software", ["Firefox", "LibreOffice"], c)
    assert first.status == "pass" and first.evidence["new_since_last_report"] is None
    second = judge_software("software", ["Firefox", "LibreOffice", "uTorrent", "Steam"], c)
    assert second.status == "fail"
    assert second.evidence["banned"] == ["uTorrent"]
    assert second.evidence["unapproved"] == ["Steam"]
    assert second.evidence["new_since_last_report"] == ["Steam", "uTorrent"]
    assert judge_software("software", None, c).status == "unknown"
    assert judge_software("software", [], c).status == "unknown"


def test_memory_survives_a_restart_and_a_damaged_file(tmp_path: Path) -> None:
    m = Memory()
    m.first_seen("security_updates", ["openssl"], NOW - timedelta(days=20))
    m.remember("software", ["Firefox"])
    m.save(tmp_path)
    again = Memory.load(tmp_path)
    assert again.first_seen("security_updates", ["openssl"], NOW)["openssl"] == NOW - timedelta(
        days=20
    )
    assert again.previous("software") == frozenset({"Firefox"})
    (tmp_path / "memory.json").write_text("{not json")
    assert Memory.load(tmp_path).previous("software") is None


def test_patch_age_published_first_seen_and_unknown() -> None:
    ev = {
        "auto_updates": True,
        "security": 1,
        "last_update": (NOW - timedelta(days=30)).isoformat(),
    }
    old = [Pending("KB5046617", NOW - timedelta(days=20))]
    r = judge_patches("patches", dict(ev), ctx(), old)
    assert r.status == "fail" and r.evidence["oldest_pending_days"] == 20
    assert r.evidence["oldest_basis"] == "published"
    fresh = [Pending("KB5048667", NOW - timedelta(days=3))]
    assert judge_patches("patches", dict(ev), ctx(), fresh).status == "pass"
    # first seen today, no update for 30 days: can't tell yet; never a pass
    seen_now = judge_patches("patches", dict(ev), ctx(), [Pending("openssl")])
    assert seen_now.status == "unknown"
    memory = Memory()
    memory.first_seen("security_updates", ["openssl"], NOW - timedelta(days=15))
    watched = judge_patches("patches", dict(ev), ctx(memory), [Pending("openssl")])
    assert watched.status == "fail" and watched.evidence["oldest_basis"] == "first seen pending"


def test_accounts_each_part() -> None:
    c = ctx(admin_accounts_approved=("itadmin",))
    good = judge_accounts(
        "accounts", c, user="pupil", admins=["itadmin"], autologin=False, guest=False
    )
    assert good.status == "pass"
    assert (
        judge_accounts(
            "accounts", c, user="pupil", admins=["itadmin", "pupil"], autologin=False, guest=False
        ).status
        == "fail"
    )
    assert (
        judge_accounts(
            "accounts", c, user="pupil", admins=["itadmin"], autologin=True, guest=False
        ).status
        == "fail"
    )
    assert (
        judge_accounts(
            "accounts", c, user="pupil", admins=None, autologin=False, guest=False
        ).status
        == "unknown"
    )
    # a failing part wins over an unreadable one
    assert (
        judge_accounts("accounts", c, user="pupil", admins=None, autologin=False, guest=True).status
        == "fail"
    )


def test_password_policy_against_the_standard() -> None:
    c = ctx()
    assert judge_password_policy("password_policy", c, min_length=12, lockout=10).status == "pass"
    assert judge_password_policy("password_policy", c, min_length=8, lockout=5).status == "fail"
    assert judge_password_policy("password_policy", c, min_length=14, lockout=0).status == "fail"
    assert (
        judge_password_policy("password_policy", c, min_length=14, lockout=None).status == "unknown"
    )


def test_chassis_types_say_the_kind() -> None:
    assert chassis_kind([10]) == "laptop" and chassis_kind([3]) == "desktop"
    assert chassis_kind([24]) == "desktop"  # sealed-case PC, on Linux as on Windows
    assert chassis_kind([10, 30]) == "tablet"  # a detachable that says tablet: 3 years
    assert chassis_kind([1, 2]) is None and chassis_kind([]) is None


def test_hardware_age_by_kind() -> None:
    c = ctx()
    made = date(2022, 6, 1)
    laptop = judge_hardware_age("hardware_age", c, made=made, kind="laptop", basis="firmware date")
    tablet = judge_hardware_age("hardware_age", c, made=made, kind="tablet", basis="firmware date")
    assert (laptop.status, tablet.status) == ("pass", "fail")
    assert (
        judge_hardware_age("hardware_age", c, made=None, kind=None, basis="no date").status
        == "unknown"
    )


def test_removable_storage_and_the_approved_list() -> None:
    assert (
        judge_removable_storage("removable_storage", ctx(), blocked=False, how="udev").status
        == "fail"
    )
    assert (
        judge_removable_storage("removable_storage", ctx(), blocked=None, how="udev").status
        == "unknown"
    )
    allowed = ctx(usb_storage_allowed=True)
    assert (
        judge_removable_storage("removable_storage", allowed, blocked=False, how="udev").status
        == "pass"
    )


def test_accounts_with_no_one_signed_in_judges_the_rest() -> None:
    c = ctx(admin_accounts_approved=("itadmin",))
    parts = {"admins": ["itadmin"], "autologin": False, "guest": False}
    nobody = judge_accounts("accounts", c, user="", **parts)  # type: ignore[arg-type]
    assert nobody.status == "pass" and nobody.reason.startswith("No one is signed in")
    unread = judge_accounts("accounts", c, user=None, **parts)  # type: ignore[arg-type]
    assert unread.status == "unknown"

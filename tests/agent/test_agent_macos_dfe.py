"""The DfE device checks on macOS (issue 19): patches' age, hardware age, removable storage,
software, accounts and the password policy, on the recorded sets (tests/data/agent/macos-*,
their sources in meta.json) and on small fixtures of published real output."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.checks import run_checks
from agent.checks.base import Context
from agent.checks.macos_accounts import accounts, password_policy, read_password_policy, software
from agent.checks.macos_hardware import MODEL_YEAR, SYSTEMUISERVER, hardware_age, removable_storage
from agent.checks.macos_updates import Update, is_security, parse_list, patches
from agent.checks.memory import Memory
from agent.checks.thresholds import Thresholds
from agent.runner import FixtureRunner

DATA = Path(__file__).parents[1] / "data" / "agent"
NEW = ("hardware_age", "removable_storage", "software", "accounts", "password_policy")
SCHOOL = Thresholds(
    admin_accounts_approved=("itadmin",), software_banned=("tor browser*", "*torrent*")
)
LOGIN = "/Library/Preferences/com.apple.loginwindow"
SU = "/Library/Preferences/com.apple.SoftwareUpdate"

# Each set, each new check, by the default thresholds and by a school's lists.
EXPECTED = {
    "macos-14": {
        "default": ["pass", "pass", "pass", "fail", "pass"],  # itadmin not approved by default
        "school": ["pass", "pass", "pass", "pass", "pass"],
    },
    "macos-15": {
        "default": ["pass", "fail", "pass", "fail", "fail"],  # MacBookAir9,1 (2020) within 5 y
        "school": ["pass", "fail", "fail", "fail", "fail"],  # Tor Browser, uTorrent Web banned
    },
    "macos-14-de": {
        "default": ["pass", "unknown", "pass", "fail", "fail"],
        "school": ["pass", "unknown", "pass", "unknown", "fail"],  # guest: OS version garbled
    },
}

# `softwareupdate --list` on macOS Ventura 13.5 offering 13.6, Sonoma and Safari, 2023-10-04:
# github.com/Macjutsu/super/issues/151 (verbatim, trailing spaces included).
SU_SUPER_151 = (
    "Software Update Tool\n\nFinding available software\n"
    "Software Update found the following new or updated software:\n"
    "* Label: Safari17.0VenturaAuto-17.0\n"
    "\tTitle: Safari, Version: 17.0, Size: 161835KiB, Recommended: YES, \n"
    "* Label: macOS Ventura 13.6-22G120\n"
    "\tTitle: macOS Ventura 13.6, Version: 13.6, Size: 594108KiB, Recommended: YES, "
    "Action: restart, \n"
    "* Label: macOS Sonoma 14.0-23A344\n"
    "\tTitle: macOS Sonoma 14.0, Version: 14.0, Size: 4404034KiB, Recommended: YES, "
    "Action: restart, \n"
)
SW_VERS_13 = "ProductName:\t\tmacOS\nProductVersion:\t\t13.5.2\nBuildVersion:\t\t22G91\n"
NOW = datetime(2023, 10, 4, 12, 0, tzinfo=UTC)


def fixture_set(name: str, thresholds: Thresholds) -> dict[str, str]:
    meta = json.loads((DATA / name / "meta.json").read_text())
    ctx = Context(FixtureRunner(DATA / name), thresholds, datetime.fromisoformat(meta["now"]))
    return {r.id: r.status for r in run_checks("macos", ctx)}


def small(tmp_path: Path, commands: dict[str, object], apps: tuple[str, ...] = ()) -> FixtureRunner:
    """A fixture folder from {argv joined by spaces: stdout or {"rc", "stdout", "stderr"}}."""
    (tmp_path / "commands").mkdir(parents=True)
    index = {}
    for i, (key, spec) in enumerate(commands.items()):
        spec = {"stdout": spec} if isinstance(spec, str) else dict(spec)  # type: ignore[arg-type]
        entry: dict[str, object] = {"rc": spec.get("rc", 0)}
        for stream in ("stdout", "stderr"):
            if stream in spec:
                (tmp_path / "commands" / f"{i}.{stream}").write_text(str(spec[stream]))
                entry[stream] = f"{i}.{stream}"
        index[key] = entry
    (tmp_path / "commands" / "index.json").write_text(json.dumps(index))
    for app in apps:
        (tmp_path / "root" / "Applications" / f"{app}.app").mkdir(parents=True)
    return FixtureRunner(tmp_path)


def ctx(runner: FixtureRunner, now: datetime = NOW, **changes: object) -> Context:
    return Context(runner, replace(SCHOOL, **changes), now, Memory())


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("which", ["default", "school"])
def test_fixture_sets(name: str, which: str) -> None:
    got = fixture_set(name, Thresholds() if which == "default" else SCHOOL)
    assert [got[c] for c in NEW] == EXPECTED[name][which]


def test_every_set_names_its_sources() -> None:
    for name in EXPECTED:
        sources = json.loads((DATA / name / "meta.json").read_text())["sources"]
        assert sources and all(set(s) == {"command", "source", "version"} for s in sources)


# ---- patches -------------------------------------------------------------------------------


def test_security_updates_are_the_installed_majors_and_apples_security_content() -> None:
    updates = parse_list(SU_SUPER_151)
    assert updates is not None and [u.label for u in updates] == [
        "Safari17.0VenturaAuto-17.0",
        "macOS Ventura 13.6-22G120",
        "macOS Sonoma 14.0-23A344",
    ]
    assert [is_security(u, 13) for u in updates] == [False, True, False]  # Sonoma: an upgrade
    for title in (
        "macOS Security Response 13.4.1 (a)",
        "Background Security Improvement",
        "XProtectPayloads",
        "Security Update 2024-001",
    ):
        assert is_security(Update(title, title, True, False), 14)
    assert (
        parse_list(
            "Software Update Tool\n\nFinding available software\nNo new software available.\n"
        )
        == []
    )
    assert parse_list("Softwareaktualisierungs-Tool\nKeine neue Software verfügbar.\n") is None


def _updates_runner(tmp_path: Path, last: str, sw_vers: str = SW_VERS_13) -> FixtureRunner:
    return small(
        tmp_path,
        {
            "softwareupdate --list": SU_SUPER_151,
            "sw_vers": sw_vers,
            f"defaults read {SU} LastFullSuccessfulDate": last,
            f"defaults read {SU} AutomaticCheckEnabled": "1\n",
            f"defaults read {SU} CriticalUpdateInstall": "1\n",
        },
    )


def test_patches_judged_by_when_the_security_update_was_first_seen(tmp_path: Path) -> None:
    runner = _updates_runner(tmp_path, "2023-10-01 08:00:00 +0000\n")
    fresh = patches(ctx(runner))
    assert fresh.status == "pass"  # first seen now, last update 3 days ago
    assert fresh.evidence["security_pending"] == [
        "macOS Ventura 13.6-22G120 (0 d, first seen pending)"
    ]
    assert fresh.evidence["pending"] == 3 and fresh.evidence["os_major"] == 13
    memory = Memory()
    memory.first_seen("security_updates", ["macOS Ventura 13.6-22G120"], NOW - timedelta(days=20))
    old = patches(Context(runner, SCHOOL, NOW, memory))
    assert old.status == "fail" and "waited 20 days" in old.reason


def test_an_os_update_with_the_version_unreadable_is_unknown(tmp_path: Path) -> None:
    runner = _updates_runner(tmp_path, "2023-10-01 08:00:00 +0000\n", "Produktversion: 13,5\n")
    got = patches(ctx(runner))
    assert got.status == "unknown" and "installed version" in got.reason


# ---- hardware ------------------------------------------------------------------------------


def test_hardware_age_fails_past_the_support_years_and_unknown_models_stay_unknown(
    tmp_path: Path,
) -> None:
    later = datetime(2026, 1, 5, tzinfo=UTC)  # the 2020 MacBook Air is 5.5 years old
    runner = FixtureRunner(DATA / "macos-15")
    got = hardware_age(Context(runner, SCHOOL, later))
    assert got.status == "fail" and got.evidence["kind"] == "laptop"
    assert "MacBookAir9,1 is a model introduced in 2020" in got.reason
    mini = "Hardware Overview:\n\n      Model Name: Mac mini\n      Model Identifier: Mac99,1\n"
    unknown = hardware_age(ctx(small(tmp_path, {"system_profiler SPHardwareDataType": mini})))
    assert unknown.status == "unknown" and "not in the agent's table" in unknown.reason
    assert unknown.evidence["kind"] == "desktop"
    assert all(1990 < year <= 2026 for year in MODEL_YEAR.values())


# ---- removable storage ---------------------------------------------------------------------


def _storage(tmp_path: Path, sysui: object, profiles: object) -> FixtureRunner:
    return small(
        tmp_path,
        {
            f"plutil -convert xml1 -o - {SYSTEMUISERVER}": sysui,
            "profiles show -type configuration": profiles,
        },
    )


def test_read_only_external_disks_are_not_blocked(tmp_path: Path) -> None:
    sysui = (DATA / "macos-14" / "commands").glob("*plutil*")
    text = next(sysui).read_text().replace("<string>deny</string>", "<string>read-only</string>")
    got = removable_storage(
        ctx(_storage(tmp_path, text, "There are 1 configuration profiles installed\n"))
    )
    assert got.status == "fail" and "read-only" in got.reason
    allowed = removable_storage(
        ctx(_storage(tmp_path / "b", text, {"rc": 1}), usb_storage_allowed=True)
    )
    assert allowed.status == "pass" and "approved list" in allowed.reason


def test_profiles_listed_without_root_are_only_the_users(tmp_path: Path) -> None:
    # without root, `profiles show` lists the user's profiles only, and says so
    users = "There are no configuration profiles installed for user 'pupil'\n"
    missing = {"rc": 1, "stderr": f"{SYSTEMUISERVER}: file does not exist or is not readable\n"}
    got = removable_storage(ctx(_storage(tmp_path, missing, users)))
    assert got.status == "unknown" and "without root" in got.reason
    root = "There are no configuration profiles installed\n"
    assert removable_storage(ctx(_storage(tmp_path / "b", missing, root))).status == "fail"


def test_unreadable_managed_preferences_are_unknown(tmp_path: Path) -> None:
    damaged = {"rc": 1, "stderr": "plutil: Operation not permitted\n"}
    got = removable_storage(
        ctx(_storage(tmp_path, damaged, "There are no configuration profiles installed\n"))
    )
    assert got.status == "unknown" and "couldn't be read" in got.reason


# ---- accounts ------------------------------------------------------------------------------


PRIMARY = "_spotlight                       89\nroot                            0\npupil   20\n"


def _accounts(
    tmp_path: Path, admins: object, autologin: object, guest: object, primary: object = PRIMARY
) -> FixtureRunner:
    return small(
        tmp_path,
        {
            "dscl . -read /Groups/admin GroupMembership": admins,
            f"defaults read {LOGIN} autoLoginUser": autologin,
            f"defaults read {LOGIN} GuestEnabled": guest,
            "stat -f%Su /dev/console": "pupil\n",
            "sw_vers": SW_VERS_13,
            "dscl . -list /Users PrimaryGroupID": primary,
        },
    )


def test_an_admin_by_primary_group_counts_and_an_unread_list_is_unknown(tmp_path: Path) -> None:
    absent = {
        "rc": 1,
        "stderr": f"The domain/default pair of ({LOGIN}, autoLoginUser) does not exist\n",
    }
    hidden = PRIMARY.replace("pupil   20", "pupil   80")  # admin without GroupMembership
    got = accounts(
        ctx(_accounts(tmp_path / "a", "GroupMembership: root itadmin\n", absent, "0\n", hidden))
    )
    assert got.status == "fail" and got.evidence["admins"] == ["itadmin", "pupil"]
    assert "pupil is a local administrator" in got.reason
    unread = {"rc": 184, "stderr": "DS Error: -14136\n"}
    got = accounts(
        ctx(_accounts(tmp_path / "b", "GroupMembership: root itadmin\n", absent, "0\n", unread))
    )
    assert got.status == "unknown" and got.evidence["admins"] is None


def test_accounts_read_and_unread(tmp_path: Path) -> None:
    gone = {"rc": 1, "stderr": "The domain/default pair of (x, GuestEnabled) does not exist\n"}
    only_root = _accounts(tmp_path / "a", "No such key: GroupMembership\n", gone, "0\n")
    assert accounts(ctx(only_root)).status == "unknown"  # autologin's error is not "absent"
    assert accounts(ctx(only_root)).evidence["admins"] == []
    absent_login = {
        "rc": 1,
        "stderr": f"The domain/default pair of ({LOGIN}, autoLoginUser) does not exist\n",
    }
    on_13 = _accounts(tmp_path / "b", "GroupMembership: root itadmin\n", absent_login, gone)
    got = accounts(ctx(on_13))
    assert got.status == "unknown" and "guest" in got.reason  # absent means on before macOS 14
    at_login_window = _accounts(
        tmp_path / "d", "GroupMembership: root itadmin\n", absent_login, "0\n"
    )
    (tmp_path / "d" / "commands" / "3.stdout").write_text("root\n")  # root owns the console
    idle = accounts(ctx(at_login_window))
    assert idle.status == "pass" and idle.reason.startswith("No one is signed in")
    broken = _accounts(
        tmp_path / "c", {"rc": 184, "stderr": "DS Error: -14136\n"}, absent_login, "0\n"
    )
    assert accounts(ctx(broken)).status == "unknown"


# ---- password policy -----------------------------------------------------------------------


def test_password_policy_parsing() -> None:
    real = (DATA / "macos-14" / "commands").glob("*pwpolicy*")
    assert read_password_policy(next(real).read_text()) == (12, 10)
    assert read_password_policy("Getting global account policies\n") == (0, 0)
    assert read_password_policy("Getting global account policies\n<plist><dict>") is None
    assert read_password_policy("Passwortrichtlinien werden geladen\n") is None


def test_password_policy_needs_root(tmp_path: Path) -> None:
    runner = small(tmp_path, {"pwpolicy -getaccountpolicies": {"rc": 1, "stderr": "Error\n"}})
    got = password_policy(ctx(runner))
    assert got.status == "unknown" and "needs root" in got.evidence["why"]


# ---- software ------------------------------------------------------------------------------


def test_software_new_since_the_last_report_and_no_folder(tmp_path: Path) -> None:
    runner = small(tmp_path, {}, apps=("Safari", "Minecraft"))
    memory = Memory()
    memory.remember("software", ["Safari"])
    got = software(Context(runner, SCHOOL, NOW, memory))
    assert got.status == "pass" and got.evidence["new_since_last_report"] == ["Minecraft"]
    banned = software(ctx(runner, software_banned=("minecraft",)))
    assert banned.status == "fail"
    assert software(ctx(small(tmp_path / "empty", {}))).status == "unknown"


def test_software_in_a_folder_under_applications_is_listed(tmp_path: Path) -> None:
    runner = small(tmp_path, {}, apps=("Safari",))
    suite = tmp_path / "root" / "Applications" / "Games"
    (suite / "Tor Browser.app").mkdir(parents=True)
    (tmp_path / "root" / "Applications" / ".DS_Store").write_text("")
    got = software(ctx(runner))
    assert got.status == "fail" and got.evidence["banned"] == ["Tor Browser"]
    assert got.evidence["folders"]["/Applications/Games"] == 1

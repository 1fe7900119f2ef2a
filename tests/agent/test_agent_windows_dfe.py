"""The DfE standard's Windows checks (agent/checks/windows_dfe.py, and patches by publication
date) on the Windows fixture sets, English and German, and on small recorded answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from agent.checks import windows as W
from agent.checks import windows_dfe as D
from agent.checks.base import Context
from agent.checks.memory import Memory
from agent.checks.thresholds import Thresholds
from agent.checks.windows_probe import powershell as ps
from agent.report import CheckResult
from agent.runner import NOT_FOUND, CommandResult
from tests.agent.test_agent_checks import DATA, results

NEW = ("hardware_age", "removable_storage", "software", "accounts", "password_policy")
NOW = datetime(2024, 11, 25, 10, tzinfo=UTC)

EXPECTED = {
    "windows-11": {
        "hardware_age": "fail",  # firmware of July 2018 (real date, osquery#4771)
        "removable_storage": "fail",  # USBSTOR off, but UASPStor (USB 3 drives) on
        "software": "pass",  # no banned list by default
        "accounts": "fail",  # administrators not on the (empty) approved list
        "password_policy": "fail",  # real Server 2016 export: no minimum, no lockout
    },
    "windows-11-de": {
        "hardware_age": "pass",  # 2022 firmware
        "removable_storage": "pass",  # Deny_All, read from the registry value
        "software": "pass",
        "accounts": "unknown",  # Get-LocalGroupMember failed (error id, not German text)
        "password_policy": "pass",  # secedit's INI keys are the same in German
    },
}


class Canned:
    """A Runner that answers the given commands and nothing else (exit 127)."""

    def __init__(self, answers: dict[str, tuple[int, str, str] | str]) -> None:
        self.answers = answers

    def run(self, argv: list[str], timeout: float = 20.0) -> CommandResult:
        got = self.answers.get(" ".join(argv))
        if got is None:
            return CommandResult(NOT_FOUND, "", "command not found")
        if isinstance(got, str):
            return CommandResult(0, got, "")
        return CommandResult(*got)

    def read(self, path: str) -> str | None:
        return None

    def listdir(self, path: str) -> list[str] | None:
        return None


def key(argv: list[str]) -> str:
    return " ".join(argv)


def run(probe, answers, thresholds: Thresholds | None = None, memory: Memory | None = None):
    ctx = Context(Canned(answers), thresholds or Thresholds(), NOW, memory or Memory())
    result: CheckResult = probe(ctx)
    assert result.reason and "\n" not in result.reason
    return result


def js(obj: object) -> str:
    return json.dumps(obj, indent=4) + "\r\n"


# ---- the fixture sets -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_sets(name: str) -> None:
    got = results(name)
    assert tuple(got)[-len(NEW) :] == NEW
    assert {k: got[k].status for k in NEW} == EXPECTED[name]
    for r in got.values():
        assert r.reason and "\n" not in r.reason and len(repr(r.evidence)) < 4000


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sets_say_where_their_outputs_came_from(name: str) -> None:
    meta = json.loads((DATA / name / "meta.json").read_text())
    assert meta["sources"] and all(
        {"command", "source", "version"} <= set(s) for s in meta["sources"]
    )
    readme = (DATA / "README.md").read_text()
    for s in meta["sources"]:
        for url in (w for w in s["source"].split() if w.startswith("https://")):
            assert url.rstrip(")") in readme


def test_english_set_evidence() -> None:
    got = results("windows-11")
    hw = got["hardware_age"].evidence
    assert (hw["made"], hw["kind"], hw["age_years"]) == ("2018-07-02", "laptop", 6.4)
    usb = got["removable_storage"]
    assert "UASPStor" in usb.reason and usb.evidence["usbstor_start"] == 4
    sw = got["software"].evidence
    assert sw["installed"] == 7  # the SystemComponent and the Office update left out
    acc = got["accounts"].evidence
    assert acc["admins"] == ["itadmin", "SCHOOL\\Domain Admins"]
    assert acc["disabled_admins"] == ["Administrator"]  # the built-in one, disabled
    assert acc["user"] == "SCHOOL\\j.smith" and acc["guest"] is False
    pw = got["password_policy"].evidence
    assert (pw["min_length"], pw["lockout_attempts"]) == (0, 0)
    approved = Thresholds(admin_accounts_approved=("itadmin", "SCHOOL\\Domain Admins"))
    assert results("windows-11", approved)["accounts"].status == "pass"


def test_german_set_reads_sids_and_ini_keys_not_words() -> None:
    got = results("windows-11-de")
    acc = got["accounts"]
    assert acc.evidence["guest"] is False  # "Gast", found by its SID ending -501
    assert acc.evidence["admins_error"].endswith(".GetLocalGroupMemberCommand")
    assert "administrators" in acc.reason
    assert got["password_policy"].evidence["min_length"] == 12
    # the first six checks stay unknown on German error text and garbled output
    assert {got[k].status for k in got if k not in NEW} == {"unknown"}


# ---- patches: the oldest pending security update by its publication date -------------------


def _updates(*pending: dict[str, object], last: str = "2024-11-19T03:12:40Z") -> dict[str, str]:
    data = {"Pending": list(pending), "LastSuccess": last, "RebootRequired": False}
    return {key(ps(W.WINDOWS_UPDATE)): js({**data, "NoAutoUpdate": None})}


def test_patches_fail_on_a_security_update_published_over_14_days_ago() -> None:
    lcu = {"Title": "2024-10 Cumulative Update (KB5044285)", "KB": ["5044285"]}
    lcu |= {"Severity": "Important", "Published": "2024-10-08T00:00:00", "Categories": []}
    got = run(W.patches, _updates(lcu))
    assert got.status == "fail" and "48 days (published)" in got.reason


def test_patches_ignore_moderate_non_security_updates_and_name_by_kb() -> None:
    driver = {"Title": None, "KB": [5001716], "Severity": "Moderate"}
    driver |= {"Published": "2023-01-01T00:00:00", "Categories": ["other"]}
    assert run(W.patches, _updates(driver)).status == "pass"
    driver["Severity"] = "Critical"
    got = run(W.patches, _updates(driver))
    assert got.status == "fail" and got.evidence["oldest_pending"] == "KB5001716"


def test_patches_without_a_date_count_from_first_seen() -> None:
    memory = Memory()
    update = {"Title": "Security update A", "Categories": [W.SECURITY_UPDATES]}
    old = "2024-10-01T00:00:00Z"  # no update for 55 days: can't tell how long A waited
    assert run(W.patches, _updates(update, last=old), memory=memory).status == "unknown"
    memory.first["security_updates"]["Security update A"] = (NOW - timedelta(days=20)).isoformat()
    got = run(W.patches, _updates(update, last=old), memory=memory)
    assert got.status == "fail" and got.evidence["oldest_basis"] == "first seen pending"


# ---- hardware age -----------------------------------------------------------------------------


def _hardware(**row: object) -> dict[str, str]:
    base = {"ReleaseDate": "2021-09-01", "Manufacturer": "HP", "Model": "ProBook 450 G8"}
    return {key(ps(D.HARDWARE)): js({**base, "ChassisTypes": [10], **row})}


def test_hardware_age_by_kind_and_date_format() -> None:
    assert run(D.hardware_age, _hardware()).status == "pass"  # 3.2 years, laptop
    tablet = run(D.hardware_age, _hardware(ChassisTypes=[30]))
    assert tablet.status == "fail" and tablet.evidence["kind"] == "tablet"  # 3 years for tablets
    dmtf = run(D.hardware_age, _hardware(ReleaseDate="20180702000000.000000+000", ChassisTypes=[3]))
    assert dmtf.status == "fail" and dmtf.evidence["kind"] == "desktop"
    assert run(D.hardware_age, _hardware(ReleaseDate="/Date(1630454400000)/")).status == "pass"


def test_hardware_age_unknown_for_vms_and_odd_dates() -> None:
    vm = run(
        D.hardware_age, _hardware(Manufacturer="Microsoft Corporation", Model="Virtual Machine")
    )
    assert vm.status == "unknown" and "virtual machine" in vm.reason
    odd = run(D.hardware_age, _hardware(ReleaseDate="15.03.2022"))
    assert odd.status == "unknown" and "15.03.2022" in odd.reason
    assert run(D.hardware_age, {}).status == "unknown"


# ---- removable storage ------------------------------------------------------------------------

MISSING = (1, "", "ERROR: The system was unable to find the specified registry key or value.\r\n")
POLICY = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\RemovableStorageDevices"


def _storage(policy="", usb: int | None = 3, uas: int | None = 3) -> dict[str, object]:
    def start(name: str, value: int | None) -> object:
        path = f"HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\{name}"
        return (
            MISSING
            if value is None
            else f"\r\n{path}\r\n    Start    REG_DWORD    {value:#x}\r\n\r\n"
        )

    return {
        key(["reg", "query", D.STORAGE_POLICY, "/s"]): policy or MISSING,
        key(["reg", "query", D.USBSTOR, "/v", "Start"]): start("USBSTOR", usb),
        key(["reg", "query", D.UASPSTOR, "/v", "Start"]): start("UASPStor", uas),
    }


def _disks(*values: str) -> str:
    lines = [f"    {v}    REG_DWORD    0x1" for v in values]
    return "\r\n".join(["", POLICY, "", f"{POLICY}\\{D.REMOVABLE_DISKS}", *lines, "", ""])


def test_removable_storage_blocked_by_policy_or_both_drivers() -> None:
    deny_all = f"\r\n{POLICY}\r\n    Deny_All    REG_DWORD    0x1\r\n\r\n"
    assert run(D.removable_storage, _storage(deny_all)).status == "pass"
    both = run(D.removable_storage, _storage(_disks("Deny_Read", "Deny_Write")))
    assert both.status == "pass" and "read and write" in both.reason
    assert run(D.removable_storage, _storage(usb=4, uas=4)).status == "pass"
    assert run(D.removable_storage, _storage(usb=4, uas=None)).status == "pass"  # no UAS driver


def test_removable_storage_half_measures_fail_and_say_which() -> None:
    write_only = run(D.removable_storage, _storage(_disks("Deny_Write")))
    assert write_only.status == "fail" and "Deny_Write (reading still allowed)" in write_only.reason
    read_only = run(D.removable_storage, _storage(_disks("Deny_Read")))
    assert read_only.status == "fail" and "Deny_Read" in read_only.reason
    assert run(D.removable_storage, _storage()).status == "fail"


def test_removable_storage_unknown_when_unreadable_and_allowed_by_the_school() -> None:
    garbled = _storage(usb=3)
    garbled[key(["reg", "query", D.USBSTOR, "/v", "Start"])] = "\ufffd\ufffd Start 3"
    got = run(D.removable_storage, garbled)
    assert got.status == "unknown" and "couldn't read the registry" in got.reason
    allowed = Thresholds(usb_storage_allowed=True)
    assert run(D.removable_storage, _storage(), allowed).status == "pass"


# ---- software ---------------------------------------------------------------------------------


def _apps(*names: str, **extra: object) -> dict[str, str]:
    apps = [{"Name": n, "SystemComponent": None, "Parent": None} for n in names]
    apps += [{"Name": "Hidden Runtime", "SystemComponent": 1, "Parent": None}]
    return {key(ps(D.SOFTWARE)): js({"UserHive": True, "Apps": apps, **extra})}


def test_software_against_the_school_lists_and_what_is_new() -> None:
    school = Thresholds(
        software_banned=("*torrent*",), software_approved=("Google Chrome", "7-Zip*")
    )
    memory = Memory()
    first = run(D.software, _apps("Google Chrome", "7-Zip 23.01 (x64)"), school, memory)
    assert first.status == "pass" and first.evidence["installed"] == 2  # Hidden Runtime skipped
    got = run(D.software, _apps("Google Chrome", "qBittorrent 4.6.2", "Steam"), school, memory)
    assert got.status == "fail" and got.evidence["banned"] == ["qBittorrent 4.6.2"]
    assert got.evidence["unapproved"] == ["Steam"]
    assert got.evidence["new_since_last_report"] == ["qBittorrent 4.6.2", "Steam"]


def test_software_unknown_without_a_list() -> None:
    assert run(D.software, {}).status == "unknown"
    assert run(D.software, {key(ps(D.SOFTWARE)): "Zugriff verweigert"}).status == "unknown"


# ---- accounts ---------------------------------------------------------------------------------

SID = "S-1-5-21-1-2-3-"


def _accounts(**over: object) -> dict[str, str]:
    data = {
        "Computer": "PC1",
        "UserName": "PC1\\Pupil",
        "Members": [
            {"Name": "PC1\\Administrator", "SID": SID + "500", "Source": "Local"},
            {"Name": "PC1\\itadmin", "SID": SID + "1001", "Source": "Local"},
        ],
        "MembersError": None,
        "Users": [
            {"Name": "Administrator", "SID": SID + "500", "Enabled": False},
            {"Name": "Guest", "SID": SID + "501", "Enabled": False},
            {"Name": "itadmin", "SID": SID + "1001", "Enabled": True},
            {"Name": "pupil", "SID": SID + "1002", "Enabled": True},
        ],
        "AutoAdminLogon": "0",
        "DefaultPassword": False,
    }
    return {key(ps(D.ACCOUNTS)): js({**data, **over})}


APPROVED = Thresholds(admin_accounts_approved=("itadmin",))


def test_accounts_pass_with_approved_admins_and_a_standard_user() -> None:
    got = run(D.accounts, _accounts(), APPROVED)
    assert got.status == "pass" and got.evidence["admins"] == ["itadmin"]


def test_accounts_fail_for_an_admin_user_an_enabled_builtin_autologin_and_guest() -> None:
    admin_user = _accounts(UserName="PC1\\ITADMIN")
    assert (
        run(D.accounts, admin_user, Thresholds(admin_accounts_approved=("other",))).status == "fail"
    )
    users = json.loads(_accounts()[key(ps(D.ACCOUNTS))])["Users"]
    users[0]["Enabled"] = True  # the built-in Administrator, enabled, counts
    got = run(D.accounts, _accounts(Users=users), APPROVED)
    assert got.status == "fail" and "Administrator" in got.evidence["unapproved_admins"]
    auto = run(D.accounts, _accounts(AutoAdminLogon="1", DefaultPassword=True), APPROVED)
    assert auto.status == "fail" and auto.evidence["default_password_stored"] is True
    users[0]["Enabled"], users[1]["Name"], users[1]["Enabled"] = False, "Gast", True
    guest = run(D.accounts, _accounts(Users=users), APPROVED)
    assert guest.status == "fail" and "guest" in guest.reason


def test_accounts_with_no_one_signed_in_judge_the_rest_and_no_answer_is_unknown() -> None:
    nobody = run(D.accounts, _accounts(UserName=None), APPROVED)  # at boot, as SYSTEM
    assert nobody.status == "pass" and nobody.reason.startswith("No one is signed in")
    failed = {key(ps(D.ACCOUNTS)): (1, "", "Get-CimInstance : Zugriff verweigert")}
    assert run(D.accounts, failed, APPROVED).status == "unknown"


def test_the_accounts_script_never_prints_the_stored_password() -> None:
    assert "DefaultPassword=($null -ne $w.DefaultPassword)" in D.ACCOUNTS
    assert "$w.DefaultPassword" not in D.ACCOUNTS.replace("($null -ne $w.DefaultPassword)", "")


# ---- password policy --------------------------------------------------------------------------


def _secedit(**values: int) -> dict[str, str]:
    lines = ["[Unicode]", "Unicode=yes", "[System Access]"]
    lines += [f"{k} = {v}" for k, v in values.items()] + ["[Version]", 'signature="$CHICAGO$"']
    return {key(ps(D.SECURITY_POLICY)): "\r\n".join(lines) + "\r\n"}


def test_password_policy_judged_from_secedits_ini() -> None:
    good = _secedit(MinimumPasswordLength=14, LockoutBadCount=5)
    assert run(D.password_policy, good).status == "pass"
    many = run(D.password_policy, _secedit(MinimumPasswordLength=14, LockoutBadCount=50))
    assert many.status == "fail" and "50" in many.reason
    school = Thresholds(password_min_length=8)
    assert (
        run(D.password_policy, _secedit(MinimumPasswordLength=8, LockoutBadCount=10), school).status
        == "pass"
    )


def test_password_policy_unknown_when_secedit_fails_or_a_key_is_missing() -> None:
    denied = {key(ps(D.SECURITY_POLICY)): (1, "", "Zugriff verweigert\r\n")}
    assert run(D.password_policy, denied).status == "unknown"
    half = run(D.password_policy, _secedit(MinimumPasswordLength=14))
    assert half.status == "unknown" and "lockout" in half.reason
    garbage = {key(ps(D.SECURITY_POLICY)): "Die Aufgabe wurde erfolgreich abgeschlossen.\r\n"}
    assert run(D.password_policy, garbage).status == "unknown"


def test_every_new_check_is_unknown_with_nothing_recorded() -> None:
    for check in D.CHECKS:
        assert run(check.probe, {}).status == "unknown", check.id
        assert set(check.thresholds) <= {f for f in Thresholds.__dataclass_fields__}

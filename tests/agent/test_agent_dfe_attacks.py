"""The DfE checks attacked (issue 19): a pupil with local admin making the report say
"compliant", odd but real machines, and hostile output. Each case failed before its fix."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from agent.checks import run_checks
from agent.checks.base import Context, fit
from agent.checks.judge import judge_accounts, judge_software, matches
from agent.checks.linux_accounts import accounts_check
from agent.checks.linux_usb import removable_storage
from agent.checks.memory import MEMORY_FILE, Memory
from agent.checks.thresholds import Thresholds
from agent.checks.windows_dfe import accounts as windows_accounts
from agent.report import CheckResult, DeviceReport, parse_report
from agent.runner import CommandResult
from tests.agent.test_agent_linux_dfe import root

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
PASSWD = "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n"
PASSWD += "pupil:x:1001:1001::/home/pupil:/bin/bash\nitadmin:x:1002:1002::/home/it:/bin/bash\n"
GROUP = "root:x:0:\nsudo:x:27:itadmin\nalice:x:1000:\npupil:x:1001:\nitadmin:x:1002:\n"


class Outputs:
    """A device that answers the given commands (exit 0) and has no files."""

    def __init__(self, commands: dict[str, str]) -> None:
        self.commands = commands

    def run(self, argv: list[str], timeout: float = 20.0) -> CommandResult:
        out = self.commands.get(" ".join(argv))
        return CommandResult(0, out, "") if out is not None else CommandResult(127, "", "no")

    def read(self, path: str) -> str | None:
        return None

    def listdir(self, path: str) -> list[str] | None:
        return None


def _ctx(runner: object, **t: object) -> Context:
    return Context(runner, replace(Thresholds(), **t), NOW, Memory())  # type: ignore[arg-type]


def test_names_dressed_up_cant_slip_past_a_banned_pattern() -> None:
    banned = ["tor browser*"]
    for name in ("T\u200bor Browser", "TOR  Browser", "Tor\u00a0Browser", "Ｔｏｒ Browser 14"):
        assert matches(name, banned) == "tor browser*", name
    # A name's own glob characters are plain: "[Tor] Browser" is not "tor browser*".
    assert matches("[Tor] Browser", banned) is None
    assert matches("Google Chrome Tor Edition", ["Google Chrome*"]) == "Google Chrome*"
    # ...which is the policy's choice: a banned pattern still wins over an approved one.
    got = judge_software(
        "software",
        ["Google Chrome Tor Edition"],
        _ctx(Outputs({}), software_approved=("google chrome*",), software_banned=("*tor*",)),
    )
    assert got.status == "fail" and got.evidence["banned"] == ["Google Chrome Tor Edition"]


def test_thousands_of_apps_and_admins_with_long_names_still_make_a_valid_report() -> None:
    apps = [f"App {i} " + "x" * 3000 for i in range(2000)]
    ctx = _ctx(Outputs({}), software_approved=("approved*",))
    admins = [f"admin{i}" + "y" * 150 for i in range(500)]
    results = [
        fit(judge_software("software", apps, ctx)),
        fit(judge_accounts("accounts", ctx, user="", admins=admins, autologin=False, guest=False)),
    ]
    assert [r.status for r in results] == ["fail", "fail"]  # cutting never changes a verdict
    report = DeviceReport("dev-1", "pc", "linux", "24.04", "1", NOW, tuple(results))
    parsed = parse_report(json.loads(json.dumps(report.to_json())))
    assert [r.status for r in parsed.results] == ["fail", "fail"]
    assert all(r.evidence.get("evidence_cut") for r in parsed.results)
    small = CheckResult("x", "pass", "fine", {"a": 1})
    assert fit(small) is small


def test_run_checks_fits_every_result(tmp_path: Path) -> None:
    # A Linux box whose one .desktop application has a name 6000 characters long.
    ctx = root(
        tmp_path,
        {"/usr/share/applications/x.desktop": "[Desktop Entry]\nName=" + "N" * 6000 + "\n"},
    )
    results = run_checks("linux", replace(ctx, thresholds=Thresholds(software_approved=("vim",))))
    report = DeviceReport("dev-1", "pc", "linux", "24.04", "1", NOW, tuple(results))
    parse_report(json.loads(json.dumps(report.to_json())))  # raises if anything is too big
    assert next(r for r in results if r.id == "software").status == "fail"  # not approved


def test_the_memory_file_is_private_and_a_planted_link_is_not_followed(tmp_path: Path) -> None:
    memory = Memory()
    memory.first_seen("security_updates", ["openssl"], NOW)
    os.umask(0o022)
    victim = tmp_path / "elsewhere"
    victim.write_text("keep")
    (tmp_path / (MEMORY_FILE + ".tmp")).symlink_to(victim)
    memory.save(tmp_path)
    mode = stat.S_IMODE((tmp_path / MEMORY_FILE).stat().st_mode)
    assert mode == 0o600
    assert victim.read_text() == "keep"
    assert Memory.load(tmp_path).first["security_updates"]["openssl"] == NOW.isoformat()


def test_modprobe_runs_the_first_install_command_only(tmp_path: Path) -> None:
    files = {
        # sorted first: usb-storage loads normally, whatever a later file says
        "/etc/modprobe.d/00-allow.conf": (
            "install usb-storage /sbin/modprobe --ignore-install usb-storage\n"
        ),
        "/etc/modprobe.d/99-cis.conf": "install usb-storage /bin/true\ninstall uas /bin/true\n",
    }
    assert removable_storage(root(tmp_path / "a", files)).status == "fail"
    blacklisted = {**files, "/etc/modprobe.d/50-bl.conf": "blacklist usb_storage\n"}
    assert removable_storage(root(tmp_path / "b", blacklisted)).status == "pass"


def test_usbguard_with_a_catch_all_allow_or_unreadable_rules_is_not_blocking(
    tmp_path: Path,
) -> None:
    conf = {"/etc/modprobe.d/x.conf": "", "/etc/usbguard/usbguard-daemon.conf": "RuleFile=/r\n"}
    active = {"systemctl is-active usbguard": "active\n"}
    got = removable_storage(root(tmp_path / "none", conf, active))  # /r can't be read
    assert got.status == "fail" and "couldn't be read" in got.reason
    for i, rule in enumerate(("allow\n", 'allow id *:* name "x"\n')):
        got = removable_storage(root(tmp_path / str(i), {**conf, "/r": rule}, active))
        assert got.status == "fail" and "allows any device" in got.reason
    narrow = {**conf, "/r": "allow id 1d6b:0002 with-interface 09:00:00\n"}
    assert removable_storage(root(tmp_path / "narrow", narrow, active)).status == "pass"


def _linux_accounts(tmp: Path, files: dict[str, str]) -> CheckResult:
    base = {"/etc/passwd": PASSWD, "/etc/group": GROUP, "/etc/shadow": ""}
    sessions = {"loginctl list-sessions --no-legend": "2 1000 alice seat0 tty2\n"}
    ctx = root(tmp, {**base, **files}, sessions)
    return accounts_check(replace(ctx, thresholds=Thresholds(admin_accounts_approved=("itadmin",))))


def test_sudoers_includes_are_followed(tmp_path: Path) -> None:
    assert _linux_accounts(tmp_path / "plain", {"/etc/sudoers": ""}).status == "pass"
    cases = {
        "include": {
            "/etc/sudoers": "@include /etc/sudoers.local\n",
            "/etc/sudoers.local": "pupil ALL=(ALL:ALL) ALL\n",
        },
        "relative": {
            "/etc/sudoers": "#includedir extra\n",
            "/etc/extra/kids": "pupil ALL=(ALL) NOPASSWD: ALL\n",
        },
        "list": {"/etc/sudoers": "itadmin,pupil ALL=(ALL) ALL\n"},
        "gid": {"/etc/sudoers": "%#1001 ALL=(ALL) ALL\n"},  # pupil's own group, by number
    }
    for name, files in cases.items():
        got = _linux_accounts(tmp_path / name, files)
        assert got.status == "fail" and "pupil" in got.evidence["unapproved_admins"], name


def test_any_sudo_rule_running_commands_as_root_makes_an_administrator(tmp_path: Path) -> None:
    """`pupil ALL=(root) /usr/bin/vim` is a root shell one `:!sh` away: a rule for one command
    as root is administrator rights. A rule running commands as another user is not, nor is a
    commented-out one."""
    as_root = {
        "one command": "pupil ALL=(root) /usr/bin/vim\n",
        "no runas": "pupil ALL = NOPASSWD: /usr/bin/apt-get update\n",
        "uid": "#1001 ALL=(ALL:ALL) /bin/bash\n",  # pupil by uid
    }
    for name, rule in as_root.items():
        got = _linux_accounts(tmp_path / name.replace(" ", "_"), {"/etc/sudoers": rule})
        assert got.status == "fail" and "pupil" in got.evidence["unapproved_admins"], name
    harmless = "pupil ALL=(www-data) /usr/bin/tail\n#pupil ALL=(ALL) ALL\n"
    assert _linux_accounts(tmp_path / "harmless", {"/etc/sudoers": harmless}).status == "pass"


def test_windows_admin_whose_enabled_flag_is_unread_stays_an_admin() -> None:
    answer = {
        "Computer": "LAB-07",
        "UserName": "LAB-07\\alice",
        "Members": [{"Name": "LAB-07\\pupil2", "SID": "S-1-5-21-1-2-3-1005", "Source": "Local"}],
        "Users": [{"Name": "pupil2", "SID": "S-1-5-21-1-2-3-1005", "Enabled": None}],
        "AutoAdminLogon": "0",
    }
    runner = Outputs({})
    runner.run = lambda argv, timeout=20.0: CommandResult(0, json.dumps(answer), "")  # type: ignore[method-assign]
    got = windows_accounts(_ctx(runner))
    assert got.status == "fail" and got.evidence["unapproved_admins"] == ["pupil2"]

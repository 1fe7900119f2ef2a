"""The DfE checks of issue 19 on Linux (agent/checks/linux_*.py): on the three recorded Linux
sets judged by a school's lists, on small roots built for each case, and for real here."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from agent.checks import run_checks
from agent.checks.base import Context
from agent.checks.linux_accounts import accounts_check
from agent.checks.linux_hardware import hardware_age
from agent.checks.linux_password import password_policy
from agent.checks.linux_patches import APT_KEPT, APT_STATE, patches
from agent.checks.linux_software import desktop_entry, software
from agent.checks.linux_usb import removable_storage
from agent.checks.memory import Memory
from agent.checks.thresholds import Thresholds
from agent.report import CheckResult
from agent.runner import FixtureRunner, SystemRunner
from tests.agent.test_agent_checks import fixture

DFE = ("hardware_age", "removable_storage", "software", "accounts", "password_policy")
SCHOOL = Thresholds(
    admin_accounts_approved=("itadmin",),
    software_approved=("firefox*", "libreoffice *", "files", "text editor", "settings", "ptyxis"),
    software_banned=("*torrent*", "tor browser*"),
)

EXPECTED = {
    "ubuntu-24.04": {
        "hardware_age": "pass",  # 2023 firmware, a laptop
        "removable_storage": "pass",  # install usb-storage/uas /bin/false
        "software": "fail",  # Steam (Flathub) is not on the approved list
        "accounts": "pass",  # alice signed in, itadmin the only (approved) sudoer
        "password_policy": "pass",  # pwquality minlen 12, faillock deny 5
    },
    "debian-12": {
        "hardware_age": "fail",  # a 2017 desktop
        "removable_storage": "fail",  # usb-storage blacklisted, uas not
        "software": "fail",  # qBittorrent is banned
        "accounts": "fail",  # bob signed in as a sudoer, SDDM autologin
        "password_policy": "fail",  # pam_unix's 6, no lockout
    },
    "fedora-41": {
        "hardware_age": "pass",
        "removable_storage": "pass",  # USBGuard active, blocking
        "software": "fail",  # Tor Browser is banned
        "accounts": "fail",  # carol in wheel, signed in
        "password_policy": "fail",  # pwquality's default 8
    },
}


def judged(
    name: str, thresholds: Thresholds = SCHOOL, memory: Memory | None = None
) -> dict[str, CheckResult]:
    runner, plat, now = fixture(name)
    return {r.id: r for r in run_checks(plat, Context(runner, thresholds, now, memory or Memory()))}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dfe_statuses_on_the_linux_sets(name: str) -> None:
    got = judged(name)
    assert tuple(got)[6:] == DFE
    assert {k: got[k].status for k in DFE} == EXPECTED[name]
    for k in DFE:
        assert got[k].reason and "\n" not in got[k].reason


def test_evidence_names_what_was_read() -> None:
    ubuntu, debian, fedora = judged("ubuntu-24.04"), judged("debian-12"), judged("fedora-41")
    assert ubuntu["software"].evidence["unapproved"] == ["Steam"]
    assert ubuntu["software"].evidence["sources"] == {"system": 3, "flatpak": 1, "snap": 1}
    assert ubuntu["accounts"].evidence["admins"] == ["itadmin"]
    assert "GDM: /etc/gdm3/custom.conf" in ubuntu["accounts"].evidence["sign_in_sources"]
    assert ubuntu["password_policy"].evidence["lockout_attempts"] == 5
    assert ubuntu["hardware_age"].evidence["kind"] == "laptop"
    assert debian["software"].evidence["banned"] == ["qBittorrent"]
    assert debian["accounts"].evidence["locked_admins"] == ["olduser"]
    assert debian["accounts"].evidence["autologin"] is True
    usb = debian["removable_storage"].evidence
    assert usb["usb_storage_loaded"] is True and set(usb["modprobe"]) == {"usb_storage"}
    assert debian["hardware_age"].evidence["kind"] == "desktop"
    assert fedora["password_policy"].evidence["min_length"] == 8
    assert fedora["password_policy"].evidence["lockout_attempts"] == 3  # faillock's default
    assert fedora["software"].evidence["banned"] == ["Tor Browser"]


def test_without_school_lists_only_what_is_banned_or_unapproved_fails() -> None:
    plain = judged("ubuntu-24.04", Thresholds())
    assert plain["software"].status == "pass"  # no lists: nothing to judge against
    assert plain["accounts"].status == "fail"  # itadmin is an administrator nobody approved


def test_dnf5_advisories_are_aged_by_their_issued_date() -> None:
    ev = judged("fedora-41")["patches"].evidence
    assert ev["oldest_basis"] == "published" and ev["oldest_pending_days"] == 17
    assert ev["security"] == 1 and ev["security_below_important"] == 1  # the Moderate one
    assert ev["age_basis"] == "advisories' Issued dates"


def test_apt_security_updates_are_aged_from_when_first_seen() -> None:
    _, _, now = fixture("debian-12")
    memory = Memory()
    memory.first_seen("security_updates", ["libssl3"], now - timedelta(days=20))
    got = judged("debian-12", memory=memory)["patches"]
    assert got.status == "fail" and got.evidence["oldest_pending"] == "libssl3"
    assert got.evidence["oldest_basis"] == "first seen pending"
    assert judged("debian-12")["patches"].status == "unknown"  # first seen now: can't tell yet


# ---- small roots, one case each ----------------------------------------------------------


APT_SIM = (
    "Reading package lists...\nBuilding dependency tree...\nCalculating upgrade...\n"
    "The following packages will be upgraded:\n  libssl3 vim\n"
    "2 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n"
    "Inst libssl3 [3.0.11-1~deb12u2] (3.0.15-1~deb12u1 Debian-Security:12/stable-security "
    "[amd64])\nInst vim [2:9.0.1378-2] (2:9.0.1378-2+deb12u1 Debian:12.8/stable [amd64])\n"
)


def test_apts_answer_is_kept_while_its_state_is_unchanged(tmp_path: Path) -> None:
    """apt-get -s costs seconds of CPU at every check: while dpkg's status and the package
    lists are unchanged (by stat), for at most APT_KEPT, its last answer stands."""
    stat = " ".join(["stat", "-c", "%n %Y %s", *APT_STATE])
    state = "/var/lib/dpkg/status 1796652313 809148\n/var/lib/apt/lists 1796636339 4096\n"
    sim = "apt-get -s -o Debug::NoLocking=true upgrade"
    ctx = root(tmp_path / "a", {}, {"apt-get --version": "apt 2.6.1\n", sim: APT_SIM, stat: state})
    runner = ctx.runner
    assert isinstance(runner, FixtureRunner)

    def simulated(c: Context) -> int:
        patches(c)
        return sum(1 for argv in runner.calls if argv[:2] == ["apt-get", "-s"])

    first = patches(ctx)
    assert first.evidence["security_packages"] == ["libssl3"] and first.evidence["pending"] == 2
    assert simulated(ctx) == 1  # the second check reused the first's answer
    assert patches(ctx).evidence["simulation"].startswith("kept")
    assert simulated(replace(ctx, now=ctx.now + APT_KEPT + timedelta(minutes=1))) == 2
    changed = root(tmp_path / "b", {}, {"apt-get --version": "apt\n", sim: APT_SIM, stat: "x"})
    changed = replace(changed, memory=ctx.memory)  # the same memory, a state it can't read
    patches(changed)
    assert isinstance(changed.runner, FixtureRunner)
    assert sum(1 for a in changed.runner.calls if a[:2] == ["apt-get", "-s"]) == 1


def root(tmp: Path, files: dict[str, str], commands: dict[str, str] | None = None) -> Context:
    """A device made of the given files (and commands' outputs, exit 0)."""
    (tmp / "commands").mkdir(parents=True, exist_ok=True)
    index = {}
    for i, (argv, out) in enumerate((commands or {}).items()):
        (tmp / "commands" / f"{i}.txt").write_text(out)
        index[argv] = {"stdout": f"{i}.txt"}
    (tmp / "commands" / "index.json").write_text(json.dumps(index))
    for path, text in files.items():
        p = tmp / "root" / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    _, _, now = fixture("ubuntu-24.04")
    return Context(FixtureRunner(tmp), Thresholds(), now, Memory())


def test_nothing_readable_is_unknown_never_pass(tmp_path: Path) -> None:
    ctx = root(tmp_path, {})
    for probe in (hardware_age, removable_storage, software, accounts_check, password_policy):
        assert probe(ctx).status == "unknown", probe


def test_hardware_virtual_machines_containers_tablets_and_odd_dates(tmp_path: Path) -> None:
    dmi = "/sys/class/dmi/id/"
    qemu = {
        dmi + "bios_date": "04/01/2014\n",
        dmi + "sys_vendor": "QEMU\n",
        dmi + "chassis_type": "1\n",
    }
    got = hardware_age(root(tmp_path / "vm", qemu))
    assert got.status == "unknown" and "virtual machine" in got.reason
    assert "container" in hardware_age(root(tmp_path / "ct", {"/.dockerenv": ""})).reason
    tablet = {
        dmi + "bios_date": "01/10/2021\n",
        dmi + "chassis_type": "30\n",
        dmi + "sys_vendor": "Microsoft Corporation\n",
        dmi + "product_name": "Surface Go 2\n",
    }
    got = hardware_age(root(tmp_path / "tab", tablet))
    assert got.status == "fail" and got.evidence["kind"] == "tablet"  # 3.9 years > 3
    odd = {
        dmi + "bios_date": "2021-01-10\n",
        dmi + "chassis_type": "9\n",
        dmi + "sys_vendor": "HP\n",
    }
    assert hardware_age(root(tmp_path / "odd", odd)).status == "unknown"


def test_usb_udev_rule_usbguard_and_etc_overriding_lib(tmp_path: Path) -> None:
    udev = {
        "/etc/modprobe.d/x.conf": "",
        "/etc/udev/rules.d/90-no-usb-storage.rules": (
            'ACTION=="add", SUBSYSTEM=="usb", ATTR{bInterfaceClass}=="08", ATTR{authorized}="0"\n'
        ),
    }
    assert removable_storage(root(tmp_path / "udev", udev)).status == "pass"
    shadowed = {
        "/lib/modprobe.d/usb.conf": "blacklist usb_storage\nblacklist uas\n",
        "/etc/modprobe.d/usb.conf": "# emptied by the technician\n",
    }
    assert removable_storage(root(tmp_path / "etc", shadowed)).status == "fail"
    guard = {
        "/etc/modprobe.d/x.conf": "",
        "/etc/usbguard/usbguard-daemon.conf": "ImplicitPolicyTarget=block\n",
        "/etc/usbguard/rules.conf": "allow with-interface equals { 08:*:* }\n",
    }
    active = {"systemctl is-active usbguard": "active\n"}
    got = removable_storage(root(tmp_path / "guard", guard, active))
    assert got.status == "fail" and "allows mass storage" in got.reason
    stopped = {**guard, "/etc/usbguard/rules.conf": ""}
    assert removable_storage(root(tmp_path / "stopped", stopped)).status == "fail"  # not running
    ctx = root(tmp_path / "allowed", {"/etc/modprobe.d/x.conf": ""})
    allowed = replace(ctx, thresholds=Thresholds(usb_storage_allowed=True))
    assert removable_storage(allowed).status == "pass"


def test_desktop_entries_shown_apps_only() -> None:
    entry = (
        "[Desktop Entry]\nType=Application\nName=Vim\nName[de]=Vim (de)\n"
        "[Desktop Action new]\nName=New\n"
    )
    assert desktop_entry(entry) == "Vim"
    assert desktop_entry(entry.replace("Type=Application", "Type=Link")) is None
    assert desktop_entry(entry.replace("Name=Vim\n", "Name=Vim\nHidden=true\n")) is None
    assert desktop_entry("not a desktop file") is None


def test_software_new_since_the_last_report(tmp_path: Path) -> None:
    files = {"/usr/share/applications/a.desktop": "[Desktop Entry]\nName=Firefox\n"}
    ctx = root(tmp_path, files)
    assert software(ctx).evidence["new_since_last_report"] is None
    (tmp_path / "root/usr/share/applications/b.desktop").write_text("[Desktop Entry]\nName=Steam\n")
    assert software(ctx).evidence["new_since_last_report"] == ["Steam"]


def test_accounts_sources(tmp_path: Path) -> None:
    passwd = (
        "root:x:0:0::/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n"
        "ann:x:1000:10:::/bin/bash\nben:x:1001:1001:::/bin/bash\n"
    )
    base = {"/etc/passwd": passwd, "/etc/group": "wheel:x:10:\nben:x:1001:\n"}
    seat = {"loginctl list-sessions --no-legend": "4 1001 ben seat0 tty2\n"}
    # uid 0 toor and ann (wheel as her primary group) are administrators; ben isn't
    lightdm = {
        **base,
        "/etc/lightdm/lightdm.conf": "[Seat:*]\nautologin-user=ben\nallow-guest=true\n",
    }
    got = accounts_check(root(tmp_path / "l", lightdm, seat))
    assert got.evidence["admins"] == ["ann", "toor"] and got.evidence["user"] == "ben"
    assert got.evidence["autologin"] is True and got.evidence["guest"] is True
    getty = {
        **base,
        "/etc/systemd/system/getty@tty1.service.d/override.conf": (
            "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin ben --noclear %I $TERM\n"
        ),
    }
    assert accounts_check(root(tmp_path / "g", getty, seat)).evidence["autologin"] is True
    nobody = {"loginctl list-sessions --no-legend": "c1 115 gdm seat0 tty1\n"}
    lab = accounts_check(root(tmp_path / "n", {**base, "/etc/group": "ben:x:1001:\n"}, nobody))
    assert lab.evidence["user"] == "" and lab.status == "fail"  # toor still has uid 0
    assert lab.reason == "Local administrators not approved: toor."
    installed = {**base, "/usr/sbin/gdm3": ""}  # GDM with no custom.conf: its default, off
    got = accounts_check(root(tmp_path / "d", installed, seat))
    assert got.evidence["autologin"] is False and got.evidence["guest"] is False
    broken = {**base, "/etc/sddm.conf": "[Autologin\nUser=ben\n"}
    assert accounts_check(root(tmp_path / "b", broken, seat)).evidence["autologin"] is None
    sudoers = {
        **base,
        "/etc/sudoers": (
            "%wheel ALL=(ALL) ALL\nben ALL=(ALL) NOPASSWD: ALL\n%lp ALL=/usr/sbin/lpadmin\n"
        ),
    }
    assert accounts_check(root(tmp_path / "s", sudoers, seat)).evidence["admins"] == [
        "ann",
        "ben",
        "toor",
    ]


def test_password_modules_arguments_and_defaults(tmp_path: Path) -> None:
    cracklib = {
        "/etc/pam.d/common-password": (
            "password requisite pam_cracklib.so retry=3 minlen=14 difok=3\n"
        ),
        "/etc/pam.d/common-auth": (
            "auth required pam_tally2.so deny=5 onerr=fail\nauth required pam_unix.so\n"
        ),
    }
    got = password_policy(root(tmp_path / "c", cracklib))
    assert got.evidence["min_length"] == 10  # 14 less cracklib's four default credits of 1
    assert got.evidence["lockout_attempts"] == 5 and got.status == "fail"
    args = {
        "/etc/pam.d/system-auth": (
            "auth required pam_faillock.so preauth deny=4\n"
            "password requisite pam_pwquality.so minlen=15\n"
        ),
        "/etc/security/faillock.conf": "deny = 20\n",
        "/etc/security/pwquality.conf": "minlen = 9\n",
    }
    got = password_policy(root(tmp_path / "a", args))
    assert (got.evidence["min_length"], got.evidence["lockout_attempts"], got.status) == (
        15,
        4,
        "pass",
    )
    unused = {
        "/etc/pam.d/common-auth": "auth required pam_unix.so\n",
        "/etc/security/faillock.conf": "deny = 3\n",
    }
    got = password_policy(root(tmp_path / "u", unused))  # faillock.conf alone locks nothing
    assert got.evidence["lockout_attempts"] == 0 and got.evidence["min_length"] is None


# ---- for real on this machine --------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="Linux only")
def test_real_dfe_checks_tell_the_truth() -> None:
    got = {r.id: r for r in run_checks("linux", Context(SystemRunner()))}
    if not Path("/sys/class/dmi/id/bios_date").exists():
        assert got["hardware_age"].status == "unknown"
    if not Path("/usr/share/applications").is_dir():
        assert got["software"].status == "unknown"
    else:
        shown = 0
        for f in Path("/usr/share/applications").glob("*.desktop"):
            shown += desktop_entry(f.read_text(errors="replace")) is not None
        assert got["software"].evidence["sources"]["system"] == shown
    admins = set(got["accounts"].evidence["admins"])
    if not Path("/etc/sudoers").exists():  # then only groups and uid 0 make administrators
        groups = [ln.split(":") for ln in Path("/etc/group").read_text().splitlines()]
        wanted = {g[2] for g in groups if g[0] in ("sudo", "wheel", "admin")}
        expected = {u for g in groups if g[2] in wanted for u in g[3].split(",") if u}
        for line in Path("/etc/passwd").read_text().splitlines():
            name, _, uid, gid = line.split(":")[:4]
            if (uid == "0" and name != "root") or gid in wanted:
                expected.add(name)
        shadow = Path("/etc/shadow").read_text().splitlines()
        shut = {ln.split(":")[0] for ln in shadow if ln.split(":")[1][:1] in ("!", "*")}
        assert admins == expected - shut
    if not any(shutil.which(dm) for dm in ("gdm3", "gdm", "lightdm", "sddm")):
        assert got["accounts"].evidence["autologin"] is False
    assert {r.status for r in got.values()} <= {"pass", "fail", "unknown"}

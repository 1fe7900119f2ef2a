"""The school's device lists (`devices.software`, `devices.accounts`,
`devices.removable_storage`): read into the agent's Thresholds and the gateway's approved
USB list, from the policy or a file beside it, mistakes named with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_addons.core.policy.device_lists_section import usb_storage_allowed
from proxy_addons.core.policy.load import PolicyError, load_policy
from tests.conftest import copy_policy

ROOT = Path(__file__).parents[2]


def with_devices(tmp_path: Path, section: str) -> Path:
    path = copy_policy(tmp_path)
    path.write_text(path.read_text() + "\n" + section)
    return path


def test_without_lists_nothing_is_banned_approved_or_allowed(tmp_path: Path) -> None:
    devices = load_policy(copy_policy(tmp_path)).devices
    t = devices.thresholds
    assert (t.software_approved, t.software_banned, t.admin_accounts_approved) == ((), (), ())
    assert devices.usb_storage_allowed == frozenset()
    assert t.usb_storage_allowed is False  # set per device by the gateway, never by the policy


def test_the_lists_are_read_inline_and_from_files(tmp_path: Path) -> None:
    path = with_devices(
        tmp_path,
        "devices:\n"
        "  software:\n"
        "    approved: ['Microsoft *', Google Chrome, 'LibreOffice*']\n"
        "    approved_file: lists/approved-software.txt\n"
        "    banned: [Tor Browser, 'uTorrent*']\n"
        "  accounts:\n"
        "    approved_admins: [it.admin, 'LAPS*']\n"
        "  removable_storage:\n"
        "    allowed: [Art-Mac-01, A01234, dev-7f3a]\n",
    )
    (path.parent / "lists").mkdir(exist_ok=True)
    (path.parent / "lists" / "approved-software.txt").write_text(
        "# Approved by SLT, 2026-09-01\n"
        "Scratch*      # computing, KS2\n"
        "\n"
        "microsoft *   # already listed above: kept once\n"
        "Audacity\n"
    )
    policy = load_policy(path)
    t = policy.devices.thresholds
    assert t.software_approved == (
        "Microsoft *",
        "Google Chrome",
        "LibreOffice*",
        "Scratch*",
        "Audacity",
    )
    assert t.software_banned == ("Tor Browser", "uTorrent*")
    assert t.admin_accounts_approved == ("it.admin", "LAPS*")
    assert policy.devices.usb_storage_allowed == frozenset({"art-mac-01", "a01234", "dev-7f3a"})
    # The pattern file is one of the policy's files: a change to it reloads the policy.
    assert (path.parent / "lists" / "approved-software.txt").resolve() in policy.files
    # What the agent is sent carries the lists as lists.
    sent = t.to_json()
    assert sent["software_banned"] == ["Tor Browser", "uTorrent*"]
    assert sent["usb_storage_allowed"] is False


def test_a_device_is_allowed_by_its_id_hostname_or_asset_tag_in_any_case() -> None:
    allowed = frozenset({"art-mac-01", "a01234"})
    assert usb_storage_allowed(allowed, "dev-1", "ART-MAC-01", None)
    assert usb_storage_allowed(allowed, "dev-1", "lab-pc-07", " A01234 ")
    assert not usb_storage_allowed(allowed, "dev-1", "lab-pc-07", None)
    assert not usb_storage_allowed(allowed, "dev-1", "art-mac-011", "A0123")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("  software:\n    banned: ['*']\n", "software.banned: '\\*' matches every name"),
        ("  software:\n    approved: [Zoom, zoom]\n    banned: [ZOOM]\n", "both approved and"),
        ("  software:\n    aproved: [Zoom]\n", "Did you mean 'approved'"),
        ("  software:\n    banned: Tor Browser\n    banned_file: nowhere.txt\n", "does not exist"),
        ("  software: [Zoom]\n", "devices.software should be a set of"),
        ("  accounts:\n    approved_admins: {it: yes}\n", "approved_admins should be a list"),
        ("  accounts:\n    admins: [it]\n", "'admins' is not a setting of devices.accounts"),
        ("  removable_storage:\n    allowed: ['ART-*']\n", "names a device: its id, hostname"),
        ("  removable_storage: [ART-1]\n", "removable_storage should be a set of"),
        ("  removable_storage:\n    allow: [ART-1]\n", "Did you mean 'allowed'"),
    ],
)
def test_mistakes_are_named_with_their_line(tmp_path: Path, section: str, message: str) -> None:
    path = with_devices(tmp_path, "devices:\n" + section)
    with pytest.raises(PolicyError, match=message) as caught:
        load_policy(path)
    first = len(path.read_text().splitlines()) - section.count("\n") + 1
    lines = range(first, first + section.count("\n"))
    assert any(f"line {n}" in str(caught.value) for n in lines), str(caught.value)


def test_a_bad_line_in_a_pattern_file_is_named_by_the_files_line(tmp_path: Path) -> None:
    path = with_devices(tmp_path, "devices:\n  software:\n    banned_file: banned.txt\n")
    (path.parent / "banned.txt").write_text("Tor Browser\nPsiphon*\n*   # oops\n")
    with pytest.raises(PolicyError, match="software.banned: '\\*' matches every name") as caught:
        load_policy(path)
    assert f"{(path.parent / 'banned.txt').resolve()}, line 3" in str(caught.value)


def test_too_many_patterns_are_refused(tmp_path: Path) -> None:
    path = with_devices(tmp_path, "devices:\n  software:\n    approved_file: approved.txt\n")
    (path.parent / "approved.txt").write_text("".join(f"App {n}\n" for n in range(501)))
    with pytest.raises(PolicyError, match="501 patterns; at most 500"):
        load_policy(path)


def test_the_example_school_policy_bans_circumvention_tools() -> None:
    policy = load_policy(ROOT / "policies" / "school.yaml")
    banned = policy.devices.thresholds.software_banned
    for tool in ("Tor Browser*", "Psiphon*", "Ultrasurf*", "Hotspot Shield*", "uTorrent*"):
        assert tool in banned

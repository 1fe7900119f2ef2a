"""A device can't rename itself onto `devices.removable_storage.allowed` (issue 19): the
hostname is the device's own word, so a listed hostname counts only while no other enrolled
device goes by it; the id and asset tag, which the gateway holds, always count. Over the
real device API on SQLite and PostgreSQL."""

from __future__ import annotations

from proxy_addons.devices.enrolment import revoke
from tests.devices.test_device_api import T0
from tests.devices.test_device_api_lists import ListsApi, lists  # noqa: F401  (a fixture)
from tests.pg import db_url  # noqa: F401  (a fixture)


def test_a_laptop_renamed_to_an_allowed_hostname_gets_no_usb_storage(
    lists: ListsApi,  # noqa: F811
) -> None:
    art_id, art_token = lists.api.enrol("art-mac-01")
    assert lists.answer(art_id, art_token, "art-mac-01")["usb_storage_allowed"] is True
    pupil_id, pupil_token = lists.api.enrol("lab-pc-07")
    # A pupil with local admin renames the laptop to the art room's Mac: refused.
    assert lists.answer(pupil_id, pupil_token, "ART-MAC-01")["usb_storage_allowed"] is False
    # While two devices share the name, neither gets it by name (IT sees the clash).
    assert lists.answer(art_id, art_token, "art-mac-01")["usb_storage_allowed"] is False
    # Renamed back, the art room's Mac is allowed again; listed by id, one always is.
    assert lists.answer(pupil_id, pupil_token, "lab-pc-07")["usb_storage_allowed"] is False
    assert lists.answer(art_id, art_token, "art-mac-01")["usb_storage_allowed"] is True
    assert lists.answer(lists.named_id, lists.named_token, "art-mac-01")["usb_storage_allowed"]


def test_a_revoked_device_keeps_no_claim_on_its_name(lists: ListsApi) -> None:  # noqa: F811
    old_id, old_token = lists.api.enrol("art-mac-01")
    assert lists.answer(old_id, old_token, "art-mac-01")["usb_storage_allowed"] is True
    revoke(lists.api.store, old_id, "it.admin", "re-imaged", T0)
    new_id, new_token = lists.api.enrol("art-mac-01")  # the same Mac, re-imaged
    assert lists.answer(new_id, new_token, "art-mac-01")["usb_storage_allowed"] is True

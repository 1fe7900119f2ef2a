"""The answer to a report carries the school's lists, and USB storage allowed only for a
device on `devices.removable_storage.allowed` (by its id, hostname or asset tag), over the
real device API on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.checks.thresholds import thresholds_from_json
from proxy_addons.core.policy.load import load_policy
from proxy_addons.devices.asset_log import Allocation, set_allocation
from proxy_addons.store import Store
from proxy_addons.web.app import create_device_api
from tests.devices.test_device_api import T0, Api, Clock, policy_with_devices, report
from tests.pg import db_url  # noqa: F401  (a fixture)

LISTS = (
    "devices:\n  enrolment_secret_file: enrol.secret\n"
    "  software:\n    approved: ['Microsoft *', 'LibreOffice*']\n"
    "    banned: [Tor Browser*, Psiphon*]\n"
    "  accounts:\n    approved_admins: [it.admin]\n"
    "  removable_storage:\n    allowed: [ART-MAC-01, {device_id}, A01234]\n"
)


@dataclass
class ListsApi:
    api: Api
    named_id: str  # the device the policy names by its id
    named_token: str
    sent: int = 0

    def answer(self, device_id: str, token: str, hostname: str) -> dict[str, Any]:
        """Report as `hostname`; the thresholds the gateway answers with."""
        self.sent += 1
        at = T0 + dt.timedelta(minutes=self.sent)
        self.api.clock.now = at
        answer = self.api.post(token, report(device_id, at, hostname=hostname))
        assert answer.status_code == 202, answer.json
        thresholds: dict[str, Any] = answer.json["thresholds"]
        return thresholds


@pytest.fixture
def lists(db_url: str, tmp_path: Path) -> Iterator[ListsApi]:  # noqa: F811
    store = Store.open(db_url)
    current = [load_policy(policy_with_devices(tmp_path / "before"))]
    clock = Clock()
    api = Api(create_device_api(store, lambda: current[0], clock), store, clock, current[0])
    # The allowed list names one device by its id: enrolled first, then the policy changes.
    named_id, named_token = api.enrol("lab-pc-01")
    current[0] = load_policy(policy_with_devices(tmp_path, LISTS.format(device_id=named_id)))
    yield ListsApi(api, named_id, named_token)
    store.dispose()


def test_the_answer_carries_the_schools_lists(lists: ListsApi) -> None:
    got = lists.answer(*lists.api.enrol("lab-pc-07"), "lab-pc-07")
    assert got["software_approved"] == ["Microsoft *", "LibreOffice*"]
    assert got["software_banned"] == ["Tor Browser*", "Psiphon*"]
    assert got["admin_accounts_approved"] == ["it.admin"]
    assert got["usb_storage_allowed"] is False  # not on the list
    # Never the list of allowed devices itself: each device hears only about itself.
    assert "ART-MAC-01" not in json.dumps(got) and "A01234" not in json.dumps(got)
    # The agent reads the answer back into the same lists.
    agent_side = thresholds_from_json(got)
    assert agent_side.software_banned == ("Tor Browser*", "Psiphon*")
    assert agent_side.admin_accounts_approved == ("it.admin",)
    assert agent_side.usb_storage_allowed is False


def test_a_device_on_the_allowed_list_by_hostname_in_any_case(lists: ListsApi) -> None:
    device_id, token = lists.api.enrol("art-mac-01")
    got = lists.answer(device_id, token, "art-mac-01")
    assert got["usb_storage_allowed"] is True
    assert thresholds_from_json(got).usb_storage_allowed is True
    # Renamed, it is no longer the device the list names.
    assert lists.answer(device_id, token, "art-mac-02")["usb_storage_allowed"] is False


def test_a_device_on_the_allowed_list_by_its_id_whatever_its_name(lists: ListsApi) -> None:
    got = lists.answer(lists.named_id, lists.named_token, "renamed-pc")
    assert got["usb_storage_allowed"] is True


def test_a_device_on_the_allowed_list_by_its_asset_tag(lists: ListsApi) -> None:
    device_id, token = lists.api.enrol("lab-pc-09")
    assert lists.answer(device_id, token, "lab-pc-09")["usb_storage_allowed"] is False
    # The IT provider records its asset tag (the web app or the asset-log CSV): now allowed.
    set_allocation(lists.api.store, device_id, Allocation(asset_tag="a01234"), "it.admin", T0)
    assert lists.answer(device_id, token, "lab-pc-09")["usb_storage_allowed"] is True

"""The subject-access export on both stores: two people's rows in every table, and the
export of one finds all of theirs and none of the other's; the export is audited with its
reason, and refused without one."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.store import Store
from proxy_addons.store.schema import (
    access_log,
    accounts,
    alerts,
    check_runs,
    devices,
    incident_actions,
    incidents,
    reports,
    seen_devices,
    unblocks,
)
from proxy_addons.workflow import audit, subject_access
from proxy_addons.workflow.subject_access import ExportRefused, Subject
from tests.pg import db_url  # noqa: F401  (a fixture)
from tests.workflow.test_retention import (
    NOW,
    access_row,
    alert_row,
    check_run_row,
    incident_row,
    insert,
    report_row,
    unblock_row,
)

AMY, BEN = "amy.pupil", "ben.pupil"
IPS = {AMY: "10.20.1.5", BEN: "10.20.1.6"}
DEVICE = {AMY: "dev-amy", BEN: "dev-ben"}
MAC = {AMY: "aa:00:00:00:00:0a", BEN: "aa:00:00:00:00:0b"}


def device_row(user: str) -> dict[str, Any]:
    return {
        "device_id": DEVICE[user],
        "token_hash": "t" * 64,
        "enrolled_at": NOW,
        "hostname": f"laptop-of-{user}",
        "last_user": user,
        "last_ips": [IPS[user]],
        "last_macs": [MAC[user]],
        "results": [],
    }


def seed_person(conn: sa.Connection, user: str) -> None:
    at = NOW - timedelta(days=2)
    ip, device = IPS[user], DEVICE[user]
    insert(conn, access_log, access_row(at, user, ip=ip, search_term=f"search by {user}"))
    # A row with no user name, from the person's own device only.
    insert(conn, access_log, access_row(at, None, ip=ip, device_id=device, host=f"{user}.test"))
    alert = insert(conn, alerts, alert_row(at, "new", user, ip=ip))
    incident = insert(conn, incidents, incident_row(at, "open", [user.upper()]))
    insert(
        conn,
        incident_actions,
        {
            "incident_id": incident,
            "text": f"call {user}'s parents",
            "recorded_by": "dsl",
            "recorded_at": at,
        },
    )
    # An incident not naming them, but resting on an alert about them.
    insert(conn, incidents, incident_row(at, "open", [], alert_id=alert, location=f"by {user}"))
    insert(conn, reports, report_row(at, "new", user, ip=ip))
    insert(conn, unblocks, unblock_row(f"UB-{user[:3].upper()}", at, audience=[user]))
    insert(conn, devices, device_row(user))
    insert(conn, seen_devices, {"mac": MAC[user], "ip": ip, "first_seen": at, "last_seen": at})
    audit.append(conn, actor="mrs.patel", action="people.viewed", subject=user, detail={})


def seed(store: Store) -> None:
    with store.begin() as conn:
        for user in (AMY, BEN):
            seed_person(conn, user)
        row = {
            "display_name": "Mr Teacher",
            "roles": ["staff"],
            "password_hash": "secret-hash",
            "created_at": NOW,
        }
        insert(conn, accounts, row | {"username": "mr.teacher"})
        insert(conn, check_runs, check_run_row(NOW, by="mr.teacher"))
        # Asked for by a teacher for the whole of Ben's class: names Ben, not Amy.
        insert(
            conn,
            unblocks,
            unblock_row(
                "UB-CLASS1",
                NOW,
                audience_kind="users",
                audience=[BEN, "cat.pupil"],
                requested_by="mr.teacher",
            ),
        )


def everything(document: dict[str, Any]) -> str:
    return json.dumps(document["parts"])


def test_an_export_finds_the_persons_rows_and_nobody_elses(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    seed(store)
    who = Subject(AMY.upper(), device_ids=(DEVICE[AMY],))
    doc = subject_access.export(store, who, by="mrs.patel", reason="SAR 2026-14", now=NOW)
    parts = doc["parts"]
    assert set(parts) == set(subject_access.PARTS)
    assert doc["rows"] == {
        "account": 0,
        "access_log": 2,  # signed in, and from her device
        "alerts": 1,
        "incidents": 2,  # naming her, and resting on her alert
        "incident_actions": 1,
        "reports": 1,
        "unblocks": 1,
        "devices": 1,
        "seen_devices": 1,
        "check_runs": 0,
        "check_actions": 0,
        "audit": 1,
    }
    text = everything(doc)
    assert f"search by {AMY}" in text and f"{AMY}.test" in text
    for trace in (BEN, IPS[BEN], DEVICE[BEN], MAC[BEN], "UB-CLASS1", "t" * 64):
        assert trace not in text, trace
    assert doc["reason"] == "SAR 2026-14"


def test_a_member_of_staff_gets_what_they_did_without_their_password(
    db_url: str,  # noqa: F811
) -> None:
    store = Store.open(db_url)
    seed(store)
    doc = subject_access.export(store, Subject("mr.teacher"), by="dpo", reason="SAR", now=NOW)
    assert doc["rows"]["account"] == doc["rows"]["check_runs"] == 1
    # He asked for every unblock (unblock_row's requester), his class's among them.
    assert {u["id"] for u in doc["parts"]["unblocks"]} == {"UB-AMY", "UB-BEN", "UB-CLASS1"}
    assert "secret-hash" not in everything(doc) and "password_hash" not in everything(doc)


def test_the_export_is_audited_with_who_whom_and_why(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    seed(store)
    doc = subject_access.export(
        store, Subject(BEN), by="mrs.patel", reason="SAR 7", now=NOW, address="10.20.0.9"
    )
    last = audit.records(store)[-1]
    assert (last.seq, last.actor, last.action, last.subject) == (
        doc["audit_seq"],
        "mrs.patel",
        "people.exported",
        f"user:{BEN}",
    )
    assert last.address == "10.20.0.9"
    assert last.detail["reason"] == "SAR 7"
    assert last.detail["rows"] == doc["rows"]
    assert audit.verify(store).ok


@pytest.mark.parametrize("user, reason", [("", "SAR"), (AMY, "  ")])
def test_no_user_or_no_reason_no_export(db_url: str, user: str, reason: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    with pytest.raises(ExportRefused):
        subject_access.export(store, Subject(user), by="mrs.patel", reason=reason, now=NOW)
    assert audit.records(store) == []


def test_the_zip_holds_the_document_and_a_csv_per_part(tmp_path: Any) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'sg.db'}")
    seed(store)
    doc = subject_access.export(store, Subject(AMY), by="mrs.patel", reason="SAR", now=NOW)
    with zipfile.ZipFile(io.BytesIO(subject_access.to_zip(doc))) as archive:
        names = set(archive.namelist())
        assert names == {"export.json"} | {f"{p}.csv" for p in subject_access.PARTS}
        assert json.loads(archive.read("export.json")) == json.loads(subject_access.to_json(doc))
        log = archive.read("access_log.csv").decode()
    assert log.splitlines()[0].startswith("id,at,username")
    assert f"search by {AMY}" in log


def test_looks_at_the_persons_history_and_earlier_exports_are_in_it(
    db_url: str,  # noqa: F811
) -> None:
    """Who looked at them, when and why (workflow/history_views.py and the alert pages file
    a look as "user:<name>" or "device:<id>") is theirs to see too, as is an earlier export."""
    store = Store.open(db_url)
    seed(store)
    with store.begin() as conn:
        for subject in (f"user:{AMY}", f"device:{DEVICE[AMY]}", f"user:{BEN}"):
            audit.append(
                conn, actor="mrs.patel", action="person.viewed", subject=subject, detail={}, at=NOW
            )
    subject_access.export(store, Subject(AMY), by="mrs.patel", reason="SAR 1", now=NOW)
    who = Subject(AMY, device_ids=(DEVICE[AMY],))
    doc = subject_access.export(store, who, by="mrs.patel", reason="SAR 2", now=NOW)
    subjects = [(r["action"], r["subject"]) for r in doc["parts"]["audit"]]
    assert ("person.viewed", f"user:{AMY}") in subjects
    assert ("person.viewed", f"device:{DEVICE[AMY]}") in subjects
    assert ("people.exported", f"user:{AMY}") in subjects
    assert ("person.viewed", f"user:{BEN}") not in subjects

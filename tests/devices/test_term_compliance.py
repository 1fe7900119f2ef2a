"""Devices over a term, per check and overall, on both stores: compliant all term, short at
some point and for how many device-days, short now, never reported (never counted as
compliant), silent devices, a check that appears with a newer agent, devices from the MDM
counted and marked, a revoked device left out. (The report's section: tests/record/
test_term_report_devices.py; the gauges: tests/devices/test_term_gauges.py.)"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from agent.report import parse_report
from proxy_addons.devices import enrolment, mdm_import, reports
from proxy_addons.devices.term_compliance import Said, tally_device, term_figures
from proxy_addons.record.device_term import OVERALL, CheckFigures
from proxy_addons.store import Store
from proxy_addons.store.schema import devices
from tests.devices.test_device_api import report
from tests.pg import db_url  # noqa: F401  (a fixture)

KEY = b"enrol-secret-for-the-term"
START = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 12, 19, tzinfo=dt.UTC)  # the term: 1 Sep to 18 Dec, 109 days
AFTER = dt.datetime(2027, 1, 4, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)
CHECKS = ("disk_encryption", "screen_lock", "patches")


def day(n: float) -> dt.datetime:
    return START + dt.timedelta(days=n)


def results(*, software: bool = False, **status: str) -> list[dict[str, Any]]:
    found = {c: "pass" for c in CHECKS} | ({"software": "pass"} if software else {}) | status
    return [{"id": c, "status": s, "reason": f"{c}: {s}"} for c, s in found.items()]


def send(store: Store, device_id: str, at: dt.datetime, checks: list[dict[str, Any]]) -> None:
    sent = report(device_id, at, results=checks)
    reports.record_report(store, parse_report(sent), at, source="10.1.2.3")


def enrol(store: Store, hostname: str, at: dt.datetime) -> str:
    device_id, _ = enrolment.enrol(store, KEY.decode(), KEY, hostname, at)
    return device_id


def mdm_sighting(store: Store, at: dt.datetime, passcode: str) -> None:
    export = (
        "name,serial,model,os,os_version,last_seen,encrypted,passcode,compliant\n"
        f"Year 5 iPad 12,DMPXK1A2B3C4,iPad,iPadOS,17.5.1,{at.isoformat()},yes,{passcode},\n"
    )
    mdm_import.import_mdm(store, export, "it.provider", at, dt.UTC)


def seed(store: Store) -> None:
    """Six devices over the autumn term (reports every five days unless said)."""
    before = START - dt.timedelta(days=60)
    good = enrol(store, "good-pc", before)
    patchy = enrol(store, "patchy-pc", before)
    silent = enrol(store, "silent-pc", before)
    never = enrol(store, "never-pc", before)
    upgraded = enrol(store, "upgraded-pc", before)
    gone = enrol(store, "gone-pc", before)
    send(store, never, START - dt.timedelta(days=30), results())  # before the term only
    send(store, gone, START - dt.timedelta(days=30), results(patches="fail"))
    with store.begin() as conn:  # retired before the term: not counted
        conn.execute(
            devices.update()
            .where(devices.c.device_id == gone)
            .values(revoked_at=START - dt.timedelta(days=1))
        )
    send(store, patchy, START - dt.timedelta(days=2), results(patches="fail"))
    for n in range(0, 109, 5):
        send(store, good, day(n), results())
        # patches failing until 6 Sep (carried in from August), again 1 to 11 Oct; the
        # screen lock unknown from 5 Dec to the end.
        patches = "fail" if n < 5 or 30 <= n < 40 else "pass"
        lock = "unknown" if n >= 95 else "pass"
        send(store, patchy, day(n), results(patches=patches, screen_lock=lock))
        if n <= 20:  # then silent: not compliant from a week after its last report
            send(store, silent, day(n), results())
        send(store, upgraded, day(n), results(software=n >= 60))  # newer agent from 30 Oct
        if n % 10 == 0 and n <= 100:
            mdm_sighting(store, day(n), "no" if n == 50 else "yes")


def rows(found: tuple[CheckFigures, ...]) -> dict[str, tuple[int, ...]]:
    return {
        r.check: (r.devices, r.whole_term, r.at_some_point, r.now, r.not_reported, r.from_mdm)
        for r in found
    }


def test_the_term_per_check_and_overall(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    seed(store)
    figures = term_figures(store, START, END, AFTER, stale_days=7)
    assert (figures.devices, figures.reported, figures.from_mdm) == (6, 5, 1)
    assert figures.ended and figures.until == END
    by_check = rows(figures.rows)
    assert [r.check for r in figures.rows] == [
        OVERALL,
        "disk_encryption",
        "screen_lock",
        "patches",
        "software",
    ]
    # (devices, all term, at some point, now, never reported, from MDM)
    assert by_check[OVERALL] == (6, 2, 3, 3, 1, 1)  # good and upgraded; patchy, silent, iPad
    assert by_check["disk_encryption"] == (6, 3, 2, 2, 1, 1)  # silent, the iPad (silent at end)
    assert by_check["screen_lock"] == (6, 2, 3, 3, 1, 1)  # and patchy's unknown lock
    assert by_check["patches"] == (6, 2, 2, 1, 2, 0)  # the iPad can't say: not known
    assert by_check["software"] == (6, 1, 0, 0, 5, 0)  # only the new agent says
    assert "mdm_compliance" not in by_check  # the export gives no verdict: nothing to judge
    days = {r.check: round(r.device_days, 2) for r in figures.rows}
    # silent-pc: from day 27 to the end (82 days); the iPad: between its sightings ten days
    # apart it is silent 3 days in each (10 gaps after 0..90 = 30, and day 107 to 109 after
    # its last on day 100 = 2); patchy-pc's lock: day 95 to the end (14 days).
    silent, ipad, lock = 82.0, 10 * 3 + 2, 14.0
    assert days["disk_encryption"] == silent + ipad
    passcode = 7  # the iPad's passcode off on day 50, until it falls silent on day 57
    assert days["screen_lock"] == silent + ipad + lock + passcode
    # patchy-pc: days 0 to 5 (failing since before the term) and 30 to 40.
    assert days["patches"] == silent + 5 + 10
    assert days[OVERALL] == silent + ipad + passcode + 5 + 10 + lock
    assert days["software"] == 0


def test_while_the_term_runs_it_counts_to_now(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    seed(store)
    figures = term_figures(store, START, END, day(35), stale_days=7)
    assert not figures.ended and figures.until == day(35)
    by_check = rows(figures.rows)
    assert by_check["patches"][3] == 2  # patchy-pc is failing and silent-pc silent on day 35
    assert "software" not in by_check  # nobody reported it yet
    patches = next(r for r in figures.rows if r.check == "patches")
    assert round(patches.device_days, 2) == 5 + 5 + 8  # patchy: 0-5, 30-35; silent: 27-35


def test_a_term_with_no_reports_counts_every_device_as_not_known(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    enrol(store, "lab-pc-01", START - WEEK)
    figures = term_figures(store, START, END, AFTER, stale_days=7)
    assert (figures.devices, figures.reported) == (1, 0)
    assert rows(figures.rows) == {OVERALL: (1, 0, 0, 0, 1, 0)}
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(devices)).scalar() == 1
    empty = term_figures(Store.open(db_url), START, END, AFTER, stale_days=7)
    assert empty.devices == 1  # the same store: nothing was written by counting


# -- one device's tallies, without a store ---------------------------------------------------


def said(n: float, compliant: bool = True, **passed: bool) -> Said:
    return Said(day(n), compliant, passed)


def test_a_report_before_the_term_sets_the_state_it_began_in() -> None:
    found = tally_device(
        [said(-2, False, patches=False), said(3, True, patches=True)], START, day(10), WEEK
    )
    assert found["patches"].bad_seconds == 3 * 86400 and not found["patches"].bad_now
    assert found[OVERALL].bad_seconds == 3 * 86400


def test_a_stale_report_before_the_term_leaves_the_start_silent() -> None:
    found = tally_device([said(-30, patches=True), said(4, patches=True)], START, day(10), WEEK)
    assert found["patches"].bad_seconds == 4 * 86400  # silent from the start to day 4


def test_only_a_report_before_the_term_is_not_a_report_in_it() -> None:
    assert tally_device([said(-1, patches=True)], START, day(10), WEEK) == {}


def test_a_check_left_out_after_it_was_reported_is_unknown() -> None:
    found = tally_device(
        [said(0, software=True), said(2, patches=True), said(4, software=True)],
        START,
        day(6),
        WEEK,
    )
    assert found["software"].bad_seconds == 2 * 86400  # day 2 to 4: it said nothing
    assert found["patches"].bad_seconds == 2 * 86400  # day 4 to 6; before day 2 not counted
    assert found["patches"].bad_now and not found["software"].bad_now


def test_reports_every_few_hours_give_the_same_figures(db_url: str) -> None:  # noqa: F811
    """The database leaves out compliant reports between two alike; gaps, a check that
    appears within a compliant run and a failure inside one still count."""
    store = Store.open(db_url)
    device = enrol(store, "busy-pc", START - WEEK)
    hours = [h for h in range(0, 30 * 24, 6) if not 10 * 24 < h < 20 * 24]  # silent 10 days
    for h in hours:
        failing = {"patches": "fail"} if 25 * 24 <= h < 26 * 24 else {}
        send(store, device, day(h / 24), results(software=h >= 5 * 24, **failing))
    figures = term_figures(store, START, day(30), AFTER, stale_days=7)
    days = {r.check: round(r.device_days, 2) for r in figures.rows}
    # silent from a week after its report on day 10 until day 20; the patches failing from
    # day 25 until the report on day 26. Software, reported from day 5, is silent too.
    assert days == {
        OVERALL: 3 + 1,
        "disk_encryption": 3,
        "screen_lock": 3,
        "patches": 3 + 1,
        "software": 3,
    }
    assert rows(figures.rows)["software"] == (1, 0, 1, 0, 0, 0)

"""The governors' report's section "School devices against the DfE cyber security standard":
the term's figures per check in plain words, devices from the MDM marked, a term with no
device reports saying so, devices.csv beside the report, and no device, user or allocation
named anywhere (counts only)."""

from __future__ import annotations

import csv
import re
from datetime import UTC, date, datetime
from pathlib import Path

from proxy_addons.checks.report import governors_report
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Term
from proxy_addons.devices.term_compliance import term_figures
from proxy_addons.record.term_report import build_report, render_report, write_report
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import devices
from tests.devices.test_term_compliance import AFTER, END, START, enrol, seed
from tests.record.test_term_report import POLICY

AUTUMN = Term("Autumn 2026", date(2026, 9, 1), date(2026, 12, 18))
HOSTS = ("good-pc", "patchy-pc", "silent-pc", "never-pc", "upgraded-pc", "Year 5 iPad 12")


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def seeded(tmp_path: Path) -> Store:
    store = Store.open(store_url(tmp_path / "var"))
    seed(store)
    with store.begin() as conn:  # the asset log: never in the governors' report
        conn.execute(devices.update().values(allocated_to="Amelia K (Year 5)", asset_tag="SG-0042"))
    return store


def test_the_section_gives_each_check_in_plain_words(tmp_path: Path) -> None:
    store = seeded(tmp_path)
    figures = term_figures(store, START, END, AFTER, stale_days=7)
    report = build_report(
        store, load_policy(POLICY), AUTUMN, today=date(2027, 1, 4), devices=figures
    )
    html = render_report(report)
    section = text_of(html.split('id="devices"')[1].split("</section>")[0])
    assert "School devices against the DfE cyber security standard" in html
    assert "6 school devices, 1 of them from the school's device management (MDM)" in section
    assert "(s)" not in section  # counts read as English: "device-days in all", not "day(s)"
    assert "device-days in all" in section and '"From the MDM": how many' in section
    assert "5 reported this term; 1 never did" in section
    assert "not counted as compliant" in section
    assert 'id="devices-whole-term">2<' in html and 'id="devices-unknown">1<' in html
    assert "fell short at the end of term" in section  # the term is over
    for words in (
        "Disk encrypted",
        "Screen locks when left",
        "Security updates installed in time (14 days at most)",
        "Only approved software installed",
        "From the MDM",
    ):
        assert words in section, words
    # Security updates: 2 all term, 2 short at some point for 97 device-days, 1 at the end,
    # 2 not known (the iPad's MDM can't say, and the device that never reported).
    assert "Security updates installed in time (14 days at most) 2 2 97 1 2 0" in section
    for private in (*HOSTS, "Amelia", "SG-0042", "jsmith", "10.1.2.3"):
        assert private not in html, private


def test_a_term_with_no_device_reports_says_so(tmp_path: Path) -> None:
    store = Store.open(store_url(tmp_path / "var"))
    enrol(store, "lab-pc-01", START)
    figures = term_figures(store, START, END, AFTER, stale_days=7)
    html = render_report(build_report(store, load_policy(POLICY), AUTUMN, devices=figures))
    section = text_of(html.split('id="devices"')[1].split("</section>")[0])
    assert "The one school device sent no report this term" in section
    assert "not known" in section and "None is counted as compliant" in section
    with store.begin() as conn:
        conn.execute(devices.delete())
    figures = term_figures(store, START, END, AFTER, stale_days=7)
    html = render_report(build_report(store, load_policy(POLICY), AUTUMN, devices=figures))
    assert "No school devices are enrolled" in html


def test_the_governors_report_carries_the_devices_and_writes_devices_csv(tmp_path: Path) -> None:
    store = seeded(tmp_path)
    policy = load_policy(POLICY)  # one term, "Whole year": 2026 and 2027
    (term,) = policy.terms
    now = datetime(2026, 12, 21, 12, tzinfo=UTC)
    report = governors_report(store, policy, term, now.date(), now)
    assert report.devices is not None and not report.devices.ended
    # The whole year: the device retired on 31 Aug and the one silent since August count too.
    assert (report.devices.devices, report.devices.reported) == (7, 7)
    out = tmp_path / "report"
    written = write_report(report, out)
    assert out / "devices.csv" in written
    rows = list(csv.reader((out / "devices.csv").open()))
    assert rows[0][:4] == ["check", "in words", "devices", "compliant all term"]
    assert [r[0] for r in rows[1:3]] == ["overall", "disk_encryption"]
    assert all(r[2] == "7" for r in rows[1:])
    for path in out.iterdir():
        text = path.read_text()
        assert not any(p in text for p in (*HOSTS, "Amelia", "SG-0042")), path

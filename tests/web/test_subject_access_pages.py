"""The console's subject-access page: only the DSL and deputies may open it; an export needs
a reason, is audited with the address it was asked from, and downloads one person's
records; in real Chromium, a DSL downloads a ZIP and sees it listed (screenshot)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy_addons.web import subject_access as pages
from proxy_addons.workflow import audit, incidents, subject_access
from proxy_addons.workflow.accounts import add_account
from proxy_addons.workflow.subject_access import Subject
from proxy_addons.workflow.unblocks import Actor
from tests.support.screenshots import shot
from tests.support.web_server import serve
from tests.web.test_alert_pages import seed_console
from tests.web.test_webapp import (  # noqa: F401  (seeded_db: a fixture)
    PASSWORD,
    Web,
    make_web,
    page_token,
    seeded_db,
    sign_in,
)
from tests.web.test_webapp import seed as seed_accounts
from tests.web.test_webapp_chromium import CHROMIUM, CHROMIUM_ARGS
from tests.workflow.test_alert_cases import T0, raise_one
from tests.workflow.test_subject_access import AMY, BEN
from tests.workflow.test_subject_access import seed as seed_people


def console(var: Path, accounts_db: Path) -> Web:
    web = make_web(var, accounts_db)
    if "subject_access" not in web.app.blueprints:  # until web/app.py registers it
        web.app.register_blueprint(pages.bp)
    seed_people(web.store)
    return web


@pytest.fixture
def web(tmp_path: Path, seeded_db: Path) -> Iterator[Web]:  # noqa: F811
    found = console(tmp_path / "var", seeded_db)
    yield found
    found.store.dispose()


def exports(web: Web) -> list[audit.AuditRecord]:
    return [r for r in audit.records(web.store) if r.action == "people.exported"]


def test_only_the_safeguarding_team_may_open_it(web: Web) -> None:
    for name in ("teacher", "tech"):
        assert sign_in(web, name).get("/subject-access").status_code == 403
    page = sign_in(web, "dsl").get("/subject-access")
    assert page.status_code == 200
    assert "Subject access export" in page.get_data(as_text=True)
    assert web.client().get("/subject-access").status_code == 302  # signed out: sign in


def test_an_export_without_a_reason_is_refused_and_not_audited(web: Web) -> None:
    client = sign_in(web, "dsl")
    form = {"user": AMY, "reason": "  ", "format": "json"}
    answer = client.post(
        "/subject-access", data=form | {"csrf_token": page_token(client, "/subject-access")}
    )
    assert answer.status_code == 400
    assert "Nothing was exported: a reason is needed" in answer.get_data(as_text=True)
    assert exports(web) == []


def test_the_dsl_downloads_one_persons_records_and_it_is_audited(web: Web) -> None:
    client = sign_in(web, "dsl")
    form = {"user": AMY, "devices": "dev-amy", "reason": "SAR 2026-3", "format": "json"}
    answer = client.post(
        "/subject-access",
        data=form | {"csrf_token": page_token(client, "/subject-access")},
        environ_base={"REMOTE_ADDR": "10.20.0.9"},
    )
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    assert re.fullmatch(
        r'attachment; filename="subject-access-amy\.pupil-\d{4}-\d\d-\d\d\.json"',
        answer.headers["Content-Disposition"],
    )
    document = json.loads(answer.get_data())
    assert document["rows"]["access_log"] == 2 and BEN not in json.dumps(document["parts"])
    (record,) = exports(web)
    assert (record.actor, record.subject, record.address) == ("dsl", f"user:{AMY}", "10.20.0.9")
    assert record.detail["reason"] == "SAR 2026-3"
    assert AMY in client.get("/subject-access").get_data(as_text=True)  # listed as recent


def test_a_concern_about_staff_stays_the_headteachers_in_an_export(
    tmp_path: Path,
) -> None:
    """A deputy (safeguarding, not headteacher) exporting a teacher's records, or their own,
    gets no concern about staff nor the incident opened from it: those are the
    headteacher's alone, and the export would tip the subject off."""
    web = console(tmp_path / "var", seed_console(tmp_path / "seed"))
    concern = raise_one(
        web.store,
        stored_audience="staff",
        fields={"user": "deputy", "search": "pupil's home address"},
        summary="Concern about a member of staff",
    )
    draft = incidents.Draft(
        occurred_at=T0,
        location="Staff room",
        description="Looked up a pupil's home address",
        action_taken="Headteacher spoke to LADO",
        category=None,
        people=("deputy",),
    )
    incidents.open_incident(
        web.store, Actor("head"), draft, T0, alert_id=concern, audiences=frozenset({"staff"})
    )
    # A headteacher who is also a DSL, as in many primary schools, sees the concern.
    add_account(web.store, "headdsl", PASSWORD, ["staff", "dsl", "headteacher"])
    for exporter, shown in (("dsl", False), ("deputy", False), ("headdsl", True)):
        client = sign_in(web, exporter)
        form = {"user": "deputy", "reason": "SAR 2026-9", "format": "json"}
        answer = client.post(
            "/subject-access", data=form | {"csrf_token": page_token(client, "/subject-access")}
        )
        document = json.loads(answer.get_data())
        parts = json.dumps(document["parts"])
        assert ("LADO" in parts and "home address" in parts) is shown, exporter
        assert document["rows"]["alerts"] == document["rows"]["incidents"] == int(shown)
        assert ("headteacher" in document["not_included"]) is not shown
    whole = subject_access.export(
        web.store, Subject("deputy"), by="schoolgate", reason="SAR", now=T0
    )  # the command line, for whoever runs the server, still gets everything
    assert whole["rows"]["alerts"] == 1 and whole["rows"]["incidents"] == 1


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
def test_a_dsl_downloads_a_zip_in_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    web = console(tmp_path / "var", seed_accounts(tmp_path / "seed"))
    web.app.config["SESSION_COOKIE_SECURE"] = False
    served = serve(web.app)
    base = served.url
    expect = sync_api.expect
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.set_default_timeout(15_000)
                page.goto(f"{base}/subject-access")
                page.get_by_label("User name").fill("dsl")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                expect(page).to_have_url(f"{base}/subject-access")
                expect(page.get_by_text("No exports yet.")).to_be_visible()
                page.get_by_label("User name").fill(AMY)
                page.get_by_label("Their devices (optional)").fill("dev-amy")
                page.get_by_label("Reason").fill("Subject access request SAR-2026-14, 3 Dec")
                with page.expect_download() as waiting:
                    page.get_by_role("button", name="Download the export").click()
                download = waiting.value
                saved = tmp_path / download.suggested_filename
                download.save_as(saved)
                page.goto(f"{base}/subject-access")
                expect(page.locator("table.recent")).to_contain_text("SAR-2026-14")
                page.screenshot(path=str(shot("subject-access.png")), full_page=True)
            finally:
                browser.close()
    finally:
        served.stop()
        web.store.dispose()
    assert saved.name.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(saved.read_bytes())) as archive:
        assert "access_log.csv" in archive.namelist()
        assert f"search by {AMY}" in archive.read("access_log.csv").decode()

"""The block page's staff form, for a teacher not signed in to the proxy, in real Chromium:
the gateway (mitmdump) sends them to the admin app at the policy's `unblocks.web_url`, over
HTTPS with the certificate the school's CA issued (server_cert.py), to sign in; the form
they land on holds what they chose on the block page, and sending it files that request.

Screenshots: docs/screenshots/block-page-staff-signin.png (the sign-in the teacher meets)
and block-page-staff-form.png (the form after it, still filled in).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.unblocks import AudienceKind, Scope, Status
from proxy_addons.ops import school_ca, server_cert
from proxy_addons.store import Store, store_url
from proxy_addons.workflow.unblocks import UnblockWorkflow
from tests.checks.test_check_page_chromium import CHROMIUM, spki_hash
from tests.conftest import (
    ROOT,
    Gateway,
    Upstream,
    copy_policy,
    free_port,
    start_mitmdump,
    wait_for_port,
)
from tests.web.test_webapp import PASSWORD, seed

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extras)")

SHOTS = ROOT / "docs" / "screenshots"
BIN = Path(sys.executable).parent


class Lab:
    """A gateway and `schoolgate web` sharing the school's CA; this machine is a staff laptop."""

    def __init__(self, tmp: Path, upstream: Upstream) -> None:
        self.web_port = free_port()
        self.web_url = f"https://127.0.0.1:{self.web_port}"
        self.policy = copy_policy(tmp)
        text = self.policy.read_text()
        text = text.replace(
            "networks: {10.20.0.0/24: staff}", "networks: {10.20.0.0/24: staff, 127.0.0.0/8: staff}"
        )
        text = text.replace("  max_days: 7\n", f"  max_days: 7\n  web_url: {self.web_url}\n")
        self.policy.write_text(text)
        gateway_var, self.web_var = tmp / "gateway", tmp / "web"
        school_ca.create(gateway_var / "ca", "Test Primary")
        seed(self.web_var)  # the staff's accounts
        server_cert.issue(gateway_var / "ca", self.web_var, ["127.0.0.1"])
        self.gateway: Gateway = start_mitmdump(self.policy, gateway_var, upstream)
        log = tmp / "web.log"
        cmd = [str(BIN / "schoolgate"), "web", "--policy", str(self.policy)]
        cmd += ["--var", str(self.web_var), "--port", str(self.web_port)]
        with log.open("wb") as out:
            self.web = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_for_port(self.web_port, self.web, log)

    def stop(self) -> None:
        self.web.terminate()
        self.web.wait(10)
        self.gateway.stop()


@pytest.fixture
def lab(tmp_path: Path, upstream: Upstream) -> Iterator[Lab]:
    found = Lab(tmp_path, upstream)
    yield found
    found.stop()


def test_the_block_pages_staff_form_keeps_the_choice_through_sign_in(lab: Lab) -> None:
    expect = sync_api.expect
    trusted = [spki_hash(lab.gateway.ca), spki_hash(server_cert.default_files(lab.web_var)[0])]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--ignore-certificate-errors-spki-list={','.join(trusted)}",
            ],
            proxy={"server": lab.gateway.proxy, "bypass": "127.0.0.1"},  # the web app: direct
        )
        try:
            page: Any = browser.new_page(viewport={"width": 900, "height": 1000})
            page.set_default_timeout(20_000)
            response = page.goto("http://adult.test/lesson/page")
            assert response is not None and response.status == 403
            page.get_by_label("What should open?").select_option("domain")
            page.get_by_label("For whom?").select_option("profile:ks2")
            page.get_by_label("For how long?").select_option("60")
            page.get_by_label("Why do you need it for teaching?").fill("Year 6 PSHE: adverts")
            page.get_by_role("button", name="Request access for a lesson").click()

            expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
            assert page.url.startswith(f"{lab.web_url}/login?next=")
            page.screenshot(path=str(SHOTS / "block-page-staff-signin.png"), full_page=True)
            page.get_by_label("User name").fill("teacher")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()

            expect(page.locator("#url")).to_have_value("http://adult.test/lesson/page")
            assert page.url.startswith(f"{lab.web_url}/unblocks/new?")
            expect(page.locator("#scope")).to_have_value("domain")
            expect(page.locator("#audience_kind")).to_have_value("profile")
            expect(page.locator("#audience")).to_have_value("ks2")
            expect(page.locator("#minutes")).to_have_value("60")
            expect(page.locator("#reason")).to_have_value("Year 6 PSHE: adverts")
            page.screenshot(path=str(SHOTS / "block-page-staff-form.png"), full_page=True)
            page.get_by_role("button", name="Send the request").click()
            expect(page.locator("main")).to_contain_text("is waiting for a DSL or deputy")
        finally:
            browser.close()

    store = Store.open(store_url(lab.web_var))
    try:
        policy = load_policy(lab.policy)
        [unblock] = UnblockWorkflow(store, lambda: policy).list()
        assert (unblock.requested_by, unblock.status) == ("teacher", Status.PENDING)
        assert (unblock.scope, unblock.audience_kind) == (Scope.DOMAIN, AudienceKind.PROFILE)
        assert unblock.audience == ("ks2",)
        assert "PSHE" in unblock.reason
    finally:
        store.dispose()


def test_over_plain_http_the_sign_in_page_says_why_it_cannot_work(tmp_path: Path) -> None:
    """A web app reached over http:// by name (a reverse proxy not saying https, or
    --plain-http): Chromium keeps no Secure cookie, and the page says so before and after."""
    policy = copy_policy(tmp_path)
    seed(tmp_path / "web")
    port = free_port()
    log = tmp_path / "web.log"
    cmd = [str(BIN / "schoolgate"), "web", "--policy", str(policy), "--plain-http"]
    cmd += ["--var", str(tmp_path / "web"), "--port", str(port)]
    with log.open("wb") as out:
        web = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for_port(port, web, log)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--host-resolver-rules=MAP gateway.school.test 127.0.0.1",
                ],
            )
            try:
                page: Any = browser.new_page(viewport={"width": 900, "height": 800})
                page.goto(f"http://gateway.school.test:{port}/login")
                warning = page.get_by_role("alert")
                sync_api.expect(warning).to_contain_text("reached over plain HTTP")
                page.screenshot(path=str(SHOTS / "sign-in-over-plain-http.png"), full_page=True)
                page.get_by_label("User name").fill("dsl")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                main = page.locator("main")
                sync_api.expect(main).to_contain_text("X-Forwarded-Proto: https")
                assert "did not come from this site" not in main.inner_text()
            finally:
                browser.close()
    finally:
        web.terminate()
        web.wait(10)

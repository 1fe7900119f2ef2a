"""An admin page open in a real headless Chromium, signed in: `with signed_in(web.app,
"tech", "/devices/x") as (page, base): ...`. Serves the app on loopback (plain http, so the
web app must be made with secure_cookies=False), signs in on the page's sign-in form, and
closes the browser and the server afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support.web_server import serve
from tests.web.test_webapp import PASSWORD
from tests.web.test_webapp_chromium import CHROMIUM, CHROMIUM_ARGS


@contextmanager
def signed_in(
    app: Any, user: str, path: str, viewport: dict[str, int] | None = None
) -> Iterator[tuple[Any, str]]:
    """(the Playwright page at `path`, the server's base address), signed in as `user`;
    `path` as the browser shows it (percent-encoded)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    served = serve(app)
    base = served.url
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport=viewport) if viewport else browser.new_page()
                page.set_default_timeout(15_000)
                page.goto(f"{base}{path}")
                page.get_by_label("User name").fill(user)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                sync_api.expect(page).to_have_url(f"{base}{path}")
                yield page, base
            finally:
                browser.close()
    finally:
        served.stop()

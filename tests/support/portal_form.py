"""Sending a block page's form as a browser does: post it, then Send on the portal's page.

A block page is on the blocked site's origin and carries no token; the portal shows what it
posted back on its own origin with a token (proxy_addons/gateway/portal_forms.py), and the browser
posts that page's form with the portal as its Origin.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from tests.conftest import Gateway

# A member of staff's request as the block page's form sends it (tests/data/policy).
STAFF_REQUEST = {
    "ref": "SG-TEST",
    "url": "https://adult.test/unit",
    "scope": "domain",
    "audience": "profile:ks2",
    "minutes": "60",
    "reason": "sex education unit",
}
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of the (one) form on a page, unescaped as a browser would."""
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def curl_form(form: dict[str, str]) -> list[str]:
    """curl's arguments posting `form` urlencoded."""
    return [arg for name, value in form.items() for arg in ("--data-urlencode", f"{name}={value}")]


def curl_send_confirmed(
    gateway: Gateway, url: str, form: dict[str, str], user: str | None = None
) -> tuple[str, int]:
    """The block page's form posted to `url` through the gateway with curl, then the
    confirmation page's form; the final (body, status)."""
    shown = gateway.curl(url, *curl_form(form), user=user).stdout
    page, _, code = shown.rpartition("\n")
    assert code == "200" and "Nothing has been sent yet" in page, shown
    fields = hidden_fields(page)
    data = [
        arg for name, value in fields.items() for arg in ("--data-urlencode", f"{name}={value}")
    ]
    sent = gateway.curl(url, "-H", f"Origin: {origin_of(url)}", *data, user=user).stdout
    body, _, code = sent.rpartition("\n")
    return body, int(code or 0)


__all__ = ["STAFF_REQUEST", "curl_form", "curl_send_confirmed", "hidden_fields", "origin_of"]

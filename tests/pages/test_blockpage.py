"""Tests for the block page and the gateway's own pages.

The pages are read the way a browser would (html.parser), so the tests check what a pupil
sees and what a form sends, not how the template happens to be laid out.
"""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_addons.pages.blockpage import (
    ADDRESS_LIMIT,
    REFERENCE_ALPHABET,
    BlockPageContext,
    new_reference,
    render_block_page,
    render_page,
    short_address,
)

TEMPLATES = Path(__file__).parents[2] / "proxy_addons" / "pages" / "templates"
AT = datetime(2026, 3, 3, 14, 5, tzinfo=UTC)
EVIL = '"><script>alert(1)</script>'


class Page(HTMLParser):
    """A rendered page as a browser sees it: elements, visible text, forms."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_parts: list[str] = []
        self.forms: list[dict[str, object]] = []
        self._skip = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in ("style", "script", "title"):
            self._skip += 1
        if tag == "form":
            self.forms.append({"action": attributes.get("action"), "fields": {}, "required": []})
        elif tag in ("input", "textarea") and self.forms:
            fields = self.forms[-1]["fields"]
            assert isinstance(fields, dict)
            fields[attributes.get("name")] = attributes.get("value", "")
            if "required" in attributes:
                required = self.forms[-1]["required"]
                assert isinstance(required, list)
                required.append(attributes.get("name"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attributes for name, attributes in self.tags if name == tag]

    def form(self, action_suffix: str) -> dict[str, object] | None:
        for form in self.forms:
            if str(form["action"]).endswith(action_suffix):
                return form
        return None


def _context(**changes: object) -> BlockPageContext:
    ctx = BlockPageContext(
        school="Hillside Primary School",
        reference="SG-7K3Q-M2XD",
        host="www.example-social.com",
        url="https://www.example-social.com/feed/friends?q=my+secret+search",
        reason="Social networks",
        category_label="Social networks",
        at=AT,
        portal="http://schoolgate.local",
    )
    return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


def _page(**changes: object) -> Page:
    return Page(render_block_page(_context(**changes)))


# --- the block page -----------------------------------------------------------------------


def test_block_page_says_what_why_and_when() -> None:
    page = _page(reason="not allowed at this time", category_label="Games")
    assert "This page is blocked" in page.text
    assert "We stopped this page to keep you safe" in page.text
    assert "Hillside Primary School" in page.text
    assert "www.example-social.com/feed/friends" in page.text
    assert "not allowed at this time" in page.text
    assert "Games" in page.text
    assert "SG-7K3Q-M2XD" in page.text
    assert "14:05 on Tuesday 3 March 2026" in page.text
    assert page.all("time")[0]["datetime"] == "2026-03-03T14:05:00+00:00"


def test_category_is_not_said_twice_when_it_is_the_reason() -> None:
    assert _page().text.count("Social networks") == 1


def test_numeric_address_reason() -> None:
    page = _page(
        host="203.0.113.7",
        url="http://203.0.113.7/",
        category_label=None,
        reason="web address written as numbers",
    )
    assert "web address written as numbers" in page.text
    assert "Kind of website" not in page.text


def test_search_terms_are_not_shown_but_are_reported() -> None:
    """A query may be a search a child typed; it goes to the report, not on the screen."""
    page = _page()
    assert "secret" not in page.text
    report = page.form("/report")
    assert report is not None
    assert report["fields"] == {
        "ref": "SG-7K3Q-M2XD",
        "url": "https://www.example-social.com/feed/friends?q=my+secret+search",
        "message": "",
    }


def test_pupil_gets_report_form_only() -> None:
    page = _page(staff=False)
    report = page.form("/report")
    assert report is not None and report["action"] == "http://schoolgate.local/report"
    assert "What were you trying to do?" in page.text
    assert page.form("/unblock/request") is None
    assert "Request access for a lesson" not in page.text
    assert {form["method"] for form in page.all("form")} == {"post"}


def test_staff_also_get_request_form_with_required_reason() -> None:
    page = _page(staff=True, portal="https://schoolgate.local/")
    assert page.form("/report") is not None
    request = page.form("/unblock/request")
    assert request is not None
    assert request["action"] == "https://schoolgate.local/unblock/request"
    assert request["fields"] == {
        "ref": "SG-7K3Q-M2XD",
        "url": "https://www.example-social.com/feed/friends?q=my+secret+search",
        "reason": "",
    }
    assert request["required"] == ["reason"]
    assert "Request access for a lesson" in page.text


def test_no_form_carries_a_token() -> None:
    """A block page is served on the blocked site's own origin, where script could read it:
    it holds nothing that lets a post act (the portal asks for confirmation instead)."""
    html = render_block_page(_context(staff=True))
    assert "csrf_token" not in html and "token" not in html.lower()
    for action in ("/report", "/unblock/request"):
        form = _page(staff=True).form(action)
        assert form is not None and "csrf_token" not in form["fields"]  # type: ignore[operator]
    meta = [m for m in _page().all("meta") if m.get("name") == "referrer"]
    assert meta == [{"name": "referrer", "content": "no-referrer"}]  # no address leaks on


@pytest.mark.parametrize("kind", ["report", "access_request"])
def test_the_portal_confirmation_sends_what_it_shows_from_the_portal(kind: str) -> None:
    fields = {"ref": "SG-7K3Q-M2XD", "url": "https://mixed.test/adult?q=x", "reason": EVIL}
    fields |= {"message": EVIL} if kind == "report" else {"scope": "domain", "audience": "me"}
    html = render_page(
        "portal_confirm.html",
        school="Hillside Primary School",
        kind=kind,
        action="/unblock/request",
        values=fields,
        hidden=[*fields.items(), ("csrf_token", "1.abc.def")],
        address="mixed.test/adult",
        scope_text="The whole website",
        audience_text="Only me (to check it first)",
        duration_text="1 hour",
    )
    page = Page(html)
    assert "<script>" not in html and EVIL in page.text
    [form] = page.forms
    assert form["action"] == "/unblock/request"  # the portal's own origin, whichever it is
    assert form["fields"] == {**fields, "csrf_token": "1.abc.def"}
    assert "Nothing has been sent yet" in page.text
    meta = [m for m in page.all("meta") if m.get("name") == "referrer"]
    assert meta == [{"name": "referrer", "content": "same-origin"}]  # so its post has an Origin


@pytest.mark.parametrize("staff", [False, True])
@pytest.mark.parametrize("field", ["host", "url", "reason", "category_label", "school"])
def test_everything_is_escaped(field: str, staff: bool) -> None:
    value = f"x{EVIL}.example" if field != "url" else f"https://x.example/{EVIL}?{EVIL}"
    html = render_block_page(_context(staff=staff, **{field: value}))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html or "%3Cscript%3E" in html
    page = Page(html)
    assert page.all("script") == []
    if field == "url":  # the full URL survives intact into the forms, as text
        report = page.form("/report")
        assert report is not None and report["fields"]["url"] == value  # type: ignore[index]


def test_long_path_is_shortened_on_screen_only() -> None:
    url = "https://www.example.com/" + "a-very-long-folder-name/" * 10 + "page.html"
    page = _page(host="www.example.com", url=url)
    shown = short_address("www.example.com", url)
    assert shown in page.text and shown.endswith("…") and len(shown) == ADDRESS_LIMIT
    report = page.form("/report")
    assert report is not None and report["fields"]["url"] == url  # type: ignore[index]


@pytest.mark.parametrize(
    ("host", "url", "expected"),
    [
        ("example.com", "https://example.com/", "example.com"),
        ("example.com", "https://example.com", "example.com"),
        ("example.com", "https://example.com/a/b?q=x#f", "example.com/a/b"),
        ("example.com", "example.com:443", "example.com"),  # CONNECT, nothing decrypted
        ("example.com", "http://[broken/x", "example.com"),
        ("a" * 80 + ".com", "https://x/abcdefghijklmnopqrstuvwxyz", "a" * 80 + ".com/abcdefghij…"),
    ],
    ids=["root", "no-path", "query-dropped", "connect-only", "unparsable", "long-host"],
)
def test_short_address(host: str, url: str, expected: str) -> None:
    assert short_address(host, url) == expected


def test_reference_is_big_and_spelt_out_for_screen_readers() -> None:
    page = _page()
    assert "S G, 7 K 3 Q, M 2 X D" in page.text
    assert any("code" in str(attrs.get("class")) for attrs in page.all("p"))


# --- the illegal tier ---------------------------------------------------------------------


@pytest.mark.parametrize("staff", [False, True])
def test_illegal_page_is_plain(staff: bool) -> None:
    ctx = _context(illegal=True, staff=staff, category_label="Child abuse imagery")
    html = render_block_page(ctx)
    page = Page(html)
    assert "Access denied" in page.text
    assert "SG-7K3Q-M2XD" in page.text
    assert "Hillside Primary School" in page.text
    for secret in ("example-social", "feed", "Child abuse", "Social networks", "14:05"):
        assert secret not in html
    assert page.all("form") == [] and page.all("input") == [] and page.all("textarea") == []
    assert "/report" not in html and "/unblock" not in html and "schoolgate.local" not in html


# --- sensitive categories ----------------------------------------------------------------

MONITORED = "The school network is filtered and monitored"
ADULTS = ("Mrs Patel, our Designated Safeguarding Lead (office next to the library)",)


@pytest.mark.parametrize("staff", [False, True])
def test_a_sensitive_category_page_points_to_help_and_nothing_else(staff: bool) -> None:
    """Self-harm and the like: no address, reason or score, no "is this a mistake?", no
    unblock request; Childline and the school's own named adults."""
    ctx = _context(
        sensitive=True,
        trusted_adults=ADULTS,
        staff=staff,
        reason="its content scored 140 for self-harm, over the limit of 60",
        category_label="Self-harm and suicide",
    )
    html = render_block_page(ctx)
    page = Page(html)
    assert "0800 1111" in page.text and "childline.org.uk" in page.text
    assert {"href": "https://www.childline.org.uk/"} in page.all("a")
    assert ADULTS[0] in page.text
    assert "SG-7K3Q-M2XD" in page.text and MONITORED in page.text
    for absent in ("scored", "140", "Self-harm", "example-social", "mistake", "lesson"):
        assert absent not in page.text
    assert page.all("form") == [] and "/report" not in html and "/unblock" not in html


def test_a_sensitive_page_without_named_adults_still_names_someone() -> None:
    page = _page(sensitive=True)
    assert "any adult in school you trust" in page.text and "0800 1111" in page.text


def test_every_block_page_says_the_network_is_filtered_and_monitored() -> None:
    assert MONITORED in _page().text and MONITORED in _page(staff=True).text
    assert "filtered and monitored" in _page(illegal=True).text


def test_the_block_page_links_to_report_a_page_on_the_portal() -> None:
    assert {"href": "http://schoolgate.local/report-page"} in _page().all("a")


def report_page(url: str) -> str:
    """The portal's "Report a page" form, as the portal renders it for `url`."""
    return render_page(
        "portal_report_page.html",
        school="S",
        url=url,
        token="1.a.b",
        field="csrf_token",
        error=None,
        values={},
    )


def test_the_report_page_form_asks_in_childrens_words_and_carries_its_token() -> None:
    page = Page(report_page("http://x.test/page"))
    form = page.form("/report-page")
    assert form is not None
    assert form["fields"] == {
        "csrf_token": "1.a.b",
        "url": "http://x.test/page",
        "what": "should_block",
        "message": "",
    }
    assert "It upset me or worried me" in page.text
    assert "It should be blocked, but it did not upset me" in page.text
    assert MONITORED in page.text


@pytest.mark.parametrize(
    ("kind", "audience", "people", "emailed", "said", "not_said"),
    [
        (
            "page_report",
            "safeguarding",
            "Mrs Patel",
            True,
            "Mrs Patel, who keeps pupils safe at school, will read",
            "console",
        ),
        (
            "page_report",
            "safeguarding",
            "",
            False,
            "The people who keep pupils safe at school will read",
            "message",
        ),
        ("page_report", "technical", "Mr Byte", False, "Mr Byte will check the page", "0800 1111"),
        (
            "report",
            "technical",
            "",
            True,
            "The school's IT team will look at whether this page should be open",
            "0800 1111",
        ),
    ],
)
def test_the_reporter_is_told_truthfully_who_will_see_it(
    kind: str, audience: str, people: str, emailed: bool, said: str, not_said: str
) -> None:
    page = Page(
        render_page(
            "report_thanks.html",
            school="S",
            kind=kind,
            audience=audience,
            people=people,
            emailed=emailed,
            trusted_adults=ADULTS,
        )
    )
    assert said in page.text and not_said not in page.text
    assert ("sent them a message" in page.text) is emailed
    assert ("0800 1111" in page.text) is (audience == "safeguarding")


# --- the other pages ----------------------------------------------------------------------


def test_report_thanks() -> None:
    page = Page(render_page("report_thanks.html", school="Hillside Primary School"))
    assert "Thank you" in page.text
    assert "We have told the people who look after the internet at school" in page.text
    assert "Hillside Primary School" in page.text
    with_ref = Page(render_page("report_thanks.html", school="H", reference="SG-7K3Q-M2XD"))
    assert "SG-7K3Q-M2XD" in with_ref.text
    staff = Page(render_page("report_thanks.html", school="H", kind="access_request"))
    assert "sent your request" in staff.text


def test_portal_index() -> None:
    page = Page(render_page("portal_index.html", school="Hillside <Primary>"))
    assert "Hillside <Primary>" in page.text
    assert {"href": "/ca.pem", "class": "button", "download": None} in page.all("a")
    assert "Report a problem" in page.text
    assert {"href": "/report-page", "class": "button"} in page.all("a")
    assert MONITORED in page.text


def test_missing_value_is_an_error_not_a_blank() -> None:
    with pytest.raises(jinja2.UndefinedError, match="school"):
        render_page("report_thanks.html")


# --- every page: accessible and self-contained --------------------------------------------

ALL_PAGES = {
    "pupil": lambda: render_block_page(_context()),
    "staff": lambda: render_block_page(_context(staff=True)),
    "illegal": lambda: render_block_page(_context(illegal=True)),
    "report_thanks": lambda: render_page("report_thanks.html", school="S", reference="R"),
    "portal_index": lambda: render_page("portal_index.html", school="S"),
    "portal_confirm": lambda: render_page(
        "portal_confirm.html",
        school="S",
        kind="report",
        action="/report",
        values={"ref": "R", "url": "http://x.test/", "message": "m"},
        hidden=[("ref", "R"), ("csrf_token", "1.a.b")],
        address="x.test",
    ),
    "already_sent": lambda: render_page("report_thanks.html", school="S", kind="already_sent"),
    "sensitive": lambda: render_block_page(_context(sensitive=True, trusted_adults=ADULTS)),
    "report_page": lambda: report_page("http://x.test/"),
    "page_report_thanks": lambda: render_page(
        "report_thanks.html",
        school="S",
        kind="page_report",
        audience="safeguarding",
        people="Mrs Patel",
        emailed=True,
        trusted_adults=ADULTS,
    ),
    "ca_install": lambda: render_page(
        "ca_install.html", school="S", subject="CN=S CA", fingerprint="AB:CD", not_after="2036"
    ),
}


@pytest.mark.parametrize("name", ALL_PAGES)
def test_page_is_accessible_and_self_contained(name: str) -> None:
    html = ALL_PAGES[name]()
    page = Page(html)
    assert html.startswith("<!doctype html>")
    assert page.all("html") == [{"lang": "en-GB"}]
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in page.all(
        "meta"
    )
    assert len(page.all("h1")) == 1 and page.all("main")
    assert page.all("title") and page.all("style")
    # nothing fetched from anywhere, nothing to run
    assert page.all("script") == [] and page.all("link") == [] and page.all("img") == []
    assert not any("src" in attrs for _, attrs in page.tags)
    assert not re.search(r"url\(|@import", html)
    # every box a person types into has a label
    ids = {attrs.get("for") for attrs in page.all("label")}
    for box in page.all("textarea"):
        assert box["id"] in ids


def test_every_template_is_covered() -> None:
    # web_*.html belong to the admin web app (tests/web/test_webapp.py), report_term.html to
    # the governors' report (tests/record/test_term_report.py), check_*.html to the termly checks
    # (tests/checks/: test_check_page.py, test_check_page_chromium.py, test_check_schedule.py).
    names = {
        path.name
        for path in TEMPLATES.glob("*.html")
        if not path.name.startswith(("web_", "check_")) and path.name != "report_term.html"
    }
    assert names == {
        "base.html",
        "block.html",
        "denied.html",
        "report_thanks.html",
        "portal_index.html",
        "portal_confirm.html",
        "ca_install.html",
        "block_sensitive.html",
        "portal_report_page.html",
        "monitored_notice.html",  # included by the portal's and block pages
        "help_adults.html",  # included by the sensitive page and the thanks for a report
    }


# --- reference codes ----------------------------------------------------------------------

REFERENCE = re.compile(rf"SG-[{REFERENCE_ALPHABET}]{{4}}-[{REFERENCE_ALPHABET}]{{4}}")


def test_reference_alphabet_is_unambiguous() -> None:
    assert not set("0O1IL") & set(REFERENCE_ALPHABET)
    assert not set("AEIOU") & set(REFERENCE_ALPHABET)  # no rude words by accident
    assert len(set(REFERENCE_ALPHABET)) == len(REFERENCE_ALPHABET) >= 28


@given(st.datetimes(), st.integers(0, 2**64))
def test_reference_format(now: datetime, seed: int) -> None:
    reference = new_reference(now, random.Random(seed))
    assert REFERENCE.fullmatch(reference)
    assert new_reference(now, random.Random(seed)) == reference  # reproducible in tests


def test_reference_without_rng_is_random() -> None:
    references = {new_reference(AT) for _ in range(200)}
    assert len(references) == 200
    assert all(REFERENCE.fullmatch(reference) for reference in references)


def test_reference_uses_whole_alphabet() -> None:
    rng = random.Random(4)
    seen = set("".join(new_reference(AT, rng) for _ in range(500)).replace("SG-", ""))
    assert seen - {"-"} == set(REFERENCE_ALPHABET)

"""Nobody acts as someone else on the portal: through a real mitmdump, with raw sockets.

A pupil sends the portal's old identity header in every spelling the WSGI layer folds into
one (`-`/`_`, any case, repeated, folded, spaced), over plain HTTP and inside a decrypted
tunnel; the audited request must be filed as the pupil (the proxy sign-in) or refused, never
as the member of staff named. Block pages are served on the blocked site's own origin, so
they carry no token: what they post is shown back on the portal, and only that confirmation
page's own post acts: with the token minted for that person, address and form, from a page of
the portal (Origin, or Referer without one), once (CSRF).
"""

from __future__ import annotations

import base64
import html
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa

from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import reports, unblocks
from tests.conftest import Gateway, Upstream, copy_policy, start_mitmdump
from tests.gateway.test_gateway_identity import auth_gateway  # noqa: F401  (a fixture: teacher, pupil)
from tests.support.portal_form import STAFF_REQUEST, hidden_fields

PORTAL = "schoolgate.local"
TEACHER, PUPIL = ("teacher", "t-pass"), ("pupil", "p-pass")


@pytest.fixture
def gateway(auth_gateway: Gateway) -> Gateway:  # noqa: F811
    """Proxy sign-in: teacher (staff) and pupil (ks2); test_gateway_identity.py's gateway."""
    return auth_gateway


@pytest.fixture(scope="module")
def open_gateway(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    """No proxy sign-in: loopback is on no network of the policy, so the default profile."""
    tmp = tmp_path_factory.mktemp("portal-open")
    gw = start_mitmdump(copy_policy(tmp), tmp / "var", upstream)
    yield gw
    gw.stop()


# -- raw HTTP through the proxy ----------------------------------------------------------------


def _auth(who: tuple[str, str] | None) -> str:
    if who is None:
        return ""
    token = base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode()
    return f"Proxy-Authorization: Basic {token}\r\n"


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


Answer = tuple[int, str]  # status, body


def _answer(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    text = body.decode("utf-8", "replace")
    if b"transfer-encoding: chunked" in head.lower():
        text = _unchunk(body).decode("utf-8", "replace")
    return (int(status.group(1)) if status else 0), text


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if not size:
            return out
        out, body = out + body[:size], body[size + 2 :]
    return out


def raw_request(
    gw: Gateway,
    method: str,
    url: str,
    *,
    who: tuple[str, str] | None = None,
    extra: str = "",
    form: dict[str, str] | None = None,
    source: str = "127.0.0.1",
    tls: bool = False,
) -> tuple[int, str]:
    """One request as a pupil with a raw socket would send it: (status, body).

    `extra` is put into the header block as written (any spelling, folding or spacing).
    With `tls`, it goes inside a CONNECT tunnel to the portal, decrypted by the gateway.
    """
    body = urlencode(form or {}).encode()
    host = urlsplit(url).netloc
    path = url if not tls else url.split(host, 1)[1] or "/"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
        + ("" if tls else _auth(who))
        + "Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        + extra
        + "\r\n"
    )
    with socket.create_connection(
        ("127.0.0.1", gw.port), timeout=10, source_address=(source, 0)
    ) as s:
        if not tls:
            s.sendall(head.encode("latin-1") + body)
            return _answer(_read_all(s))
        s.sendall(
            f"CONNECT {PORTAL}:443 HTTP/1.1\r\nHost: {PORTAL}:443\r\n{_auth(who)}\r\n".encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200"), reply
        context = ssl.create_default_context(cafile=str(gw.ca))
        with context.wrap_socket(s, server_hostname=PORTAL) as t:
            t.sendall(head.encode("latin-1") + body)
            return _answer(_read_all(t))


PORTAL_ORIGIN = f"Origin: http://{PORTAL}\r\n"
TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')


@dataclass(frozen=True)
class Browser:
    """A person's browser as the portal sees it: signed in as `who`, from `source`, to the
    http portal or (`tls`) the https one, adding the `extra` header lines to every post."""

    gw: Gateway
    who: tuple[str, str] | None
    source: str = "127.0.0.1"
    tls: bool = False
    extra: str = ""

    @property
    def portal(self) -> str:
        return f"{'https' if self.tls else 'http'}://{PORTAL}"

    def post(self, path: str, form: dict[str, str], *, from_portal: bool = False) -> Answer:
        origin = f"Origin: {self.portal}\r\n" if from_portal else ""
        return raw_request(
            self.gw,
            "POST",
            self.portal + path,
            who=self.who,
            form=form,
            source=self.source,
            tls=self.tls,
            extra=origin + self.extra,
        )

    def confirmation(self, path: str, form: dict[str, str]) -> dict[str, str]:
        """Post `form` as a block page does (no token): the portal shows it back to confirm,
        on its own origin; returns the fields its Send button posts (with their token)."""
        status, page = self.post(path, form)
        assert status == 200 and "Nothing has been sent yet" in page, page
        fields = hidden_fields(page)
        assert fields["csrf_token"], page
        assert {k: v for k, v in fields.items() if k != "csrf_token"} == form, page
        return fields

    def send(self, path: str, form: dict[str, str]) -> Answer:
        """What a person does: the block page's form, then Send on the portal's page."""
        return self.post(path, self.confirmation(path, form), from_portal=True)


def request_form(token: str | None = None, **changes: str) -> dict[str, str]:
    form = STAFF_REQUEST | changes
    if token is not None:
        form["csrf_token"] = token
    return form


def rows(gw: Gateway, table: sa.Table) -> list[sa.Row[object]]:
    store = Store.open(store_url(gw.var))
    try:
        with store.connect() as conn:
            return list(conn.execute(sa.select(table).order_by(table.c.id)).all())
    finally:
        store.dispose()


def requested_by(gw: Gateway) -> list[str]:
    return [r.requested_by for r in rows(gw, unblocks)]


# -- identity headers in every spelling ----------------------------------------------------------

# What a pupil adds to claim to be the teacher; each is sent as the pupil (signed in as such).
SPOOFS = {
    "canonical": "X-Schoolgate-User: teacher\r\n",
    "lower": "x-schoolgate-user: teacher\r\n",
    "underscores": "X_Schoolgate_User: teacher\r\n",
    "underscores lower": "x_schoolgate_user: teacher\r\n",
    "underscores upper": "X_SCHOOLGATE_USER: teacher\r\n",
    "mixed": "X-SchoolGate_user:teacher\r\n",
    "repeated": "X-Schoolgate-User: teacher\r\nX-Schoolgate-User: teacher\r\n",
    "two spellings": "X-Schoolgate-User: pupil\r\nX_Schoolgate_User: teacher\r\n",
    "after a real one": "x_schoolgate_user: teacher\r\nX-Schoolgate-User: teacher\r\n",
    "folded": "X-Schoolgate-User:\r\n teacher\r\n",
    "space before colon": "X-Schoolgate-User : teacher\r\n",
    "tab before colon": "X_Schoolgate_User\t: teacher\r\n",
    "with the staff address": "X-Schoolgate-User: teacher\r\nX-Schoolgate-Ip: 10.20.0.5\r\n",
    "address only": "X_Schoolgate_Ip: 10.20.0.5\r\n",
    "comma list": "X-Schoolgate-User: teacher, teacher\r\n",
}


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("spoof", SPOOFS.values(), ids=SPOOFS.keys())
@pytest.mark.parametrize("signed_in", [True, False], ids=["as-pupil", "no-sign-in"])
def test_an_identity_header_in_any_spelling_files_nothing_as_staff(
    request: pytest.FixtureRequest, spoof: str, tls: bool, signed_in: bool
) -> None:
    """The hole as found: `X_Schoolgate_User: teacher` with no proxy sign-in was filed as
    the teacher. Now: signed in, the pupil (not staff, 403); not signed in, sent to the web
    app's sign-in, which has the same form (303); or refused as malformed (400). Sent as
    from a portal page, so nothing but the header stands between the pupil and acting."""
    gw: Gateway = request.getfixturevalue("auth_gateway" if signed_in else "open_gateway")
    who = PUPIL if signed_in else None
    before = requested_by(gw)
    scheme = "https" if tls else "http"
    url = f"{scheme}://{PORTAL}/unblock/request"
    origin = f"Origin: {scheme}://{PORTAL}\r\n"
    form = request_form()
    status, body = raw_request(gw, "POST", url, who=who, extra=origin + spoof, form=form, tls=tls)
    assert status in (400, 403 if signed_in else 303), body
    if status == 403:
        assert "Only staff can ask" in body
    assert requested_by(gw) == before  # nothing filed, least of all as the teacher


@pytest.mark.parametrize("spoof", SPOOFS.values(), ids=SPOOFS.keys())
def test_a_report_is_filed_as_the_real_sender_whatever_it_claims(
    open_gateway: Gateway, spoof: str
) -> None:
    form = {"ref": "SG-SPOOF", "url": "http://adult.test/unit", "message": spoof.strip()}
    url = f"http://{PORTAL}/report"
    status, page = raw_request(open_gateway, "POST", url, extra=spoof, form=form)
    if status == 400:  # a malformed header is refused before any page
        return
    assert status == 200 and "Nothing has been sent yet" in page, page
    fields = hidden_fields(page)
    status, body = raw_request(open_gateway, "POST", url, extra=PORTAL_ORIGIN + spoof, form=fields)
    assert status == 200 and "Thank you" in body, body
    record = rows(open_gateway, reports)[-1]
    assert record.text == spoof.strip()
    # No sign-in here: no user, the real address, the default profile (not staff's).
    assert (record.username, record.ip, record.profile) == (None, "127.0.0.1", "early_years")


def test_the_teacher_signed_in_to_the_proxy_files_as_the_teacher(gateway: Gateway) -> None:
    spoof = "X_Schoolgate_User: dsl\r\n"  # claiming to be someone else changes nothing
    status, body = Browser(gateway, TEACHER, extra=spoof).send("/unblock/request", request_form())
    assert status == 200, body
    uid = re.search(r"UB-[A-Z0-9]{6}", body)
    assert uid
    [row] = [r for r in rows(gateway, unblocks) if r.id == uid.group(0)]
    assert (row.requested_by, row.status, row.target) == ("teacher", "pending", "adult.test")


# -- block pages are on the blocked site's origin: they carry nothing that acts ------------------

SAME_ORIGIN = {  # what script on an allowed page of mixed.test can make the teacher's browser send
    "origin of the site": "Origin: http://mixed.test\r\n",
    "null origin": "Origin: null\r\n",
    "no origin, the site as referer": "Referer: http://mixed.test/\r\n",
    "nothing": "",
}


@pytest.mark.parametrize("headers", SAME_ORIGIN.values(), ids=SAME_ORIGIN.keys())
def test_a_same_origin_block_page_gives_script_nothing_to_act_with(
    gateway: Gateway, headers: str
) -> None:
    """The hole as found: http://mixed.test/adult is blocked and http://mixed.test/ is not, so
    script on mixed.test could fetch the block page, read the teacher's form token in it and
    post an unblock request to the portal as the teacher. Whatever the page holds, a post made
    with it is only ever shown back for confirmation on the portal; nothing is filed."""
    status, page = raw_request(gateway, "GET", "http://mixed.test/adult", who=TEACHER)
    assert status == 403 and "/unblock/request" in page, page
    found = TOKEN.findall(page)
    before = requested_by(gateway)
    for token in [*found, None]:
        form = request_form(token, url="http://mixed.test/adult", reason="script")
        url = f"http://{PORTAL}/unblock/request"
        status, body = raw_request(gateway, "POST", url, who=TEACHER, extra=headers, form=form)
        assert requested_by(gateway) == before, body
        assert status == 200 and "Send this request?" in body, body


@pytest.mark.parametrize(
    ("url", "who"),
    [
        ("http://mixed.test/adult", TEACHER),
        ("https://mixed.test/adult", TEACHER),
        ("http://adult.test/", PUPIL),
        ("https://adult.test/unit", PUPIL),
        ("http://illegal.test/exact.html", TEACHER),
    ],
)
def test_no_block_page_carries_a_form_token(
    gateway: Gateway, url: str, who: tuple[str, str]
) -> None:
    page = gateway.curl(url, user=":".join(who)).stdout
    assert page.endswith("403"), page
    assert "csrf_token" not in page and not re.search(r"\d{10}\.[\w-]{16}\.[0-9a-f]{32}", page)


# -- the confirmation page and its token ----------------------------------------------------------


def test_the_confirmation_shows_what_was_posted_escaped_and_sends_only_that(
    gateway: Gateway,
) -> None:
    evil = '"><script>alert(1)</script><input name="audience" value="profile:staff'
    form = request_form(reason=evil, url="http://mixed.test/adult?q=secret")
    status, page = raw_request(
        gateway, "POST", f"http://{PORTAL}/unblock/request", who=TEACHER, form=form
    )
    assert status == 200 and "Send this request?" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "mixed.test/adult" in page and "secret" in page.split("<form")[1]  # hidden, not shown
    assert "secret" not in page.split("<form")[0]
    for shown in ("The whole website", "KS2", "1 hour", "SG-TEST"):
        assert shown in page, shown
    fields = hidden_fields(page)
    token = fields.pop("csrf_token")
    assert fields == form and TOKEN.findall(page) == [html.escape(token)]
    result = gateway.curl(
        f"http://{PORTAL}/unblock/request",
        "-i",
        "--data-urlencode",
        "reason=x",
        user=":".join(TEACHER),
    )
    assert "x-frame-options: deny" in result.stdout.lower()
    assert "frame-ancestors 'none'" in result.stdout


ORIGINS = {
    "the site": "Origin: http://mixed.test\r\n",
    "null": "Origin: null\r\n",
    "look-alike": f"Origin: http://{PORTAL}.mixed.test\r\n",
    "suffix": "Origin: http://evil-schoolgate.local\r\n",
    "other port": f"Origin: http://{PORTAL}:8080\r\n",
    "other scheme": f"Origin: ftp://{PORTAL}\r\n",
    "with a path": f"Origin: http://{PORTAL}/x\r\n",
    "two origins": f"Origin: http://mixed.test\r\nOrigin: http://{PORTAL}\r\n",
    "none, no referer": "",
    "referer elsewhere": "Referer: http://mixed.test/adult\r\n",
    "referer userinfo": f"Referer: http://{PORTAL}@mixed.test/\r\n",
    "referer in the query": f"Referer: http://mixed.test/?http://{PORTAL}/\r\n",
    "null origin, portal referer": f"Origin: null\r\nReferer: http://{PORTAL}/report\r\n",
}


@pytest.mark.parametrize("headers", ORIGINS.values(), ids=ORIGINS.keys())
def test_the_confirmation_token_acts_only_from_a_portal_page(
    gateway: Gateway, headers: str
) -> None:
    """Even with the person's own confirmation token, a post that does not come from a page
    of the portal itself is only shown back again; nothing is filed."""
    fields = Browser(gateway, TEACHER).confirmation("/unblock/request", request_form())
    before = requested_by(gateway)
    url = f"http://{PORTAL}/unblock/request"
    status, body = raw_request(gateway, "POST", url, who=TEACHER, form=fields, extra=headers)
    assert status == 200 and "Send this request?" in body, body
    assert requested_by(gateway) == before


def test_tokens_are_for_their_own_person_address_and_form_and_act_once(gateway: Gateway) -> None:
    path, url = "/unblock/request", f"http://{PORTAL}/unblock/request"
    teacher = Browser(gateway, TEACHER).confirmation(path, request_form())["csrf_token"]
    elsewhere = Browser(gateway, TEACHER, "127.0.0.2").confirmation(path, request_form())
    report = {"ref": "SG-TEST", "url": "http://adult.test/", "message": "maths"}
    pupil = Browser(gateway, PUPIL).confirmation("/report", report)["csrf_token"]
    teachers_report = Browser(gateway, TEACHER).confirmation("/report", report)["csrf_token"]
    forged = teacher[:-1] + ("0" if teacher[-1] != "0" else "1")
    issued, nonce, mac = teacher.split(".")
    older = f"{int(issued) - 3 * 3600}.{nonce}.{mac}"
    other_nonce = f"{issued}.{'A' * 16}.{mac}"
    before = requested_by(gateway)
    for token in (
        "",
        pupil,
        elsewhere["csrf_token"],
        teachers_report,
        forged,
        older,
        other_nonce,
        "1.2.3",
        "x" * 500,
    ):
        form = request_form(token)
        status, body = raw_request(
            gateway, "POST", url, who=TEACHER, form=form, extra=PORTAL_ORIGIN
        )
        assert status == 200 and "Send this request?" in body, (token, body)
    assert requested_by(gateway) == before
    # The real one acts once: a second click, a resent form, a copy are told it went already.
    form = request_form(teacher)
    status, body = raw_request(gateway, "POST", url, who=TEACHER, form=form, extra=PORTAL_ORIGIN)
    assert status == 200 and "Thank you" in body, body
    for _ in range(2):
        status, body = raw_request(
            gateway, "POST", url, who=TEACHER, form=form, extra=PORTAL_ORIGIN
        )
        assert status == 409 and "This was sent already" in body, body
    assert requested_by(gateway) == [*before, "teacher"]
    # The same teacher from the other address, with that address's page: accepted; and a
    # browser that sends a Referer but no Origin is believed by its Referer.
    status, body = raw_request(
        gateway,
        "POST",
        url,
        who=TEACHER,
        form=elsewhere,
        source="127.0.0.2",
        extra=f"Referer: http://{PORTAL}/unblock/request\r\n",
    )
    assert status == 200 and "Thank you" in body, body


def test_other_portal_forms_need_a_portal_token_from_a_portal_page(gateway: Gateway) -> None:
    status, body = raw_request(gateway, "POST", f"http://{PORTAL}/checks", who=TEACHER, form={})
    assert status == 403 and "We could not send that form" in body
    report = {"ref": "SG-TEST", "url": "http://adult.test/", "message": "maths"}
    token = Browser(gateway, TEACHER).confirmation("/report", report)["csrf_token"]
    status, body = raw_request(
        gateway,
        "POST",
        f"http://{PORTAL}/checks",
        who=TEACHER,
        form={"csrf_token": token},
        extra=PORTAL_ORIGIN,
    )
    assert status == 403 and "We could not send that form" in body  # another form's token


def test_a_refused_request_gives_its_token_back(gateway: Gateway) -> None:
    """The workflow refuses it (a public suffix): nothing acted, so sending it again is
    refused again for the same reason, not called already sent."""
    form = request_form(url="http://com/")
    fields = Browser(gateway, TEACHER).confirmation("/unblock/request", form)
    before = requested_by(gateway)
    url = f"http://{PORTAL}/unblock/request"
    for _ in range(2):
        status, body = raw_request(
            gateway, "POST", url, who=TEACHER, form=fields, extra=PORTAL_ORIGIN
        )
        assert status == 400 and "We could not send that request" in body, body
    assert requested_by(gateway) == before


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "says"),
    [
        ("9" * 40, "at most"),
        ("10" + "0" * 4300, "at most"),  # past Python's int() digit limit
        ("99999999", "at most"),
        ("1e9", "whole number"),
        ("-5", "whole number"),
        ("٣", "whole number"),  # a digit, but not 0-9
    ],
)
def test_a_huge_or_odd_number_of_minutes_is_a_clear_400(
    gateway: Gateway, minutes: str, says: str
) -> None:
    before = requested_by(gateway)
    url = f"http://{PORTAL}/unblock/request"
    form = request_form(minutes=minutes)
    status, body = raw_request(gateway, "POST", url, who=TEACHER, form=form)
    assert status == 400, body
    assert "We could not send that request" in body and says in body
    assert requested_by(gateway) == before


def test_an_https_block_page_is_confirmed_and_sent_on_the_https_portal(gateway: Gateway) -> None:
    result = gateway.curl("https://adult.test/unit", user=":".join(TEACHER))
    assert f'action="https://{PORTAL}/unblock/request"' in result.stdout
    form = request_form(reason="https block page")
    status, body = Browser(gateway, TEACHER, tls=True).send("/unblock/request", form)
    assert status == 200 and "Thank you" in body, body
    assert requested_by(gateway)[-1] == "teacher"

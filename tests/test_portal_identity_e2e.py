"""Nobody acts as someone else on the portal: through a real mitmdump, with raw sockets.

A pupil sends the portal's old identity header in every spelling the WSGI layer folds into
one (`-`/`_`, any case, repeated, folded, spaced), over plain HTTP and inside a decrypted
tunnel; the audited request must be filed as the pupil (the proxy sign-in) or refused, never
as the member of staff named. Every portal form needs the token written into the page for
that same person and address (CSRF).
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa

from proxy_addons.blockpage import FORM_TOKEN_SLOT
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import reports, unblocks
from tests.conftest import Gateway, Upstream, copy_policy, start_mitmdump
from tests.test_gateway_identity import auth_gateway  # noqa: F401  (a fixture: teacher, pupil)

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


def _answer(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return (int(status.group(1)) if status else 0), body.decode("utf-8", "replace")


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


def block_page_token(gw: Gateway, who: tuple[str, str] | None, source: str = "127.0.0.1") -> str:
    """The form token on the block page the gateway shows `who` for a blocked site."""
    status, page = raw_request(gw, "GET", "http://adult.test/unit", who=who, source=source)
    assert status == 403, page
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the block page's form has no token"
    assert found.group(1) != FORM_TOKEN_SLOT, "the token was not written in"
    return found.group(1)


def request_form(token: str | None, **changes: str) -> dict[str, str]:
    form = {
        "ref": "SG-TEST",
        "url": "https://adult.test/unit",
        "scope": "domain",
        "audience": "profile:ks2",
        "minutes": "60",
        "reason": "sex education unit",
        **changes,
    }
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
    app's sign-in, which has the same form (303); or refused as malformed (400)."""
    gw: Gateway = request.getfixturevalue("auth_gateway" if signed_in else "open_gateway")
    who = PUPIL if signed_in else None
    token = block_page_token(gw, who)
    before = requested_by(gw)
    url = f"http://{PORTAL}/unblock/request"
    form = request_form(token)
    status, body = raw_request(gw, "POST", url, who=who, extra=spoof, form=form, tls=tls)
    assert status in (400, 403 if signed_in else 303), body
    if status == 403:
        assert "Only staff can ask" in body
    assert requested_by(gw) == before  # nothing filed, least of all as the teacher


@pytest.mark.parametrize("spoof", SPOOFS.values(), ids=SPOOFS.keys())
def test_a_report_is_filed_as_the_real_sender_whatever_it_claims(
    open_gateway: Gateway, spoof: str
) -> None:
    token = block_page_token(open_gateway, None)
    form = {"ref": "SG-SPOOF", "url": "http://adult.test/unit", "message": spoof.strip()}
    form["csrf_token"] = token
    status, body = raw_request(
        open_gateway, "POST", f"http://{PORTAL}/report", extra=spoof, form=form
    )
    assert status in (200, 400), body
    if status == 200:
        record = rows(open_gateway, reports)[-1]
        assert record.text == spoof.strip()
        # No sign-in here: no user, the real address, the default profile (not staff's).
        assert (record.username, record.ip, record.profile) == (None, "127.0.0.1", "early_years")


def test_the_teacher_signed_in_to_the_proxy_files_as_the_teacher(gateway: Gateway) -> None:
    token = block_page_token(gateway, TEACHER)
    url = f"http://{PORTAL}/unblock/request"
    spoof = "X_Schoolgate_User: dsl\r\n"  # claiming to be someone else changes nothing
    status, body = raw_request(
        gateway, "POST", url, who=TEACHER, extra=spoof, form=request_form(token)
    )
    assert status == 200, body
    uid = re.search(r"UB-[A-Z0-9]{6}", body)
    assert uid
    [row] = [r for r in rows(gateway, unblocks) if r.id == uid.group(0)]
    assert (row.requested_by, row.status, row.target) == ("teacher", "pending", "adult.test")


# -- CSRF tokens ----------------------------------------------------------------------------------


def test_forms_without_the_senders_own_token_are_refused(gateway: Gateway) -> None:
    teacher = block_page_token(gateway, TEACHER)
    pupil = block_page_token(gateway, PUPIL)
    elsewhere = block_page_token(gateway, TEACHER, source="127.0.0.2")
    assert len({teacher, pupil, elsewhere}) == 3
    before = requested_by(gateway)
    forged = teacher[:-1] + ("0" if teacher[-1] != "0" else "1")
    older = f"{int(teacher.split('.')[0]) - 13 * 3600}.{teacher.split('.')[1]}"
    url = f"http://{PORTAL}/unblock/request"
    for token in (None, "", FORM_TOKEN_SLOT, pupil, elsewhere, forged, older, "1.2", "x" * 500):
        status, body = raw_request(gateway, "POST", url, who=TEACHER, form=request_form(token))
        assert status == 403, (token, body)
        assert "We could not send that form" in body
    # The pupil's "is this a mistake" form and the browser check's start form too.
    status, body = raw_request(
        gateway, "POST", f"http://{PORTAL}/report", who=PUPIL, form={"csrf_token": teacher}
    )
    assert status == 403 and "We could not send that form" in body
    status, _ = raw_request(gateway, "POST", f"http://{PORTAL}/checks", who=TEACHER, form={})
    assert status == 403
    assert requested_by(gateway) == before
    # The same teacher from the other address, with that address's page: accepted.
    status, body = raw_request(
        gateway, "POST", url, who=TEACHER, form=request_form(elsewhere), source="127.0.0.2"
    )
    assert status == 200, body


def test_an_allowed_page_never_gets_a_token_written_in(gateway: Gateway) -> None:
    """Only the gateway's own block page for that very request is filled in: an upstream page
    that happens to hold the placeholder keeps it (a token there would leak to that site)."""
    status, body = raw_request(gateway, "GET", f"http://plain.test/{FORM_TOKEN_SLOT}", who=PUPIL)
    assert status == 200 and FORM_TOKEN_SLOT in body


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
    token = block_page_token(gateway, TEACHER)
    before = requested_by(gateway)
    url = f"http://{PORTAL}/unblock/request"
    form = request_form(token, minutes=minutes)
    status, body = raw_request(gateway, "POST", url, who=TEACHER, form=form)
    assert status == 400, body
    assert "We could not send that request" in body and says in body
    assert requested_by(gateway) == before


def test_an_https_block_page_carries_a_token_the_https_portal_takes(gateway: Gateway) -> None:
    result = gateway.curl("https://adult.test/unit", user=":".join(TEACHER))
    found = re.search(r'name="csrf_token" value="([^"]+)"', result.stdout)
    assert found and found.group(1) != FORM_TOKEN_SLOT, result.stdout
    assert f'action="https://{PORTAL}/unblock/request"' in result.stdout
    url = f"https://{PORTAL}/unblock/request"
    form = request_form(found.group(1), reason="https block page")
    status, body = raw_request(gateway, "POST", url, who=TEACHER, form=form, tls=True)
    assert status == 200, body
    assert requested_by(gateway)[-1] == "teacher"

"""The admin web app through Flask's test client, on a real SQLite store and the test policy."""

from __future__ import annotations

import dataclasses
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.unblocks import AudienceKind, Status
from proxy_addons.store import DB_FILE, Store, store_url
from proxy_addons.store.schema import audit_log, unblocks, web_sessions
from proxy_addons.web.app import create_app
from proxy_addons.web.serving import read_secret_key
from proxy_addons.web.unblock_forms import parse_when
from proxy_addons.workflow.accounts import (
    AccountError,
    add_account,
    check_password,
    set_disabled,
    set_password,
)
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow

POLICY = Path(__file__).resolve().parents[1] / "data" / "policy" / "school.yaml"
PASSWORD = "correct horse battery"
# (name, roles); "pupil" is in the policy's ks2 profile and has no staff role.
PEOPLE = [
    ("teacher", ["staff"]),
    ("teacher2", ["staff"]),
    ("dsl", ["staff", "dsl"]),
    ("deputy", ["staff", "deputy"]),
    ("tech", ["it"]),
    ("pupil", []),
]
SECRET = b"k" * 32


def seed(var: Path) -> Path:
    """A store file with everyone's account (copied per test: bcrypt is slow on purpose)."""
    store = Store.open(store_url(var))
    for name, roles in PEOPLE:
        add_account(store, name, PASSWORD, roles, email=f"{name}@test.example")
    store.dispose()  # checkpoints the WAL into the file
    return var / DB_FILE


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed(tmp_path_factory.mktemp("seed"))


@dataclass
class Web:
    app: Flask
    store: Store
    workflow: UnblockWorkflow
    policy: Policy

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def count(self, table: sa.Table = unblocks) -> int:
        with self.store.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def make_web(var: Path, seeded_db: Path, *, secure_cookies: bool = False) -> Web:
    var.mkdir(parents=True, exist_ok=True)
    shutil.copy(seeded_db, var / DB_FILE)
    store = Store.open(store_url(var))
    policy = load_policy(POLICY)
    workflow = UnblockWorkflow(store, lambda: policy, send_in_background=False)
    app = create_app(workflow, store, secret_key=SECRET, secure_cookies=secure_cookies)
    return Web(app, store, workflow, policy)


@pytest.fixture
def web(tmp_path: Path, seeded_db: Path) -> Iterator[Web]:
    # The test client speaks plain http, so Secure cookies are off here; one test checks them.
    result = make_web(tmp_path / "var", seeded_db)
    yield result
    result.store.dispose()


def token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def page_token(client: FlaskClient, path: str) -> str:
    return token(client.get(path).get_data(as_text=True))


def sign_in(web: Web, name: str) -> FlaskClient:
    client = web.client()
    answer = client.post(
        "/login",
        data={"username": name, "password": PASSWORD, "csrf_token": page_token(client, "/login")},
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return client


def file_request(web: Web, client: FlaskClient, **fields: str) -> str:
    data = {
        "url": "https://video.example.com/watch/lesson-3",
        "scope": "",
        "audience_kind": "users",
        "audience": "pupil, pupil2",
        "minutes": "45",
        "until": "",
        "reason": "Year 6 science: the digestive system video",
        **fields,
    }
    data["csrf_token"] = page_token(client, "/unblocks/new")
    answer = client.post("/unblocks/new", data=data)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    found = re.search(r"/unblocks/(UB-\w+)$", answer.headers["Location"])
    assert found
    return found.group(1)


def post_action(client: FlaskClient, unblock_id: str, action: str, **fields: str) -> TestResponse:
    fields["csrf_token"] = page_token(client, f"/unblocks/{unblock_id}")
    return client.post(f"/unblocks/{unblock_id}/{action}", data=fields)


def text(answer: TestResponse) -> str:
    return str(answer.get_data(as_text=True))


# -- signing in -------------------------------------------------------------------------------


def test_pages_need_sign_in(web: Web) -> None:
    client = web.client()
    assert client.get("/").headers["Location"].startswith("/login?next=")
    for path in ("/unblocks", "/unblocks/new?url=https://a.example/", "/unblocks/UB-XXXXXX"):
        answer = client.get(path)
        assert answer.status_code == 302
        assert answer.headers["Location"].startswith("/login?next=")
    assert "Sign in" in text(client.get("/login"))


def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(web: Web) -> None:
    for target, expected in [
        ("/unblocks/new?url=x", "/unblocks/new?url=x"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
    ]:
        client = web.client()
        answer = client.post(
            "/login",
            data={
                "username": "teacher",
                "password": PASSWORD,
                "next": target,
                "csrf_token": page_token(client, "/login"),
            },
        )
        assert answer.headers["Location"] == expected


def test_wrong_password_and_unknown_user_are_refused_alike(web: Web) -> None:
    for name, password in [("teacher", "not the password"), ("nobody", PASSWORD)]:
        client = web.client()
        answer = client.post(
            "/login",
            data={
                "username": name,
                "password": password,
                "csrf_token": page_token(client, "/login"),
            },
        )
        assert answer.status_code == 401
        assert "don&#39;t match an account" in text(answer)
        assert client.get("/unblocks").status_code == 302


def test_repeated_failures_are_throttled(web: Web) -> None:
    client = web.client()
    for _ in range(5):
        client.post(
            "/login",
            data={
                "username": "dsl",
                "password": "guess",
                "csrf_token": page_token(client, "/login"),
            },
        )
    answer = client.post(
        "/login",
        data={"username": "dsl", "password": PASSWORD, "csrf_token": page_token(client, "/login")},
    )
    assert answer.status_code == 429
    assert client.get("/unblocks").status_code == 302


def test_user_names_are_case_insensitive(web: Web) -> None:
    client = web.client()
    answer = client.post(
        "/login",
        data={
            "username": " Teacher ",
            "password": PASSWORD,
            "csrf_token": page_token(client, "/login"),
        },
    )
    assert answer.status_code == 303
    assert "Signed in as teacher" in text(client.get("/unblocks"))


def test_posts_without_a_csrf_token_are_refused(web: Web) -> None:
    client = web.client()
    answer = client.post("/login", data={"username": "teacher", "password": PASSWORD})
    assert answer.status_code == 400
    assert "did not come from this site" in text(answer)
    assert client.get("/unblocks").status_code == 302

    teacher = sign_in(web, "teacher")
    answer = teacher.post(
        "/unblocks/new",
        data={"url": "a.example", "audience_kind": "users", "audience": "pupil", "reason": "x"},
    )
    assert answer.status_code == 400
    assert web.count() == 0
    answer = teacher.post("/logout", data={"csrf_token": "forged"})
    assert answer.status_code == 400
    assert teacher.get("/unblocks").status_code == 200  # still signed in


def test_sign_in_starts_a_new_session(web: Web) -> None:
    client = web.client()
    before = page_token(client, "/login")
    client.post("/login", data={"username": "teacher", "password": PASSWORD, "csrf_token": before})
    after = page_token(client, "/unblocks")
    assert after != before
    # The pre-login token belonged to the old session and is worthless now.
    assert client.post("/logout", data={"csrf_token": before}).status_code == 400
    assert client.post("/logout", data={"csrf_token": after}).status_code == 303
    assert client.get("/unblocks").status_code == 302


def test_pupil_account_sees_no_pages(web: Web) -> None:
    client = web.client()
    answer = client.post(
        "/login",
        data={
            "username": "pupil",
            "password": PASSWORD,
            "csrf_token": page_token(client, "/login"),
        },
    )
    assert answer.status_code == 403
    assert "for school staff only" in text(answer)
    for path in ("/unblocks", "/unblocks/new"):
        assert client.get(path).status_code == 302


def test_disabling_an_account_or_changing_its_password_ends_its_sessions(web: Web) -> None:
    teacher = sign_in(web, "teacher")
    dsl = sign_in(web, "dsl")
    dsl_copy = replay(web, dsl)
    set_disabled(web.store, "teacher")
    assert teacher.get("/unblocks").status_code == 302
    set_password(web.store, "dsl", "a brand new password")
    assert dsl.get("/unblocks").status_code == 302
    assert dsl_copy.get("/unblocks").status_code == 302
    assert web.count(web_sessions) == 0  # ended in the store, not only by the cookie's stamp


def replay(web: Web, client: FlaskClient) -> FlaskClient:
    """Another browser holding a copy of `client`'s session cookie, as an attacker would."""
    cookie = client.get_cookie("schoolgate")
    assert cookie is not None
    other = web.client()
    other.set_cookie("schoolgate", cookie.value)
    return other


def test_a_cookie_copied_before_sign_out_no_longer_works(web: Web) -> None:
    teacher = sign_in(web, "teacher")
    copy = replay(web, teacher)
    assert copy.get("/unblocks").status_code == 200  # a copy works while the session lives
    logout = teacher.post("/logout", data={"csrf_token": page_token(teacher, "/unblocks")})
    assert logout.status_code == 303
    for client in (teacher, copy):
        assert client.get("/unblocks").status_code == 302  # sent to sign in
        assert client.get("/unblocks/new").status_code == 302
    answer = copy.post("/unblocks/new", data={"url": "a.example", "reason": "x"})
    assert answer.status_code in (302, 303, 400) and web.count() == 0
    assert web.count(web_sessions) == 0
    # Signing in again elsewhere does not bring the old cookie back.
    again = sign_in(web, "teacher")
    assert copy.get("/unblocks").status_code == 302
    assert again.get("/unblocks").status_code == 200


def test_a_signed_cookie_naming_a_user_without_a_live_session_is_refused(web: Web) -> None:
    """The key signs cookies, but only the store says a session is live: a cookie made with
    the key (a leaked key, an old format naming the user) signs no one in."""
    forger = web.client()
    with forger.session_transaction() as cookie:
        cookie["user"] = "dsl"
        cookie["sid"] = "made-up-session-id"
        cookie["at"] = datetime.now(UTC).timestamp()
    assert forger.get("/unblocks").status_code == 302


def test_session_cookie_is_secure_httponly_lax(tmp_path: Path, seeded_db: Path) -> None:
    web = make_web(tmp_path / "var", seeded_db, secure_cookies=True)
    client = web.app.test_client()
    answer = client.get("/login", base_url="https://gate.test")
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("__Host-schoolgate=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/" in cookie and "Domain" not in cookie
    answer = client.post(
        "/login",
        base_url="https://gate.test",
        data={"username": "teacher", "password": PASSWORD, "csrf_token": token(text(answer))},
    )
    assert answer.status_code == 303
    [cookie] = [
        c for c in answer.headers.getlist("Set-Cookie") if c.startswith("__Host-schoolgate=")
    ]
    expires = re.search(r"Expires=([^;]+)", cookie)
    assert expires
    lifetime = datetime.strptime(expires.group(1), "%a, %d %b %Y %H:%M:%S GMT").replace(
        tzinfo=UTC
    ) - datetime.now(UTC)
    assert timedelta(hours=7, minutes=55) < lifetime <= timedelta(hours=8)
    # The throttle's "signed in on this browser before" cookie (LoginThrottle): the same care.
    [known] = [
        c for c in answer.headers.getlist("Set-Cookie") if c.startswith("__Host-schoolgate-known=")
    ]
    assert "Secure" in known and "HttpOnly" in known and "SameSite=Lax" in known
    assert "Path=/" in known and "Domain" not in known
    headers = client.get("/unblocks", base_url="https://gate.test").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    web.store.dispose()


# -- the workflow through the pages ------------------------------------------------------------


def test_teacher_requests_and_the_dsl_approves(web: Web) -> None:
    teacher = sign_in(web, "teacher")
    form = text(teacher.get("/unblocks/new?url=https://video.example.com/watch/lesson-3"))
    assert 'value="https://video.example.com/watch/lesson-3"' in form
    unblock_id = file_request(web, teacher)
    assert web.workflow.get(unblock_id).status is Status.PENDING

    detail = text(teacher.get(f"/unblocks/{unblock_id}"))
    assert "video.example.com/watch/lesson-3" in detail
    assert "Waiting for a DSL or deputy" in detail
    assert ">Approve<" not in detail
    answer = post_action(teacher, unblock_id, "approve", comment="fine by me")
    assert answer.status_code == 400
    assert "is not a DSL or deputy" in text(answer)
    assert web.workflow.get(unblock_id).status is Status.PENDING

    dsl = sign_in(web, "dsl")
    listing = text(dsl.get("/unblocks"))
    assert listing.index(unblock_id) < listing.index("In force now")
    assert "Users: pupil, pupil2" in listing and "Asked by teacher" in listing
    answer = post_action(dsl, unblock_id, "approve", comment="Checked the video: fine.")
    assert answer.status_code == 303
    detail = text(dsl.get(answer.headers["Location"]))
    assert "Approved: " in detail and "Checked the video: fine." in detail

    assert web.workflow.get(unblock_id).status is Status.ACTIVE
    row = web.workflow.details(unblock_id)
    assert row["decided_by"] == "dsl" and row["decision_comment"] == "Checked the video: fine."
    assert row["requested_from"] == "127.0.0.1"
    with web.store.connect() as conn:
        approved = conn.execute(
            sa.select(audit_log).where(audit_log.c.action == "unblock.approved")
        ).one()
    assert (approved.actor, approved.address, approved.subject) == ("dsl", "127.0.0.1", unblock_id)


def test_a_decider_never_decides_their_own_request(web: Web) -> None:
    dsl = sign_in(web, "dsl")
    unblock_id = file_request(web, dsl)
    detail = text(dsl.get(f"/unblocks/{unblock_id}"))
    assert "You asked for this unblock, so you can&#39;t approve or reject it" in detail
    assert ">Approve<" not in detail
    answer = post_action(dsl, unblock_id, "approve")
    assert answer.status_code == 400
    assert "Nobody decides their own request" in text(answer)
    assert ">Approve<" in text(sign_in(web, "deputy").get(f"/unblocks/{unblock_id}"))


def test_reject_needs_a_comment(web: Web) -> None:
    unblock_id = file_request(web, sign_in(web, "teacher"))
    deputy = sign_in(web, "deputy")
    answer = post_action(deputy, unblock_id, "reject", comment=" ")
    assert answer.status_code == 400 and "Say why the request is rejected" in text(answer)
    assert post_action(deputy, unblock_id, "reject", comment="Use the BBC clip").status_code == 303
    assert web.workflow.get(unblock_id).status is Status.REJECTED


def test_extend_and_revoke(web: Web) -> None:
    teacher = sign_in(web, "teacher")
    unblock_id = file_request(web, teacher, minutes="30")
    web.workflow.approve(Actor("dsl", "10.0.0.9"), unblock_id)
    before = web.workflow.get(unblock_id).ends_at

    answer = post_action(teacher, unblock_id, "extend", until="23:59", reason="more time")
    assert answer.status_code == 400 and "may not extend" in text(answer)

    deputy = sign_in(web, "deputy")
    new_end = (before + timedelta(hours=2)).astimezone(web.policy.timezone)
    answer = post_action(
        deputy,
        unblock_id,
        "extend",
        until=new_end.strftime("%Y-%m-%dT%H:%M"),
        reason="The lesson runs on",
    )
    assert answer.status_code == 303, text(answer)
    after = web.workflow.get(unblock_id).ends_at
    assert after == new_end.replace(second=0, microsecond=0).astimezone(UTC)

    answer = post_action(deputy, unblock_id, "extend", until="2020-01-01T10:00", reason="x")
    assert answer.status_code == 400
    assert web.workflow.get(unblock_id).ends_at == after

    assert post_action(teacher, unblock_id, "revoke", reason="done early").status_code == 303
    unblock = web.workflow.get(unblock_id)
    assert unblock.status is Status.REVOKED
    assert web.workflow.details(unblock_id)["ended_by"] == "teacher"
    detail = text(teacher.get(f"/unblocks/{unblock_id}"))
    assert "Revoked" in detail and "Revoke now" not in detail
    answer = post_action(teacher, unblock_id, "revoke")
    assert answer.status_code == 400 and "already" in text(answer)


def test_it_confirms_when_the_policy_asks(tmp_path: Path, seeded_db: Path) -> None:
    web = make_web(tmp_path / "var", seeded_db)
    strict = dataclasses.replace(web.policy.unblocks, require_it_confirmation=True)
    policy = dataclasses.replace(web.policy, unblocks=strict)
    web.workflow.policy = lambda: policy
    unblock_id = file_request(web, sign_in(web, "teacher"))
    post_action(sign_in(web, "dsl"), unblock_id, "approve")
    assert web.workflow.get(unblock_id).status is Status.AWAITING_IT
    tech = sign_in(web, "tech")
    assert "Confirm and apply" in text(tech.get(f"/unblocks/{unblock_id}"))
    assert post_action(tech, unblock_id, "confirm").status_code == 303
    assert web.workflow.get(unblock_id).status is Status.ACTIVE
    web.store.dispose()


def test_an_unknown_unblock_is_404(web: Web) -> None:
    teacher = sign_in(web, "teacher")
    answer = teacher.get("/unblocks/UB-NOPE99")
    assert answer.status_code == 404 and "There is no unblock UB-NOPE99" in text(answer)
    answer = teacher.post(
        "/unblocks/UB-NOPE99/approve", data={"csrf_token": page_token(teacher, "/unblocks")}
    )
    assert answer.status_code == 404
    assert text(answer).count("There is no unblock UB-NOPE99") == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"reason": "  "}, "Give the educational reason"),
        ({"url": "not a url"}, "is not a web address a browser could open"),
        ({"audience_kind": "user", "audience": "nobody"}, "Unknown user(s): nobody"),
        ({"minutes": "", "until": "YESTERDAY"}, "That end time has already passed"),
        ({"minutes": "", "until": "soon"}, "is not a time"),
        ({"minutes": "ten"}, "whole number"),
        ({"minutes": "99999999999999999999"}, "at most 7 days"),
        ({"until": "23:59"}, "not both"),
        ({"scope": "everything"}, "Choose what to unblock"),
        ({"audience_kind": "planet"}, "Choose who the unblock is for"),
        ({"audience_kind": "device", "audience": "10.0.0.999"}, "not a device&#39;s IP address"),
        ({"audience_kind": "profile", "audience": "ks9"}, "No profile called ks9"),
        ({"audience": ""}, "say who the unblock is for"),
    ],
)
def test_bad_requests_are_400_with_the_reason_and_store_nothing(
    web: Web, fields: dict[str, str], message: str
) -> None:
    if fields.get("until") == "YESTERDAY":
        yesterday = datetime.now(web.policy.timezone) - timedelta(days=1)
        fields = {**fields, "until": yesterday.strftime("%Y-%m-%dT%H:%M")}
    teacher = sign_in(web, "teacher")
    data = {
        "url": "https://video.example.com/watch",
        "scope": "",
        "audience_kind": "users",
        "audience": "pupil",
        "minutes": "30",
        "until": "",
        "reason": "A lesson",
        **fields,
        "csrf_token": page_token(teacher, "/unblocks/new"),
    }
    answer = teacher.post("/unblocks/new", data=data)
    assert answer.status_code == 400
    body = text(answer)
    assert message in body
    # The form comes back as it was typed, so nothing has to be typed again.
    assert f'value="{data["url"]}"' in body
    assert web.count() == 0
    assert web.count(audit_log) == 0


# -- pieces ----------------------------------------------------------------------------------------


def test_accounts(tmp_path: Path, seeded_db: Path) -> None:
    web = make_web(tmp_path / "var", seeded_db)
    store = web.store
    account = check_password(store, "DSL", PASSWORD)
    assert account is not None and account.roles == {"staff", "dsl"}
    assert PASSWORD not in repr(account) and account.password_hash not in repr(account)
    assert check_password(store, "dsl", PASSWORD + "x") is None
    assert check_password(store, "dsl", "x" * 100) is None
    with pytest.raises(AccountError, match="already"):
        add_account(store, "Teacher", PASSWORD, ["staff"])
    with pytest.raises(AccountError, match="Unknown role"):
        add_account(store, "new", PASSWORD, ["admin"])
    with pytest.raises(AccountError, match="at least"):
        add_account(store, "new", "short", ["staff"])
    with pytest.raises(AccountError, match="usable user name"):
        add_account(store, "two words", PASSWORD, ["staff"])
    with pytest.raises(AccountError, match="no account"):
        set_password(store, "ghost", PASSWORD)
    set_disabled(store, "teacher")
    assert check_password(store, "teacher", PASSWORD) is None
    set_disabled(store, "teacher", False)
    assert check_password(store, "teacher", PASSWORD) is not None
    store.dispose()


def test_secret_key_file(tmp_path: Path) -> None:
    key = read_secret_key(tmp_path / "var")
    path = tmp_path / "var" / "web-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 32 and read_secret_key(tmp_path / "var") == key


def test_parse_when_reads_school_time() -> None:
    policy = load_policy(POLICY)
    now = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)  # 10:30 in London (BST)
    assert parse_when("11:15", policy, now) == datetime(2026, 6, 1, 11, 15, tzinfo=policy.timezone)
    morning = parse_when("2026-06-02T08:00", policy, now)
    assert morning is not None and morning.astimezone(UTC).hour == 7
    assert parse_when("", policy, now) is None
    with pytest.raises(ValueError, match="too far"):
        parse_when("0001-01-01T00:00", policy, now)


def test_the_request_form_accepts_kinds_from_the_workflow() -> None:
    # The form's choices are the workflow's values, so a rename can't break it unnoticed.
    html = (
        Path(__file__).resolve().parents[2]
        / "proxy_addons"
        / "pages"
        / "templates"
        / "web_new.html"
    )
    source = html.read_text()
    for kind in AudienceKind:
        assert f'("{kind.value}", ' in source


# -- slowing down password guessing ------------------------------------------------------------


def attempt(client: FlaskClient, address: str, name: str, password: str) -> TestResponse:
    """One sign-in as the browser `client`, from `address`."""
    client.environ_base["REMOTE_ADDR"] = address
    data = {"username": name, "password": password, "csrf_token": page_token(client, "/login")}
    return client.post("/login", data=data)


def test_guesses_from_one_ipv6_64_count_as_one_client(web: Web) -> None:
    """The red team rotated fd00::1..8 and got 401 each time, never 429: a host can use any
    address in its /64, so the /64 is the client."""
    codes = [attempt(web.client(), f"fd00::{i}", "dsl", "guess").status_code for i in range(1, 9)]
    assert codes == [401] * 5 + [429] * 3
    assert attempt(web.client(), "fd00::abcd:1", "dsl", PASSWORD).status_code == 429
    # Another /64 is another client.
    assert attempt(web.client(), "fd00:0:0:1::7", "dsl", PASSWORD).status_code == 303


def test_one_client_trying_many_names_is_held_back(web: Web) -> None:
    codes = [
        attempt(web.client(), "10.9.9.9", f"name{i}", "Summer2026").status_code for i in range(22)
    ]
    assert codes == [401] * 20 + [429] * 2
    assert attempt(web.client(), "10.9.9.9", "teacher", PASSWORD).status_code == 429
    assert attempt(web.client(), "10.9.9.10", "teacher", PASSWORD).status_code == 303


def test_one_account_guessed_from_everywhere_is_slowed_but_not_locked(web: Web) -> None:
    """Guesses at one account spread over many addresses (one each) are held back after 10
    with a message saying what to do; the teacher's own browser (signed in on before) still
    gets in, and other accounts are untouched."""
    own = web.client()
    assert attempt(own, "10.20.0.5", "teacher", PASSWORD).status_code == 303
    own.post("/logout", data={"csrf_token": page_token(own, "/unblocks")})
    shared = web.client()  # a browser the DSL signed in on, not the teacher
    assert attempt(shared, "10.20.0.6", "dsl", PASSWORD).status_code == 303

    codes = [
        attempt(web.client(), f"10.30.{i}.1", "teacher", "guess").status_code for i in range(12)
    ]
    assert codes == [401] * 10 + [429] * 2
    held = attempt(web.client(), "10.30.99.1", "teacher", PASSWORD)  # the right one: not tried
    assert held.status_code == 429
    assert "from other computers" in text(held) and "signed in on before" in text(held)
    assert attempt(shared, "10.20.0.6", "teacher", PASSWORD).status_code == 429  # the DSL's
    forged = web.client()
    forged.set_cookie("schoolgate-known", "teacher")
    assert attempt(forged, "10.20.0.7", "teacher", PASSWORD).status_code == 429
    # The teacher's own browser, even from a new address: straight in.
    assert attempt(own, "10.20.0.99", "teacher", PASSWORD).status_code == 303
    assert "Signed in as teacher" in text(own.get("/unblocks"))
    assert attempt(web.client(), "10.30.0.1", "deputy", PASSWORD).status_code == 303

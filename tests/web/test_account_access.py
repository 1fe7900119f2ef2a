"""Accounts and access in the admin app, through Flask's test client on a real SQLite store:
a disabled account's live session ends and it can't sign in again (told why); two-factor
sign-in end to end, enrolment forced by the policy, codes never accepted twice, recovery
codes once; the access review, for whom and audited."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import DB_FILE, Store, store_url
from proxy_addons.store.schema import audit_log
from proxy_addons.web.app import create_app
from proxy_addons.workflow import account_admin, totp
from proxy_addons.workflow.accounts import get_account
from proxy_addons.workflow.unblocks import UnblockWorkflow
from tests.web.test_webapp import PASSWORD, POLICY, SECRET, page_token, seeded_db  # noqa: F401

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@dataclass
class Clocked:
    """The admin app with a clock the test moves (codes change every 30 s)."""

    store: Store
    policy: Policy
    now: datetime

    def client(self) -> FlaskClient:
        workflow = UnblockWorkflow(
            self.store, lambda: self.policy, clock=lambda: self.now, send_in_background=False
        )
        return create_app(
            workflow, self.store, secret_key=SECRET, secure_cookies=False
        ).test_client()

    def later(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def site(tmp_path: Path, seeded_db: Path) -> Iterator[Clocked]:  # noqa: F811
    var = tmp_path / "var"
    var.mkdir()
    shutil.copy(seeded_db, var / DB_FILE)
    store = Store.open(store_url(var))
    base = load_policy(POLICY)
    # The policy switch: the DSL's team and IT must use two-factor sign-in; staff needn't.
    auth = dataclasses.replace(base.authentication, require_2fa_for=frozenset({"dsl", "it"}))
    yield Clocked(store, dataclasses.replace(base, authentication=auth), START)
    store.dispose()


def password_step(client: FlaskClient, name: str, password: str = PASSWORD) -> TestResponse:
    data = {"username": name, "password": password, "csrf_token": page_token(client, "/login")}
    return client.post("/login", data=data)


def code_step(client: FlaskClient, code: str) -> TestResponse:
    return client.post(
        "/login/code", data={"code": code, "csrf_token": page_token(client, "/login/code")}
    )


def enrol(site: Clocked, client: FlaskClient) -> tuple[str, list[str]]:
    """Set two-factor up as the person would: read the key off the page, type a code."""
    html = client.get("/account/two-factor").get_data(as_text=True)
    found = re.search(r'<p class="secret" id="secret">([A-Z2-7 ]+)</p>', html)
    assert found, html
    secret = found.group(1).replace(" ", "")
    assert f"secret={secret}" in html  # the otpauth:// address, for password managers
    code = totp.code_at(secret, totp.step_of(site.now.timestamp()))
    token = page_token(client, "/account/two-factor")
    done = client.post("/account/two-factor", data={"code": code, "csrf_token": token})
    assert done.status_code == 200
    codes = re.findall(
        r"<li>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</li>", done.get_data(as_text=True)
    )
    assert len(codes) == 10
    return secret, codes


def test_disabling_an_account_ends_its_live_session(site: Clocked) -> None:
    client = site.client()
    assert password_step(client, "teacher").status_code == 303
    assert client.get("/unblocks").status_code == 200
    account_admin.disable(site.store, "teacher", "it.support")
    sent = client.get("/unblocks")
    assert sent.status_code == 302 and sent.headers["Location"].startswith("/login")
    again = password_step(site.client(), "teacher")
    assert again.status_code == 403
    assert "This account has been disabled" in again.get_data(as_text=True)
    # A wrong password for a disabled account says only that the password is wrong.
    wrong = password_step(site.client(), "teacher", "not the password")
    assert wrong.status_code == 401 and "disabled" not in wrong.get_data(as_text=True)


def test_a_sign_in_is_recorded_for_the_access_review(site: Clocked) -> None:
    assert password_step(site.client(), "teacher").status_code == 303
    teacher = get_account(site.store, "teacher")
    assert teacher is not None and teacher.last_sign_in_at == START


def test_the_policy_sends_the_dsl_to_set_up_two_factor_before_anything_else(
    site: Clocked,
) -> None:
    client = site.client()
    assert password_step(client, "dsl").status_code == 303
    for path in ("/alerts", "/unblocks", "/access-review"):
        sent = client.get(path)
        assert sent.status_code == 302 and sent.headers["Location"] == "/account/two-factor"
    page = client.get("/account/two-factor").get_data(as_text=True)
    assert "policy asks people in your role" in page
    # Staff aren't named by the policy: no detour for them.
    teacher = site.client()
    assert password_step(teacher, "teacher").status_code == 303
    assert teacher.get("/unblocks").status_code == 200


def test_two_factor_sign_in_end_to_end_with_no_replay_and_recovery_codes_once(
    site: Clocked,
) -> None:
    client = site.client()
    assert password_step(client, "dsl").status_code == 303
    secret, codes = enrol(site, client)
    assert client.get("/alerts").status_code == 200  # enrolled: the app opens
    # The next sign-in: the password alone starts no session.
    site.later(60)
    client = site.client()
    asked = password_step(client, "dsl")
    assert asked.status_code == 303 and asked.headers["Location"] == "/login/code"
    assert client.get("/alerts").status_code == 302
    wrong = code_step(client, "000000")
    assert wrong.status_code == 401
    code = totp.code_at(secret, totp.step_of(site.now.timestamp()))
    signed_in = code_step(client, code)
    assert signed_in.status_code == 303
    assert client.get("/alerts").status_code == 200
    # The same code, seen over a shoulder, used again within its 30 seconds: refused.
    thief = site.client()
    assert password_step(thief, "dsl").headers["Location"] == "/login/code"
    assert code_step(thief, code).status_code == 401
    assert thief.get("/alerts").status_code == 302
    # A recovery code works once.
    assert code_step(thief, codes[0]).status_code == 303
    assert thief.get("/alerts").status_code == 200
    again = site.client()
    password_step(again, "dsl")
    assert code_step(again, codes[0]).status_code == 401
    with site.store.connect() as conn:
        actions = conn.execute(sa.select(audit_log.c.action)).scalars().all()
    assert "account.two_factor_enabled" in actions and "account.recovery_code_used" in actions


def at_the_code_step(site: Clocked) -> tuple[str, FlaskClient]:
    """The DSL enrolled a minute ago; a new browser has given the password."""
    enrolling = site.client()
    password_step(enrolling, "dsl")
    secret, _ = enrol(site, enrolling)
    site.later(60)
    client = site.client()
    assert password_step(client, "dsl").headers["Location"] == "/login/code"
    return secret, client


def test_codes_are_throttled_like_passwords(site: Clocked) -> None:
    secret, guesser = at_the_code_step(site)
    answers = [code_step(guesser, f"{n:06d}").status_code for n in range(6)]
    assert answers[:5] == [401] * 5 and answers[5] == 429
    right = totp.code_at(secret, totp.step_of(site.now.timestamp()))
    assert code_step(guesser, right).status_code == 429  # not even checked now


def test_the_code_must_follow_the_password_within_five_minutes(site: Clocked) -> None:
    secret, slow = at_the_code_step(site)
    token = page_token(slow, "/login/code")
    site.later(6 * 60)
    code = totp.code_at(secret, totp.step_of(site.now.timestamp()))
    late = slow.post("/login/code", data={"code": code, "csrf_token": token})
    assert late.status_code == 303 and late.headers["Location"] == "/login"
    assert slow.get("/alerts").status_code == 302


def test_the_access_review_lists_everyone_for_dsl_head_and_it_and_is_audited(
    site: Clocked,
) -> None:
    site.policy = dataclasses.replace(
        site.policy,
        authentication=dataclasses.replace(site.policy.authentication, require_2fa_for=frozenset()),
    )
    account_admin.disable(site.store, "teacher2", "it.support")
    tech = site.client()
    assert password_step(tech, "tech").status_code == 303
    page = tech.get("/access-review")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for expected in ("dsl@test.example", "disabled by it.support", "yearly access review", "never"):
        assert expected in html
    assert "Access review</a>" in html  # in the menu
    teacher = site.client()
    password_step(teacher, "teacher")
    assert teacher.get("/access-review").status_code == 403
    with site.store.connect() as conn:
        seen = (
            conn.execute(
                sa.select(audit_log.c.actor).where(audit_log.c.action == "access_review.viewed")
            )
            .scalars()
            .all()
        )
    assert seen == ["tech"]

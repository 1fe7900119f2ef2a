"""Who is asking: proxy-auth users get their profile; schedules switch at their boundary."""

from __future__ import annotations

import glob
import re
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import sqlalchemy as sa

from proxy_addons.core.policy.standalone import load_all
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import unblocks
from tests.conftest import Gateway, Upstream, copy_policy, start_mitmdump
from tests.gateway.test_gateway_e2e import body_and_status
from tests.support.portal_form import STAFF_REQUEST, curl_form, curl_send_confirmed


def _htpasswd(path: Path, users: dict[str, str]) -> None:
    lines = [
        f"{name}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for name, pw in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def auth_gateway(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("auth")
    policy = copy_policy(tmp)
    _htpasswd(
        policy.parent / "users.htpasswd",
        {"teacher": "t-pass", "pupil": "p-pass", "visitor": "v-pass"},
    )
    text = policy.read_text().replace(
        "identities:", "authentication: {htpasswd: users.htpasswd}\nidentities:"
    )
    policy.write_text(text)
    gw = start_mitmdump(policy, tmp / "var", upstream)
    yield gw
    gw.stop()


def test_without_credentials_the_proxy_asks_for_them(auth_gateway: Gateway) -> None:
    assert body_and_status(auth_gateway.curl("http://plain.test/"))[1] == 407


def test_wrong_password_is_refused(auth_gateway: Gateway) -> None:
    assert body_and_status(auth_gateway.curl("http://plain.test/", user="teacher:nope"))[1] == 407


@pytest.mark.parametrize(
    ("user", "games", "adult", "profile_page"),
    [
        ("teacher:t-pass", 200, 403, None),  # staff: games allowed, adult blocked
        ("pupil:p-pass", 200, 403, None),  # ks2: games allowed
        ("visitor:v-pass", 403, 403, "Games"),  # no mapping: the default (early_years)
    ],
)
def test_users_get_their_profile(
    auth_gateway: Gateway, user: str, games: int, adult: int, profile_page: str | None
) -> None:
    body, code = body_and_status(auth_gateway.curl("https://games.test/", user=user))
    assert code == games
    if profile_page:
        assert profile_page in body
    assert body_and_status(auth_gateway.curl("http://adult.test/", user=user))[1] == adult


def test_staff_block_page_offers_an_access_request(auth_gateway: Gateway) -> None:
    staff, _ = body_and_status(auth_gateway.curl("https://adult.test/", user="teacher:t-pass"))
    pupil, _ = body_and_status(auth_gateway.curl("https://adult.test/", user="pupil:p-pass"))
    assert "/unblock/request" in staff
    assert "/unblock/request" not in pupil


def test_staff_request_from_the_block_page_creates_a_pending_unblock(
    auth_gateway: Gateway,
) -> None:
    form = STAFF_REQUEST
    portal = "http://schoolgate.local/unblock/request"
    body, code = curl_send_confirmed(auth_gateway, portal, form, user="teacher:t-pass")
    assert code == 200
    uid = re.search(r"UB-[A-Z0-9]{6}", body)
    assert uid
    pupil = auth_gateway.curl(portal, *curl_form(form), user="pupil:p-pass")
    body, code = body_and_status(pupil)
    assert code == 403 and "Only staff" in body
    store = Store.open(store_url(auth_gateway.var))
    with store.connect() as conn:
        rows = conn.execute(sa.select(unblocks)).all()
    store.dispose()
    assert [(r.id, r.status, r.requested_by, r.target, r.audience) for r in rows] == [
        (uid.group(0), "pending", "teacher", "adult.test", ["ks2"])
    ]


def test_sign_in_follows_the_policy_without_a_restart(tmp_path: Path, upstream: Upstream) -> None:
    """Adding `authentication:` to a running gateway's policy turns proxy sign-in on at the
    reload (it used to need a restart, and said nothing); taking it out turns it off."""
    policy = copy_policy(tmp_path)
    _htpasswd(policy.parent / "users.htpasswd", {"teacher": "t-pass"})
    plain = policy.read_text()
    gw = start_mitmdump(policy, tmp_path / "var", upstream)
    try:
        assert body_and_status(gw.curl("http://plain.test/"))[1] == 200
        policy.write_text(
            plain.replace("identities:", "authentication: {htpasswd: users.htpasswd}\nidentities:")
        )
        assert _status_becomes(gw, 407)
        assert body_and_status(gw.curl("http://plain.test/", user="teacher:t-pass"))[1] == 200
        policy.write_text(plain)
        assert _status_becomes(gw, 200)
    finally:
        gw.stop()


def _status_becomes(gw: Gateway, status: int, timeout: float = 30) -> bool:
    """Whether an anonymous request gets `status` within `timeout` (a reload's time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if body_and_status(gw.curl("http://plain.test/"))[1] == status:
            return True
        time.sleep(0.3)
    return False


def _libfaketime() -> str:
    """libfaketime (Debian's faketime package), preloaded straight into mitmdump so that
    stopping the gateway stops the process itself."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.skip("libfaketime is not installed (apt-get install faketime; .ci/run does)")
    return found[0]


def test_lunchtime_schedule_switches_at_its_boundary(tmp_path: Path, upstream: Upstream) -> None:
    """The gateway's clock is set (libfaketime) to 11:59:52 on a school day; staff
    social media opens at 12:00:00 sharp."""
    policy = copy_policy(tmp_path)
    policy.write_text(policy.read_text().replace("{10.20.0.0/24: staff}", "{127.0.0.0/8: staff}"))
    # Build the list index here: under libfaketime, Python's timed waits on the build
    # subprocess fail (EINVAL); the gateway then reuses this index by its fingerprint.
    load_all(policy, tmp_path / "var" / "index")
    started = time.monotonic()
    gw = start_mitmdump(
        policy,
        tmp_path / "var",
        upstream,
        env={  # Europe/London = UTC in November
            "LD_PRELOAD": _libfaketime(),
            "FAKETIME": "@2026-11-25 11:59:52",
            "TZ": "UTC",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        },
    )
    try:
        assert time.monotonic() - started < 6, "gateway took too long to start for this test"
        body, code = body_and_status(gw.curl("https://chatter.test/"))
        assert code == 403 and "Social networks" in body
        assert "not allowed at this time" in body and "lunch" in body
        time.sleep(max(0.0, started + 8.5 - time.monotonic()))
        assert body_and_status(gw.curl("https://chatter.test/"))[1] == 200
        assert body_and_status(gw.curl("https://adult.test/"))[1] == 403
    finally:
        gw.stop()

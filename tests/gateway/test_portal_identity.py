"""The portal's identity and form tokens in-process: spellings, binding, age, where a post
came from, and spending a token once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mitmproxy import http

from proxy_addons.gateway.portal_forms import KEEP_SPENT, from_portal, giving_back, release, spend
from proxy_addons.gateway.portal_identity import (
    NOBODY,
    TOKEN_SECONDS,
    FormTokens,
    Who,
    drop_identity_headers,
    environ_who,
    form_tokens,
    is_identity_header,
)
from proxy_addons.store import Store, store_url


class Clock:
    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@given(
    st.text(alphabet="-_", min_size=3, max_size=3),
    st.sampled_from(["user", "ip", "anything"]),
    st.booleans(),
    st.text(alphabet=" \t", max_size=2),
    st.data(),
)
def test_every_spelling_of_an_identity_header_is_one(
    seps: str, tail: str, upper: bool, space: str, data: st.DataObject
) -> None:
    name = f"x{seps[0]}schoolgate{seps[1]}{tail}"
    cased = "".join(
        c.upper() if data.draw(st.booleans(), label=f"case {i}") else c for i, c in enumerate(name)
    )
    spelt = (cased.upper() if upper else cased) + space
    assert is_identity_header(spelt)
    headers = http.Headers([(b"Host", b"schoolgate.local"), (spelt.encode(), b"teacher")])
    assert drop_identity_headers(headers) == [spelt]
    assert headers.fields == ((b"Host", b"schoolgate.local"),)


def test_other_headers_stay() -> None:
    for name in ("X-Schoolgatex", "Schoolgate-User", "X-Forwarded-For", "X-School-Gate-User"):
        assert not is_identity_header(name)


def test_without_an_identity_from_the_proxy_the_app_sees_nobody() -> None:
    assert environ_who({"HTTP_X_SCHOOLGATE_USER": "teacher"}) == NOBODY
    assert environ_who({"schoolgate.who": "teacher"}) == NOBODY  # only a Who counts
    who = Who("teacher", "10.0.0.5")
    assert environ_who({"schoolgate.who": who}) is who


def test_a_token_is_good_only_for_its_person_address_form_and_a_while() -> None:
    clock = Clock()
    tokens = FormTokens("s" * 43, clock)
    teacher = Who("teacher", "10.0.0.5")
    token = tokens.mint(teacher, "/unblock/request")
    assert token != tokens.mint(teacher, "/unblock/request")  # each its own (spent once)
    assert tokens.check(token, teacher, "/unblock/request")
    assert not tokens.check(token, teacher, "/report")
    assert not tokens.check(token, Who("pupil", "10.0.0.5"), "/unblock/request")
    assert not tokens.check(token, Who("teacher", "10.0.0.6"), "/unblock/request")
    assert not tokens.check(token, Who(None, "10.0.0.5"), "/unblock/request")
    assert not FormTokens("t" * 43, clock).check(token, teacher, "/unblock/request")
    issued, nonce, mac = token.split(".")
    assert not tokens.check(f"{issued}.{nonce[::-1]}.{mac}", teacher, "/unblock/request")
    clock.now += TOKEN_SECONDS
    assert tokens.check(token, teacher, "/unblock/request")
    clock.now += 1
    assert not tokens.check(token, teacher, "/unblock/request")  # expired
    ahead = FormTokens("s" * 43, Clock(clock.now + 3600)).mint(teacher, "/report")
    assert not tokens.check(ahead, teacher, "/report")  # issued in the future
    for bad in (None, "", ".", "..", "abc.def", "1.2.3.4", token + "0", 12345, "9" * 40 + ".x.y"):
        assert not tokens.check(bad, teacher, "/unblock/request")


def test_workers_share_the_secret(tmp_path: Path) -> None:
    teacher = Who("teacher", "10.0.0.5")
    token = form_tokens(tmp_path).mint(teacher, "/report")
    form_tokens.cache_clear()  # as another worker process would start
    assert form_tokens(tmp_path).check(token, teacher, "/report")
    assert (tmp_path / "portal-secret").stat().st_mode & 0o077 == 0


PORTAL = "schoolgate.local"


@pytest.mark.parametrize(
    ("origins", "referers"),
    [
        (["http://schoolgate.local"], []),
        (["https://schoolgate.local"], []),
        (["http://SchoolGate.Local"], []),
        (["http://schoolgate.local:80"], []),
        (["https://schoolgate.local:443"], []),
        ([], ["http://schoolgate.local/report"]),
        ([], ["https://schoolgate.local/unblock/request?x=1"]),
        (["http://schoolgate.local"], ["http://mixed.test/"]),  # the Origin decides
    ],
)
def test_a_post_from_a_portal_page(origins: list[str], referers: list[str]) -> None:
    assert from_portal(origins, referers, PORTAL)


@pytest.mark.parametrize(
    ("origins", "referers"),
    [
        ([], []),
        (["null"], ["http://schoolgate.local/report"]),  # no-referrer pages say null
        (["http://mixed.test"], []),
        (["http://schoolgate.local.mixed.test"], []),
        (["http://xschoolgate.local"], []),
        (["http://schoolgate.local:8080"], []),
        (["https://schoolgate.local:80"], []),
        (["ftp://schoolgate.local"], []),
        (["http://schoolgate.local/"], []),
        (["http://user@schoolgate.local"], []),
        (["http://schoolgate.local", "http://schoolgate.local"], []),
        (["http://mixed.test", "http://schoolgate.local"], []),
        (["http://[::1"], []),
        (["http://schoolgate.local:99999"], []),
        ([], ["http://mixed.test/?http://schoolgate.local/"]),
        ([], ["http://schoolgate.local@mixed.test/"]),
        ([], ["http://mixed.test/http://schoolgate.local"]),
        ([], ["//schoolgate.local/report"]),
        ([], ["http://schoolgate.local/a", "http://schoolgate.local/b"]),
    ],
)
def test_a_post_from_anywhere_else(origins: list[str], referers: list[str]) -> None:
    assert not from_portal(origins, referers, PORTAL)


PORTAL_ORIGINS = {
    "http://schoolgate.local",
    "http://schoolgate.local:80",
    "https://schoolgate.local",
    "https://schoolgate.local:443",
}


@given(st.sampled_from(["http://", "https://", "HTTP://", ""]), st.text(max_size=60))
def test_only_the_portal_names_the_portal(scheme: str, text: str) -> None:
    """Whatever is written, an Origin is the portal's only if it is exactly one of its own."""
    for value in (scheme + text, f"{scheme}schoolgate.local{text}"):
        if from_portal([value], [], PORTAL):
            assert value.lower() in PORTAL_ORIGINS, value


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(store_url(tmp_path))
    yield opened
    opened.dispose()


def test_a_token_acts_once_and_is_given_back_when_its_action_fails(store: Store) -> None:
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert spend(store, "t1", now)
    assert not spend(store, "t1", now)  # a second click, another worker: the same row
    assert spend(store, "t2", now)
    release(store, "t2")
    assert spend(store, "t2", now)
    with pytest.raises(RuntimeError), giving_back(store, "t3"):
        assert spend(store, "t3", now)
        raise RuntimeError("the store refused the report")
    assert spend(store, "t3", now)  # given back: sending it again is tried again
    # Rows go once their tokens could no longer be checked anyway.
    later = now + KEEP_SPENT + timedelta(seconds=1)
    assert spend(store, "t4", later)
    assert spend(store, "t1", later)

"""The portal's identity and form tokens in-process: spellings, binding and age."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy import http

from proxy_addons.portal_identity import (
    NOBODY,
    TOKEN_SECONDS,
    FormTokens,
    Who,
    drop_identity_headers,
    environ_who,
    form_tokens,
    is_identity_header,
)


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


def test_a_token_is_good_only_for_its_person_and_address_and_a_school_day() -> None:
    clock = Clock()
    tokens = FormTokens("s" * 43, clock)
    teacher = Who("teacher", "10.0.0.5")
    token = tokens.mint(teacher)
    assert tokens.check(token, teacher)
    assert not tokens.check(token, Who("pupil", "10.0.0.5"))
    assert not tokens.check(token, Who("teacher", "10.0.0.6"))
    assert not tokens.check(token, Who(None, "10.0.0.5"))
    assert not FormTokens("t" * 43, clock).check(token, teacher)  # another gateway's secret
    clock.now += TOKEN_SECONDS
    assert tokens.check(token, teacher)
    clock.now += 1
    assert not tokens.check(token, teacher)  # expired
    ahead = FormTokens("s" * 43, Clock(clock.now + 3600)).mint(teacher)
    assert not tokens.check(ahead, teacher)  # issued in the future
    for bad in (None, "", ".", "abc.def", "1.2.3", token + "0", 12345, "9" * 40 + ".x"):
        assert not tokens.check(bad, teacher)


def test_workers_share_the_secret(tmp_path: Path) -> None:
    teacher = Who("teacher", "10.0.0.5")
    token = form_tokens(tmp_path).mint(teacher)
    form_tokens.cache_clear()  # as another worker process would start
    assert form_tokens(tmp_path).check(token, teacher)
    assert (tmp_path / "portal-secret").stat().st_mode & 0o077 == 0

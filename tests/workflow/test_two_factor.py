"""Two-factor sign-in's codes (RFC 6238's own test vectors) and the account's TOTP state on
real SQLite and PostgreSQL: confirmation by a first code, no replay, recovery codes once."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from proxy_addons.store import Store
from proxy_addons.store.schema import accounts, audit_log
from proxy_addons.workflow import totp, two_factor
from proxy_addons.workflow.accounts import add_account, get_account
from tests.pg import db_url  # noqa: F401  (a fixture)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize(
    ("unix_time", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_codes_are_rfc_6238s(unix_time: int, code: str) -> None:
    # RFC 6238 appendix B, SHA-1, eight digits; the app uses six (the same number's tail).
    assert totp.code_at(RFC_SECRET, totp.step_of(unix_time), digits=8) == code
    assert totp.code_at(RFC_SECRET, totp.step_of(unix_time)) == code[-6:]


def test_a_code_matches_its_step_and_one_either_side_only() -> None:
    now = 1_800_000_000.0
    step = totp.step_of(now)
    for offset in (-1, 0, 1):
        assert totp.matching_step(RFC_SECRET, totp.code_at(RFC_SECRET, step + offset), now, None)
    for offset in (-2, 2):
        code = totp.code_at(RFC_SECRET, step + offset)
        assert totp.matching_step(RFC_SECRET, code, now, None) is None
    # Spaces as apps show them are fine; letters and short codes are not.
    spaced = totp.code_at(RFC_SECRET, step)
    assert totp.matching_step(RFC_SECRET, f"{spaced[:3]} {spaced[3:]}", now, None) == step
    assert totp.matching_step(RFC_SECRET, "12345", now, None) is None
    assert totp.matching_step(RFC_SECRET, "12345a", now, None) is None


def test_the_otpauth_address_names_the_school_and_the_account() -> None:
    uri = totp.otpauth_uri("ABCDEFGH", "mrs.patel", "Oakfield Primary")
    assert uri.startswith("otpauth://totp/Oakfield%20Primary%3Amrs.patel?")
    assert "secret=ABCDEFGH" in uri and "period=30" in uri and "digits=6" in uri


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    opened = Store.open(db_url)
    add_account(opened, "mrs.patel", "long enough passphrase", ["dsl"])
    yield opened
    opened.dispose()


def _enrolled(store: Store) -> tuple[str, list[str]]:
    secret = two_factor.begin_enrolment(store, "mrs.patel")
    code = totp.code_at(secret, totp.step_of(NOW.timestamp()))
    codes = two_factor.confirm_enrolment(store, "mrs.patel", code, NOW)
    assert codes is not None
    return secret, codes


def test_enrolment_needs_a_first_code_from_the_new_secret(store: Store) -> None:
    secret = two_factor.begin_enrolment(store, "mrs.patel")
    assert two_factor.pending_secret(store, "mrs.patel") == secret
    assert two_factor.confirm_enrolment(store, "mrs.patel", "000000", NOW) is None
    account = get_account(store, "mrs.patel")
    assert account is not None and not account.two_factor
    code = totp.code_at(secret, totp.step_of(NOW.timestamp()))
    codes = two_factor.confirm_enrolment(store, "mrs.patel", code, NOW)
    assert codes is not None and len(set(codes)) == 10
    account = get_account(store, "mrs.patel")
    assert account is not None and account.two_factor
    with store.connect() as conn:
        kept = conn.execute(sa.select(accounts.c.recovery_codes)).scalar_one()
        actions = conn.execute(sa.select(audit_log.c.action)).scalars().all()
    assert not set(codes) & set(kept)  # only their digests are kept
    assert "account.two_factor_enabled" in actions


def test_a_code_works_once_and_earlier_codes_stop_working(store: Store) -> None:
    secret, _ = _enrolled(store)
    later = NOW + timedelta(seconds=60)
    code = totp.code_at(secret, totp.step_of(later.timestamp()))
    assert two_factor.check_code(store, "mrs.patel", code, later) == "code"
    assert two_factor.check_code(store, "mrs.patel", code, later) is None  # replayed
    earlier = totp.code_at(secret, totp.step_of(later.timestamp()) - 1)
    assert two_factor.check_code(store, "mrs.patel", earlier, later) is None
    # The enrolment's own code was used to confirm, so it is spent as well.
    first = totp.code_at(secret, totp.step_of(NOW.timestamp()))
    assert two_factor.check_code(store, "mrs.patel", first, NOW) is None


def test_a_recovery_code_works_once_in_any_spelling(store: Store) -> None:
    _, codes = _enrolled(store)
    assert two_factor.check_code(store, "mrs.patel", codes[3].upper(), NOW) == "recovery"
    assert two_factor.check_code(store, "mrs.patel", codes[3], NOW) is None
    assert two_factor.recovery_codes_left(store, "mrs.patel") == 9
    assert two_factor.check_code(store, "mrs.patel", codes[4].replace("-", ""), NOW)
    assert two_factor.check_code(store, "mrs.patel", "not-a-code", NOW) is None


def test_no_codes_count_before_two_factor_is_on(store: Store) -> None:
    secret = two_factor.begin_enrolment(store, "mrs.patel")
    code = totp.code_at(secret, totp.step_of(NOW.timestamp()))
    assert two_factor.check_code(store, "mrs.patel", code, NOW) is None

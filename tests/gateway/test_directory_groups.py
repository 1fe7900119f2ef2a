"""Directory groups from a real OpenLDAP server, and profiles from them through the gateway."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy_addons.gateway.directory_groups import DirectoryGroups
from tests.conftest import Gateway, Upstream, copy_policy, start_mitmdump
from tests.gateway.test_gateway_e2e import body_and_status
from tests.support.slapd import PASSWORDS, ROOT_PW, Slapd, start_slapd

STAFF = ("cn=staff,ou=groups,dc=school,dc=test", "staff")
KS2 = ("cn=ks2 pupils,ou=groups,dc=school,dc=test", "ks2 pupils")


class Clock:
    """A monotonic clock the test moves by hand, to expire cache entries."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()


@pytest.fixture
def directory(slapd: Slapd) -> Iterator[DirectoryGroups]:
    groups = DirectoryGroups(slapd.spec())
    yield groups
    groups.close()


def test_groups_come_as_cns_and_dns_from_member_of(directory: DirectoryGroups) -> None:
    assert set(directory.groups_of("mrs.patel")) == set(STAFF)
    assert set(directory.groups_of("ks2pupil")) == set(KS2)


def test_groups_the_memberof_overlay_ignores_are_found_by_searching_members(
    directory: DirectoryGroups,
) -> None:
    """mr.jones is only in a groupOfUniqueNames and a posixGroup: no memberOf values."""
    assert set(directory.groups_of("mr.jones")) == {
        "cn=technicians,ou=groups,dc=school,dc=test",
        "technicians",
        "cn=ict club,ou=groups,dc=school,dc=test",
        "ict club",
    }


def test_unknown_user_and_user_in_no_group_have_no_groups(directory: DirectoryGroups) -> None:
    assert directory.groups_of("ghost") == ()
    assert directory.groups_of("nobody") == ()
    assert directory.groups_of("") == ()


@pytest.mark.parametrize("name", ["*", "mrs.patel)(uid=*", "*)(|(uid=*", "mrs.patel\\"])
def test_user_names_are_escaped_in_filters(directory: DirectoryGroups, name: str) -> None:
    assert directory.groups_of(name) == ()


def test_cache_hit_avoids_a_search_until_it_expires(slapd: Slapd) -> None:
    clock = Clock()
    directory = DirectoryGroups(slapd.spec(), ttl=300, clock=clock)
    try:
        before = slapd.searches()
        assert set(directory.groups_of("mrs.patel")) == set(STAFF)
        assert slapd.searches() == before + 1  # memberOf answered: no member search
        clock.now += 299
        assert set(directory.groups_of("mrs.patel")) == set(STAFF)
        assert slapd.searches() == before + 1
        clock.now += 2
        assert set(directory.groups_of("mrs.patel")) == set(STAFF)
        assert slapd.searches() == before + 2
    finally:
        directory.close()


def test_cache_is_bounded(slapd: Slapd) -> None:
    directory = DirectoryGroups(slapd.spec(), max_users=1)
    try:
        before = slapd.searches()
        directory.groups_of("mrs.patel")
        directory.groups_of("mrs.patel")
        directory.groups_of("ks2pupil")  # pushes mrs.patel out
        directory.groups_of("mrs.patel")
        assert slapd.searches() == before + 3
    finally:
        directory.close()


def test_directory_down_gives_no_groups_briefly_and_logs_no_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_slapd(tmp_path / "slapd")
    clock = Clock()
    directory = DirectoryGroups(server.spec(), ttl=0, failure_ttl=15, clock=clock)
    caplog.set_level(logging.WARNING, logger="proxy_addons.gateway.directory_groups")
    try:
        assert set(directory.groups_of("mrs.patel")) == set(STAFF)
        server.stop()
        assert directory.groups_of("mrs.patel") == ()
        assert "mrs.patel" in caplog.text and "LDAP" in caplog.text
        server.start()
        assert directory.groups_of("mrs.patel") == ()  # the failure is remembered briefly
        clock.now += 16
        assert set(directory.groups_of("mrs.patel")) == set(STAFF)
        server.stop()  # drops the connection the lookup kept open...
        server.start()
        clock.now += 1
        assert set(directory.groups_of("mrs.patel")) == set(STAFF)  # ...which is remade
    finally:
        directory.close()
        server.stop()
    assert ROOT_PW not in caplog.text
    assert ROOT_PW not in repr(directory)


def test_wrong_service_password_gives_no_groups_and_logs_no_password(
    slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="proxy_addons.gateway.directory_groups")
    directory = DirectoryGroups(slapd.spec(bind_pw="not-the-Password-42"))
    try:
        assert directory.groups_of("mrs.patel") == ()
    finally:
        directory.close()
    assert "invalidCredentials" in caplog.text
    assert "not-the-Password-42" not in caplog.text


def test_a_bad_spec_is_refused_without_repeating_its_password() -> None:
    with pytest.raises(ValueError) as info:
        DirectoryGroups("ldapx:dc1:cn=svc:Sekr1t-pw:ou=people")
    assert "Sekr1t-pw" not in str(info.value)


# -- end to end: proxy sign-in with LDAP, profile from the directory group ------------


@pytest.fixture(scope="module")
def ldap_gateway(
    tmp_path_factory: pytest.TempPathFactory, slapd: Slapd, upstream: Upstream
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("ldap-gateway")
    policy = copy_policy(tmp)
    text = policy.read_text()
    assert "\nidentities:\n" in text
    text = text.replace(
        "\nidentities:\n",
        f'\nauthentication: {{ldap: "{slapd.spec()}"}}\nidentities:\n'
        # By DN (any case) and by CN: the loader lower-cases both.
        '  groups: {"CN=Staff,OU=Groups,DC=school,DC=test": staff, "KS2 Pupils": ks2}\n',
    )
    policy.write_text(text)
    gw = start_mitmdump(policy, tmp / "var", upstream)
    yield gw
    gw.stop()


def _sign_in(user: str) -> str:
    return f"{user}:{PASSWORDS[user]}"


def test_gateway_asks_ldap_users_to_sign_in(ldap_gateway: Gateway) -> None:
    assert body_and_status(ldap_gateway.curl("http://games.test/"))[1] == 407
    assert body_and_status(ldap_gateway.curl("http://games.test/", user="mrs.patel:nope"))[1] == 407


@pytest.mark.parametrize(
    ("user", "games", "staff_page"),
    [
        ("mrs.patel", 200, True),  # group Staff (by DN): staff
        ("ks2pupil", 200, False),  # group KS2 Pupils (by CN): ks2
        ("nobody", 403, False),  # no group: the default, early_years
    ],
)
def test_gateway_profile_comes_from_the_directory_group(
    ldap_gateway: Gateway, user: str, games: int, staff_page: bool
) -> None:
    for url in ("http://games.test/", "https://games.test/"):
        body, code = body_and_status(ldap_gateway.curl(url, user=_sign_in(user)))
        assert code == games, (url, body)
        if code == 403:
            assert "Games" in body
    body, code = body_and_status(ldap_gateway.curl("https://adult.test/", user=_sign_in(user)))
    assert code == 403
    assert ("/unblock/request" in body) is staff_page  # only staff may ask for an unblock


def test_gateway_log_has_no_ldap_password(ldap_gateway: Gateway) -> None:
    ldap_gateway.curl("http://games.test/", user=_sign_in("mrs.patel"))
    assert ROOT_PW not in ldap_gateway.log_text()

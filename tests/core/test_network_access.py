"""Who the gateway serves: the policy's `network:` section, the address check, the admin guard.

The proxy's refusal of outsiders is exercised for real in test_transparent_netns.py
(loopback is always served, so it cannot be shown on loopback).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proxy_addons.core.network_access import address_in, management_only
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import PRIVATE_NETWORKS
from tests.conftest import copy_policy

NETS = (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("2001:db8:20::/48"))


def _policy_with(tmp_path: Path, section: str) -> Path:
    policy = copy_policy(tmp_path)
    policy.write_text(policy.read_text() + section)
    return policy


def test_the_network_section_is_read(tmp_path: Path) -> None:
    policy = load_policy(
        _policy_with(
            tmp_path,
            "network:\n  client_networks: [10.20.0.0/16, 10.30.1.0/24]\n"
            "  management_networks: 10.99.0.0/24\n",
        )
    )
    assert [str(n) for n in policy.network.client_networks] == ["10.20.0.0/16", "10.30.1.0/24"]
    assert [str(n) for n in policy.network.management_networks] == ["10.99.0.0/24"]


def test_without_the_section_only_private_addresses_are_served(tmp_path: Path) -> None:
    policy = load_policy(copy_policy(tmp_path))
    assert policy.network.client_networks == PRIVATE_NETWORKS
    assert policy.network.management_networks == PRIVATE_NETWORKS
    assert not address_in(policy.network.client_networks, "8.8.8.8")
    assert address_in(policy.network.client_networks, "192.168.1.20")


def test_a_bad_network_is_named_with_its_line(tmp_path: Path) -> None:
    path = _policy_with(tmp_path, "network:\n  client_networks: [10.20.0.0/16, school-lan]\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    line = len(path.read_text().splitlines())
    assert f"school.yaml, line {line}: 'school-lan' in client_networks is not a" in str(err.value)


def test_an_empty_list_would_serve_nobody_and_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="client_networks names no network"):
        load_policy(_policy_with(tmp_path, "network:\n  client_networks: []\n"))


def test_a_misspelt_setting_gets_a_hint(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="Did you mean 'client_networks'"):
        load_policy(_policy_with(tmp_path, "network:\n  client_network: [10.0.0.0/8]\n"))


@pytest.mark.parametrize(
    ("ip", "served"),
    [
        ("10.20.3.4", True),
        ("::ffff:10.20.3.4", True),  # IPv4 seen through a dual-stack socket
        ("2001:db8:20::5", True),
        ("fe80::1%eth0", False),
        ("10.21.0.1", False),
        ("203.0.113.9", False),
        ("127.0.0.1", True),  # the gateway itself
        ("::1", True),
        ("not-an-ip", False),
        ("", False),
        (None, False),
    ],
)
def test_address_in(ip: str | None, served: bool) -> None:
    assert address_in(NETS, ip) is served


def _call(app: Callable[..., Any], path: str, remote: str) -> tuple[str, bytes]:
    seen: list[str] = []
    body = b"".join(
        app(
            {"PATH_INFO": path, "REMOTE_ADDR": remote},
            lambda status, headers: seen.append(status),
        )
    )
    return seen[0], body


def test_admin_pages_answer_only_the_management_network() -> None:
    def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        return [b"admin"]

    mgmt = (ipaddress.ip_network("10.99.0.0/24"),)
    app = management_only(inner, lambda: mgmt)
    assert _call(app, "/unblocks", "10.99.0.7") == ("200 OK", b"admin")
    status, body = _call(app, "/unblocks", "10.20.3.4")
    assert status.startswith("403") and b"management network" in body
    # Device agents report from client networks: the API is the firewall's to restrict.
    assert _call(app, "/api/v1/report", "10.20.3.4") == ("200 OK", b"admin")
    assert _call(app, "/", "127.0.0.1") == ("200 OK", b"admin")

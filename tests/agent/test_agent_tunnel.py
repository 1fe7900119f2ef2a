"""The tunnel's keeper on a fake system and a fake clock: which commands it runs, which files
it writes, what it decides on and off site, and how long it says the tunnel has been so.

The Linux driver and nftables firewall are the real classes; only the commands they run are
answered by FakeSystem (a tunnel that comes up on `wg-quick up`, a table that exists after
`nft -f`), so the test sees the exact argv and the files in the state folder.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.report import parse_state
from agent.runner import NOT_FOUND, CommandResult
from agent.tunnel.commands import describe
from agent.tunnel.config import TunnelConfig, new_private_key, public_key
from agent.tunnel.drivers import LinuxDriver
from agent.tunnel.files import KEY_FILE, TunnelFiles
from agent.tunnel.firewall import NftFirewall, Openings, nft_rules, pf_rules, uids_of
from agent.tunnel.keeper import Keeper, Parts
from agent.tunnel.location import Bypass, Place
from agent.tunnel.service import setup
from agent.tunnel.wgconf import linux, passthrough, split_endpoint, valid_interface, windows

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
GATEWAY_KEY = public_key(new_private_key())


def tunnel_config(**changes: object) -> TunnelConfig:
    base: dict[str, object] = {
        "address": "10.123.0.7",
        "gateway_public_key": GATEWAY_KEY,
        "endpoint": "gw.school.example:51820",
        "gateway_address": "10.123.0.1",
        "allowed_ips": ("0.0.0.0/0", "::/0"),
        "onsite_endpoint": "10.0.0.1:51820",
        "dns": ("10.0.0.53",),
        "fail_closed": True,
    }
    base.update(changes)
    return TunnelConfig(**base)  # type: ignore[arg-type]


class FakeSystem:
    """Answers wg-quick, wg and nft as a Linux device would, and records every argv."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.interface_up = False
        self.table = False
        self.handshake: datetime | None = None

    def run(self, argv: list[str], timeout: float = 20.0) -> CommandResult:
        self.calls.append(argv)
        ok = CommandResult(0, "", "")
        match argv:
            case ["wg-quick", "up", _]:
                self.interface_up = True
                return ok
            case ["wg-quick", "down", _]:
                self.interface_up = False
                return ok
            case ["wg", "show", _, "latest-handshakes"]:
                if not self.interface_up:
                    return CommandResult(1, "", "Unable to access interface: No such device")
                seen = int(self.handshake.timestamp()) if self.handshake else 0
                return CommandResult(0, f"{GATEWAY_KEY}\t{seen}\n", "")
            case ["nft", "-f", _]:
                self.table = True
                return ok
            case ["nft", "list", "table", "inet", "schoolgate_agent"]:
                return ok if self.table else CommandResult(1, "", "No such file or directory")
            case ["nft", "delete", "table", "inet", "schoolgate_agent"]:
                self.table = False
                return ok
        return CommandResult(NOT_FOUND, "", f"{argv[0]}: command not found")

    def read(self, path: str) -> str | None:
        return "root:x:0:0::/root:/bin/sh\nsystemd-resolve:x:991:991::/:/usr/sbin/nologin\n"

    def listdir(self, path: str) -> list[str] | None:
        return None

    def commands(self, name: str) -> list[list[str]]:
        return [c for c in self.calls if c[0] == name]


class World:
    """A device: its state folder, a fake system, a place, a clock and its gateway."""

    def __init__(self, state: Path, config: TunnelConfig | None = None) -> None:
        self.state = state
        self.system = FakeSystem()
        self.now = T0
        self.where = "off_site"
        self.config: TunnelConfig | None = config or tunnel_config()
        self.fetches = 0
        self.slept: list[float] = []  # waits for a new tunnel's first handshake
        self.probes: list[tuple[Bypass | None, bool]] = []
        self.addresses = {"gw.school.example": "203.0.113.5", "10.0.0.1": "10.0.0.1"}

    def fetch(self) -> TunnelConfig | None:
        self.fetches += 1
        return self.config

    def locate(self, bypass: Bypass | None, tunnel_up: bool) -> Place:
        self.probes.append((bypass, tunnel_up))
        return Place(self.where, f"seen {self.where}")  # type: ignore[arg-type]

    def keeper(self) -> Keeper:
        """A new Keeper each time, as after a restart of the agent."""
        return Keeper(
            Parts(
                files=TunnelFiles(self.state),
                driver=LinuxDriver(self.system, "schoolgate0", which=lambda _: None),
                firewall=NftFirewall(self.system, self.state),
                locate=self.locate,
                resolve=self.addresses.get,
                probe_target=lambda: ("10.0.0.1", 8081),
                fetch=self.fetch,
                clock=lambda: self.now,
                sleep=self.slept.append,
            )
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "state")


def test_off_site_it_writes_the_file_brings_the_tunnel_up_and_fails_closed(world: World) -> None:
    state = world.keeper().tick()
    assert state is not None
    conf = world.state / "schoolgate0.conf"
    assert world.system.commands("wg-quick") == [["wg-quick", "up", str(conf)]]
    text = conf.read_text()
    assert "Endpoint = 203.0.113.5:51820" in text  # resolved once: the rules name the same
    assert "Address = 10.123.0.7/32" in text and "AllowedIPs = 0.0.0.0/0, ::/0" in text
    assert "DNS =" not in text  # no resolvconf here: wg-quick would fail on DNS =
    key = (world.state / KEY_FILE).read_text().strip()
    assert f"PrivateKey = {key}" in text
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(world.state / KEY_FILE).st_mode) == 0o600
    rules = (world.state / "fail-closed.rules").read_text()
    assert "meta mark 51820 ip daddr 203.0.113.5 udp dport 51820 accept" in rules
    assert "meta skuid 0 ip daddr 10.0.0.1 tcp dport 8081 accept" in rules
    assert "meta skuid { 0, 991 } udp dport 53 accept" in rules  # root and systemd-resolved
    assert world.system.commands("nft")[0] == ["nft", "-f", str(world.state / "fail-closed.rules")]
    # Up, but no handshake yet: down, fail closed, since now.
    assert (state.state, state.where, state.fail_closed, state.since) == (
        "down",
        "off_site",
        True,
        T0,
    )
    assert "handshake" in state.reason
    assert parse_state(state.to_json()) == state  # what the gateway will read back


def test_a_handshake_makes_it_up_and_since_moves_only_on_a_change(world: World) -> None:
    world.keeper().tick()
    world.now = T0 + timedelta(seconds=30)
    world.system.handshake = world.now
    up = world.keeper().tick()
    assert up is not None and (up.state, up.since, up.last_handshake) == (
        "up",
        world.now,
        world.now,
    )
    assert len(world.system.commands("wg-quick")) == 1  # already up: not brought up again
    world.now += timedelta(minutes=2)
    world.system.handshake = world.now
    again = world.keeper().tick()
    assert again is not None and again.since == T0 + timedelta(seconds=30)


def test_down_since_survives_a_restart_of_the_agent(world: World) -> None:
    first = world.keeper().tick()
    world.now = T0 + timedelta(minutes=4)
    later = world.keeper().tick()  # a new Keeper: the agent restarted
    assert first is not None and later is not None
    assert (later.state, later.since) == ("down", T0)
    saved = json.loads((world.state / "tunnel-status.json").read_text())
    assert saved["since"] == T0.isoformat()


def test_a_stale_handshake_is_down_and_a_long_down_restarts_the_tunnel(world: World) -> None:
    keeper = world.keeper()
    world.system.handshake = T0
    assert keeper.tick() is not None
    world.now = T0 + timedelta(minutes=4)  # the last handshake is 4 minutes old
    down = keeper.tick()
    assert down is not None and down.state == "down"
    world.now = T0 + timedelta(minutes=10)  # down for 6 minutes: try again from scratch
    keeper.tick()
    assert [c[1] for c in world.system.commands("wg-quick")] == ["up", "down", "up"]


def test_on_site_the_tunnel_goes_down_and_the_rules_go(world: World) -> None:
    world.keeper().tick()
    world.where = "on_site"
    world.now = T0 + timedelta(minutes=5)
    state = world.keeper().tick()
    assert state is not None and (state.state, state.where, state.fail_closed) == (
        "off",
        "on_site",
        False,
    )
    assert world.system.commands("wg-quick")[-1][1] == "down"
    assert ["nft", "delete", "table", "inet", "schoolgate_agent"] in world.system.calls
    assert state.since == world.now


def test_on_site_when_the_policy_says_so_it_uses_the_onsite_endpoint(tmp_path: Path) -> None:
    world = World(tmp_path, tunnel_config(on_site=True))
    world.where = "on_site"
    state = world.keeper().tick()
    assert state is not None and state.state == "down" and not state.fail_closed
    assert "Endpoint = 10.0.0.1:51820" in (tmp_path / "schoolgate0.conf").read_text()
    assert not world.system.table  # fail closed is for off site only


def test_going_on_site_with_a_different_endpoint_rewrites_and_restarts(tmp_path: Path) -> None:
    world = World(tmp_path, tunnel_config(on_site=True))
    world.keeper().tick()
    world.where = "on_site"
    world.keeper().tick()
    assert [c[1] for c in world.system.commands("wg-quick")] == ["up", "down", "up"]
    assert "Endpoint = 10.0.0.1:51820" in (tmp_path / "schoolgate0.conf").read_text()


def test_where_unknown_acts_as_last_known_else_off_site(world: World) -> None:
    world.where = "unknown"
    state = world.keeper().tick()
    assert state is not None and state.where == "unknown" and world.system.interface_up
    world.where = "on_site"
    world.keeper().tick()
    world.where = "unknown"
    state = world.keeper().tick()
    assert state is not None and state.state == "off"  # still taken as on site


def test_an_unhealthy_tunnel_it_cant_see_round_is_taken_down_to_look(world: World) -> None:
    world.keeper().tick()  # up, no handshake
    world.where = "unknown"
    world.keeper().tick()
    assert world.system.commands("wg-quick")[1][1] == "down"
    assert world.probes[-2:] == [(Bypass("mark", 51820), True), (Bypass("mark", 51820), False)]


def test_fail_closed_turned_off_by_the_policy_removes_the_rules(world: World) -> None:
    keeper = world.keeper()
    keeper.tick()
    assert world.system.table
    world.config = tunnel_config(fail_closed=False)
    world.now = T0 + timedelta(hours=1)  # the hourly refresh picks the change up
    state = keeper.tick()
    assert state is not None and not state.fail_closed and not world.system.table


def test_the_config_is_fetched_at_start_hourly_and_kept_when_the_gateway_cant_be_reached(
    world: World,
) -> None:
    keeper = world.keeper()
    keeper.tick(refresh=True)
    world.now = T0 + timedelta(minutes=30)
    keeper.tick()
    assert world.fetches == 1

    def unreachable() -> TunnelConfig | None:
        raise OSError("no route to host")

    keeper.p.fetch = unreachable
    world.now = T0 + timedelta(minutes=61)
    state = keeper.tick()
    assert state is not None and world.system.interface_up  # the saved config still holds


def test_at_home_the_start_refresh_is_tried_again_through_the_tunnel(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Started at home, the agent can reach the gateway only once its tunnel is up: a policy
    change (here fail closed turned on) arrives in that first round, and nothing is warned."""
    world.keeper().tick()
    world.config = tunnel_config(fail_closed=True)
    TunnelFiles(world.state).save_config(tunnel_config(fail_closed=False), T0)
    world.system.interface_up = world.system.table = False  # the device restarted at home
    world.now = T0 + timedelta(minutes=10)

    def through_the_tunnel_only() -> TunnelConfig | None:
        if not world.system.interface_up:
            raise OSError("can't reach the gateway https://10.0.0.1:8081: network is unreachable")
        return world.fetch()

    keeper = world.keeper()
    keeper.p.fetch = through_the_tunnel_only
    world.system.handshake = world.now
    state = keeper.tick(refresh=True)
    assert state is not None and state.state == "up" and state.fail_closed
    assert "not refreshed" not in caplog.text


def test_a_refresh_that_fails_through_the_tunnel_too_is_warned_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = world.keeper()
    keeper.tick()

    def unreachable() -> TunnelConfig | None:
        raise OSError("no route to host")

    keeper.p.fetch = unreachable
    world.system.handshake = world.now = T0 + timedelta(minutes=61)
    state = keeper.tick()
    assert state is not None and state.state == "up"  # the saved config still holds
    assert caplog.text.count("tunnel config not refreshed: no route to host") == 1


def test_status_names_the_address_and_gives_a_reason_only_when_there_is_one() -> None:
    state = parse_state(
        {"state": "up", "where": "off_site", "since": T0.isoformat(), "fail_closed": True}
    )
    shown = describe(state, tunnel_config())
    assert "address:        10.123.0.7 (gateway gw.school.example:51820)" in shown
    assert "reason" not in shown
    assert describe(state) == shown.replace(
        "\naddress:        10.123.0.7 (gateway gw.school.example:51820)", ""
    )


def test_a_gateway_with_no_tunnels_any_more_stands_everything_down(world: World) -> None:
    keeper = world.keeper()
    keeper.tick()
    world.config = None
    world.now = T0 + timedelta(hours=2)
    assert keeper.tick() is None
    assert not world.system.interface_up and not world.system.table
    assert TunnelFiles(world.state).config() is None
    world.now += timedelta(minutes=5)
    assert keeper.tick() is None and world.fetches == 2  # not asked again every round


def test_a_device_that_never_had_a_tunnel_runs_no_commands(world: World) -> None:
    world.config = None
    assert world.keeper().tick() is None
    assert world.system.calls == []


def test_an_endpoint_that_does_not_resolve_is_said(world: World) -> None:
    world.addresses = {}
    state = world.keeper().tick()
    assert state is not None and state.state == "down"
    assert "doesn't resolve" in state.reason and world.system.commands("wg-quick") == []
    assert state.fail_closed  # web still refused; the DNS to find the endpoint is let out


def test_by_hand_down_off_site_keeps_failing_closed(world: World) -> None:
    world.keeper().tick()
    state = world.keeper().tick(force="off")
    assert state is not None and state.state == "off" and state.fail_closed
    assert not world.system.interface_up


def test_setup_keeps_one_key_and_saves_the_config(tmp_path: Path) -> None:
    seen: list[str] = []

    class Gateway:
        state_dir = tmp_path

        def tunnel(self, key: str) -> dict[str, object] | None:
            seen.append(key)
            return tunnel_config().to_json()

    config = setup(Gateway(), clock=lambda: T0)  # type: ignore[arg-type]
    assert config == tunnel_config()
    setup(Gateway(), clock=lambda: T0)  # type: ignore[arg-type]
    key = (tmp_path / KEY_FILE).read_text().strip()
    assert seen == [public_key(key)] * 2  # the same key both times; never the private one
    assert key not in json.dumps(TunnelFiles(tmp_path).config()[0].to_json())  # type: ignore[index]


# -- the files it writes ------------------------------------------------------------------


def test_passthrough_is_what_the_gateway_leaves_out() -> None:
    allowed = ("0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/3", "::/0")
    assert passthrough(tunnel_config(allowed_ips=allowed)) == []
    holes = ("0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/4", "::/0")
    config = tunnel_config(allowed_ips=holes)
    assert passthrough(config) == ["240.0.0.0/4"]
    text = linux(config, new_private_key(), "203.0.113.5:51820", dns=True)
    assert "PostUp = ip -4 rule add to 240.0.0.0/4 lookup main priority 100" in text
    assert "PreDown = ip -4 rule del to 240.0.0.0/4 lookup main priority 100" in text
    assert "AllowedIPs = 0.0.0.0/0, ::/0" in text and "DNS = 10.0.0.53" in text
    assert "FwMark = 51820" in text


def test_windows_file_turns_the_kill_switch_on_only_with_fail_closed() -> None:
    config = tunnel_config(allowed_ips=("0.0.0.0/1", "128.0.0.0/2", "::/0"))
    assert "AllowedIPs = 0.0.0.0/0, ::/0" in windows(config, new_private_key(), "e:1", True)
    open_ = windows(config, new_private_key(), "e:1", False)
    assert "AllowedIPs = 0.0.0.0/1, 128.0.0.0/2, ::/0" in open_ and "FwMark" not in open_


def test_endpoints_and_interface_names() -> None:
    assert split_endpoint("gw.example:51820") == ("gw.example", 51820)
    assert split_endpoint("[2001:db8::1]:51820") == ("2001:db8::1", 51820)
    with pytest.raises(ValueError):
        split_endpoint("gw.example")
    assert valid_interface("schoolgate0") and not valid_interface("schoolgate-tunnel0")
    assert not valid_interface("sg0;rm")


def test_the_rule_sets_let_out_only_what_brings_the_tunnel_back() -> None:
    openings = Openings("schoolgate0", ("203.0.113.5", 51820), ("10.0.0.1", 8081), ("240.0.0.0/4",))
    nft = nft_rules(openings)
    assert nft.index("delete table inet schoolgate_agent") < nft.index("chain output")
    assert nft.endswith("reject with icmpx admin-prohibited\n\t}\n}\n")
    assert 'oifname "schoolgate0" accept' in nft and "dport 80 " not in nft
    pf = pf_rules(openings, "utun4")
    assert "pass out quick on utun4 all" in pf
    assert "pass out quick proto udp to 203.0.113.5 port 51820 user root" in pf
    assert pf.rstrip().endswith("block return out quick all")
    assert uids_of("a:x:1:1\nsystemd-resolve:x:991:991:", ("systemd-resolve",)) == (991,)


def test_a_tunnel_just_brought_up_is_given_a_moment_for_its_first_handshake(
    world: World,
) -> None:
    """wg-quick returns before the first handshake: the round waits briefly for it, so it
    reports "up" now rather than "down" until the next round; with no answer it gives up."""
    keeper = world.keeper()
    keeper.p.sleep = lambda seconds: setattr(world.system, "handshake", world.now)
    state = keeper.tick()
    assert state is not None and state.state == "up" and state.last_handshake == world.now
    world.system.handshake = None
    world.system.interface_up = False  # the tunnel fell over
    waited = world.keeper()
    state = waited.tick()
    assert state is not None and state.state == "down"
    assert sum(world.slept) == 6.0  # twelve looks, half a second apart, then it says so

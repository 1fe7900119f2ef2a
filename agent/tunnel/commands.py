"""`schoolgate-agent tunnel setup|status|up|down`: the tunnel by hand, for the IT provider.

The `run` service keeps the tunnel by itself (agent/client_cli.py); these are for setting a
device up, looking at it, and trying things. `up` and `down` are one round of the keeper
with the answer forced: the service's next round puts things back as the place calls for.
Each takes --state (the agent's state folder) and --interface, so that two devices can be
tried side by side in network namespaces (`ip netns exec home schoolgate-agent ...`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from agent.client import Client, ClientError
from agent.device_facts import current_platform
from agent.report import ReportError, TunnelState
from agent.runner import SystemRunner
from agent.tunnel.config import TunnelConfig
from agent.tunnel.drivers import driver_for
from agent.tunnel.files import TunnelFiles
from agent.tunnel.firewall import firewall_for
from agent.tunnel.keeper import Keeper
from agent.tunnel.service import keeper_for, setup
from agent.tunnel.wgconf import INTERFACE, valid_interface

DEFAULT_STATE = "/var/lib/schoolgate-agent"


def describe(state: TunnelState | None, config: TunnelConfig | None = None) -> str:
    if state is None:
        return "no tunnel: the gateway offers none (or `tunnel setup` hasn't run)"
    handshake = (
        state.last_handshake.isoformat(timespec="seconds") if state.last_handshake else "never"
    )
    since = state.since.isoformat(timespec="seconds") if state.since else "?"
    lines = [
        f"where:          {state.where}",
        f"tunnel:         {state.state} since {since}",
        f"last handshake: {handshake}",
        f"fail closed:    {'on' if state.fail_closed else 'off'}",
    ]
    if config is not None:
        lines.append(f"address:        {config.address} (gateway {config.endpoint})")
    if state.reason:
        lines.append(f"reason:         {state.reason}")
    return "\n".join(lines)


def _client(args: argparse.Namespace) -> Client | None:
    client = Client(Path(args.state))
    if client.device_id is None:
        print("agent: this device is not enrolled: run `enrol` first", file=sys.stderr)
        return None
    return client


def _keeper(args: argparse.Namespace, client: Client) -> Keeper:
    return keeper_for(client, current_platform(), args.interface)


def cmd_setup(args: argparse.Namespace) -> int:
    client = _client(args)
    if client is None:
        return 1
    try:
        config = setup(client)
    except (ClientError, ReportError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 1
    if config is None:
        print("the gateway offers no tunnels: nothing to set up")
        return 0
    print(
        f"tunnel address {config.address}, gateway {config.endpoint}"
        f"{', also on site' if config.on_site else ''}"
        f"{', fail closed off site' if config.fail_closed else ''}"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """What the keeper last decided, with the tunnel's live handshake and rules."""
    files = TunnelFiles(Path(args.state))
    saved, status = files.config(), files.status()
    if saved is None or status is None:
        print(describe(None))
        return 0
    platform = current_platform()
    driver = driver_for(platform, SystemRunner(), args.interface)
    firewall = firewall_for(platform, SystemRunner(), Path(args.state), args.interface)
    state = TunnelState(
        state=status.state,
        where=status.where,
        since=status.since,
        last_handshake=driver.last_handshake(),
        fail_closed=firewall.closed(),
        reason="",  # the service's reason is in its log and its reports
    )
    print(describe(state, saved[0]))
    return 0


def _by_hand(args: argparse.Namespace, force: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    client = _client(args)
    if client is None:
        return 1
    state = _keeper(args, client).tick(force="up" if force == "up" else "off", refresh=True)
    print(describe(state))
    return 0 if state is not None and (force != "up" or state.state == "up") else 2


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tunnel = sub.add_parser("tunnel", help="the off-site tunnel to the school's gateway")
    actions = tunnel.add_subparsers(dest="tunnel_command", required=True)
    for name, help_, func in (
        ("setup", "make this device's key and fetch its tunnel config", cmd_setup),
        ("status", "where this device is, and its tunnel's state", cmd_status),
        ("up", "bring the tunnel up now (the service decides again next round)", None),
        ("down", "take the tunnel down now (the service decides again next round)", None),
    ):
        action = actions.add_parser(name, help=help_)
        action.add_argument("--state", default=DEFAULT_STATE)
        action.add_argument("--interface", default=INTERFACE, type=_interface)
        if func is None:
            action.set_defaults(func=lambda args, force=name: _by_hand(args, force))
        else:
            action.set_defaults(func=func)


def _interface(name: str) -> str:
    if not valid_interface(name):
        raise argparse.ArgumentTypeError("at most 15 letters, digits, '_', '=', '+', '.', '-'")
    return name


__all__ = ["add_parser", "describe"]

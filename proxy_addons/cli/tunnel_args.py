"""The `schoolgate tunnel` command's arguments (its work is in cli/tunnel.py, loaded only when
it runs, as main.py does for every command)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Commands = argparse._SubParsersAction  # type: ignore[type-arg]
StoreArgs = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def add_tunnel(sub: Commands, store_args: StoreArgs) -> None:
    """`tunnel up|run|status|issue|bind` (docs/offsite.md)."""
    tunnel = sub.add_parser(
        "tunnel", help="the gateway's WireGuard interface for school devices off site"
    )
    tsub = tunnel.add_subparsers(dest="tunnel_command", required=True)
    store_args(tsub.add_parser("up", help="bring the interface up and add the bound devices"))
    store_args(
        tsub.add_parser(
            "run", help="bring it up and keep its peers the store's bindings (the service)"
        )
    )
    status = tsub.add_parser("status", help="the interface, and each device's last handshake")
    status.add_argument(
        "--endpoints",
        action="store_true",
        help="also the addresses devices connect from (pupils' homes: audited, needs --as)",
    )
    status.add_argument("--as", dest="as_user", help="who looks (with --endpoints)")
    store_args(status)
    issue = tsub.add_parser(
        "issue",
        help="make a key pair for a device that can't run the agent (a WireGuard app set up "
        "by MDM) and print its configuration, private key included, once",
    )
    issue.add_argument("device", help="the device's id (schoolgate devices list)")
    issue.add_argument("--as", dest="as_user", required=True, help="who issues it (audited)")
    store_args(issue)
    bind = tsub.add_parser("bind", help="bind a device's own public key to it")
    bind.add_argument("device", help="the device's id (schoolgate devices list)")
    bind.add_argument("public_key", help="its WireGuard public key (44 characters)")
    bind.add_argument("--as", dest="as_user", required=True, help="who binds it (audited)")
    store_args(bind)
    tunnel.set_defaults(handler="tunnel:cmd_tunnel")


__all__ = ["add_tunnel"]

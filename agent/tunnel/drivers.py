"""Bringing the tunnel up and down with each system's own WireGuard tools, through a Runner.

- Linux: `wg-quick up|down <state>/<interface>.conf` (wg-quick uses the kernel's WireGuard,
  or wireguard-go where there is none); health from `wg show <if> latest-handshakes`.
- macOS: the same with Homebrew's wireguard-tools (`brew install wireguard-tools`: a utun
  interface, named through /var/run/wireguard/<if>.name).
- Windows: the WireGuard app's tunnel service, `wireguard.exe /installtunnelservice <conf>`
  and `/uninstalltunnelservice <name>`; `sc query WireGuardTunnel$<name>` says if it runs.

Only the Linux driver has been run for real here (tests/agent/test_agent_tunnel_netns.py);
the macOS and Windows drivers are tested on the commands they would run and on the output
those commands print, not on those systems.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from agent.runner import CommandResult, Runner
from agent.tunnel import wgconf
from agent.tunnel.config import TunnelConfig
from agent.tunnel.location import Bypass

HANDSHAKE_FRESH_SECONDS = 180  # WireGuard re-keys every 2 minutes while traffic flows
WINDOWS_WIREGUARD = r"C:\Program Files\WireGuard\wireguard.exe"
WINDOWS_WG = r"C:\Program Files\WireGuard\wg.exe"
MACOS_PATHS = ("/opt/homebrew/bin", "/usr/local/bin")


class Driver(Protocol):
    platform: str
    interface: str

    def render(
        self, config: TunnelConfig, private_key: str, endpoint: str, fail_closed: bool
    ) -> str:
        """The configuration file's text."""

    def up(self, conf: Path) -> CommandResult: ...

    def down(self, conf: Path) -> CommandResult: ...

    def present(self) -> bool:
        """The tunnel's interface (or service) exists."""

    def last_handshake(self) -> datetime | None: ...

    def bypass(self) -> Bypass | None:
        """How a probe goes round the tunnel; None where it can't."""


def parse_handshakes(output: str) -> datetime | None:
    """`wg show <if> latest-handshakes`: '<key>\\t<unix time>' per peer (0: never)."""
    latest = 0
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            latest = max(latest, int(parts[1]))
    return datetime.fromtimestamp(latest, UTC) if latest else None


class LinuxDriver:
    platform = "linux"

    def __init__(
        self,
        runner: Runner,
        interface: str = wgconf.INTERFACE,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self.runner, self.interface, self.which = runner, interface, which

    def render(
        self, config: TunnelConfig, private_key: str, endpoint: str, fail_closed: bool
    ) -> str:
        dns = any(self.which(tool) for tool in ("resolvconf", "resolvectl"))
        return wgconf.linux(config, private_key, endpoint, dns=dns)

    def up(self, conf: Path) -> CommandResult:
        return self.runner.run(["wg-quick", "up", str(conf)], timeout=60)

    def down(self, conf: Path) -> CommandResult:
        return self.runner.run(["wg-quick", "down", str(conf)], timeout=60)

    def present(self) -> bool:
        return self.runner.run(["wg", "show", self.interface, "latest-handshakes"]).ok

    def last_handshake(self) -> datetime | None:
        done = self.runner.run(["wg", "show", self.interface, "latest-handshakes"])
        return parse_handshakes(done.stdout) if done.ok else None

    def bypass(self) -> Bypass | None:
        return Bypass("mark", wgconf.FWMARK)


class MacDriver(LinuxDriver):
    """wg-quick from Homebrew (it needs Homebrew's bash 4, which it depends on)."""

    platform = "macos"

    def __init__(
        self,
        runner: Runner,
        interface: str = wgconf.INTERFACE,
        which: Callable[[str], str | None] = shutil.which,
        if_index: Callable[[str], int] = socket.if_nametoindex,
    ) -> None:
        super().__init__(runner, interface, which)
        self.if_index = if_index

    def _tool(self, name: str) -> str:
        for folder in MACOS_PATHS:  # launchd's PATH has neither Homebrew folder
            if self.which(f"{folder}/{name}"):
                return f"{folder}/{name}"
        return name

    def render(
        self, config: TunnelConfig, private_key: str, endpoint: str, fail_closed: bool
    ) -> str:
        return wgconf.macos(config, private_key, endpoint, dns=True)

    def up(self, conf: Path) -> CommandResult:
        return self.runner.run([self._tool("wg-quick"), "up", str(conf)], timeout=60)

    def down(self, conf: Path) -> CommandResult:
        return self.runner.run([self._tool("wg-quick"), "down", str(conf)], timeout=60)

    def present(self) -> bool:
        return self.runner.run([self._tool("wg"), "show", self.interface, "latest-handshakes"]).ok

    def last_handshake(self) -> datetime | None:
        done = self.runner.run([self._tool("wg"), "show", self.interface, "latest-handshakes"])
        return parse_handshakes(done.stdout) if done.ok else None

    def bypass(self) -> Bypass | None:
        """IP_BOUND_IF to the default route's interface (wg-quick leaves the default route
        alone and adds 0/1 and 128/1 over it, so it still names the physical interface)."""
        done = self.runner.run(["route", "-n", "get", "default"])
        for line in done.stdout.splitlines() if done.ok else []:
            key, _, value = line.strip().partition(":")
            if key == "interface" and value.strip() and not value.strip().startswith("utun"):
                try:
                    return Bypass("bound_if", self.if_index(value.strip()))
                except OSError:
                    return None
        return None


class WindowsDriver:
    """The WireGuard app's tunnel service (install the app first: wireguard.com/install)."""

    platform = "windows"

    def __init__(self, runner: Runner, interface: str = wgconf.INTERFACE) -> None:
        self.runner, self.interface = runner, interface

    @property
    def service(self) -> str:
        return f"WireGuardTunnel${self.interface}"

    def render(
        self, config: TunnelConfig, private_key: str, endpoint: str, fail_closed: bool
    ) -> str:
        return wgconf.windows(config, private_key, endpoint, kill_switch=fail_closed)

    def up(self, conf: Path) -> CommandResult:
        return self.runner.run([WINDOWS_WIREGUARD, "/installtunnelservice", str(conf)], timeout=60)

    def down(self, conf: Path) -> CommandResult:
        return self.runner.run(
            [WINDOWS_WIREGUARD, "/uninstalltunnelservice", self.interface], timeout=60
        )

    def present(self) -> bool:
        done = self.runner.run(["sc", "query", self.service])
        return done.ok and "RUNNING" in done.stdout

    def last_handshake(self) -> datetime | None:
        done = self.runner.run([WINDOWS_WG, "show", self.interface, "latest-handshakes"])
        return parse_handshakes(done.stdout) if done.ok else None

    def bypass(self) -> Bypass | None:
        return None  # the app's kill switch would block a probe round it anyway


def driver_for(platform: str, runner: Runner, interface: str = wgconf.INTERFACE) -> Driver:
    if platform == "macos":
        return MacDriver(runner, interface)
    if platform == "windows":
        return WindowsDriver(runner, interface)
    return LinuxDriver(runner, interface)


__all__ = [
    "HANDSHAKE_FRESH_SECONDS",
    "Driver",
    "LinuxDriver",
    "MacDriver",
    "WindowsDriver",
    "driver_for",
    "parse_handshakes",
]

"""Fail closed: off site with the tunnel down, the device's web traffic is refused.

The rule set lets out only what bringing the tunnel back needs: loopback, the tunnel's own
interface, DHCP, DNS from the system (root, and systemd-resolved's user), WireGuard's own
UDP to the gateway's endpoint (packets with the tunnel's fwmark on Linux, root's on macOS:
the endpoint's address comes from the home network's DNS, so it may be a pupil's own
server), the agent's own probe of the gateway's device API (root only), and the policy's
passthrough networks. Everything else is refused at once (a TCP
reset, an ICMP "prohibited" for the rest, QUIC included), so a browser says so rather than
hanging. Rules that name a user hold against a pupil who is not an administrator: they
can't send as root, nor bind DHCP's privileged ports.

- Linux: nftables table `inet schoolgate_agent` on the output hook, replaced atomically
  with `nft -f` and deleted on site or when the policy turns fail closed off.
- macOS: a pf anchor `com.apple/schoolgate` (Apple's pf.conf evaluates `com.apple/*`).
- Windows: the WireGuard app's own kill switch, on while its tunnel service runs with a
  /0 (agent/tunnel/wgconf.py); the agent checks that, it loads no rules of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.client import write_private
from agent.runner import Runner
from agent.tunnel.wgconf import FWMARK

TABLE = "schoolgate_agent"
PF_ANCHOR = "com.apple/schoolgate"
RULES_FILE = "fail-closed.rules"
RESOLVER_USERS = ("systemd-resolve",)


@dataclass(frozen=True)
class Openings:
    """What the rule set lets out."""

    interface: str
    endpoint: tuple[str, int] | None  # the WireGuard endpoint's address and UDP port
    probe: tuple[str, int] | None = None  # the gateway's device API (where-am-I probe)
    passthrough: tuple[str, ...] = ()


def _family(address: str) -> str:
    return "ip6" if ":" in address else "ip"


def nft_rules(openings: Openings, dns_uids: tuple[int, ...] = (0,)) -> str:
    """The whole table, as one `nft -f` transaction (made, emptied by deleting, remade)."""
    uids = ", ".join(str(u) for u in sorted(set(dns_uids)))
    rules = [
        'oifname "lo" accept',
        f'oifname "{openings.interface}" accept',
        "udp sport 68 udp dport 67 accept",
        "udp sport 546 udp dport 547 accept",
        "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept",
        f"meta skuid {{ {uids} }} udp dport 53 accept",
        f"meta skuid {{ {uids} }} tcp dport 53 accept",
    ]
    if openings.endpoint:
        address, port = openings.endpoint
        # Only WireGuard's packets: a user can't set SO_MARK without CAP_NET_ADMIN.
        rules.append(
            f"meta mark {FWMARK} {_family(address)} daddr {address} udp dport {port} accept"
        )
    if openings.probe:
        address, port = openings.probe
        rules.append(f"meta skuid 0 {_family(address)} daddr {address} tcp dport {port} accept")
    v4 = [n for n in openings.passthrough if ":" not in n]
    if v4:
        rules.append(f"ip daddr {{ {', '.join(v4)} }} accept")
    rules += ["meta l4proto tcp reject with tcp reset", "reject with icmpx admin-prohibited"]
    body = "\n".join(f"\t\t{rule}" for rule in rules)
    return (
        "# Written by schoolgate-agent: fail closed while off site (docs/agent.md).\n"
        f"table inet {TABLE}\n"
        f"delete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        "\tchain output {\n"
        "\t\ttype filter hook output priority filter; policy accept;\n"
        f"{body}\n"
        "\t}\n"
        "}\n"
    )


def pf_rules(openings: Openings, utun: str | None) -> str:
    """The pf anchor: the same openings, `quick` so the first match wins."""
    rules = ["pass out quick on lo0 all"]
    if utun:
        rules.append(f"pass out quick on {utun} all")
    rules += [
        "pass out quick proto udp from any port 68 to any port 67",
        "pass out quick proto { udp, tcp } to any port 53 user root",
        "pass out quick inet6 proto icmp6 all",
    ]
    if openings.endpoint:
        address, port = openings.endpoint
        rules.append(f"pass out quick proto udp to {address} port {port} user root")
    if openings.probe:
        address, port = openings.probe
        rules.append(f"pass out quick proto tcp to {address} port {port} user root")
    for network in openings.passthrough:
        rules.append(f"pass out quick to {network}")
    rules.append("block return out quick all")
    return "# Written by schoolgate-agent: fail closed while off site.\n" + "\n".join(rules) + "\n"


def uids_of(passwd: str | None, names: tuple[str, ...]) -> tuple[int, ...]:
    """The uids of the named users in /etc/passwd's text (those that exist)."""
    found = []
    for line in (passwd or "").splitlines():
        parts = line.split(":")
        if len(parts) > 2 and parts[0] in names and parts[2].isdigit():
            found.append(int(parts[2]))
    return tuple(found)


class Firewall(Protocol):
    def close(self, openings: Openings) -> str | None:
        """Load the rule set; None when done, else why not."""

    def open(self) -> str | None:
        """Remove it; None when done (or there was none), else why not."""

    def closed(self) -> bool: ...


class NftFirewall:
    def __init__(self, runner: Runner, state_dir: Path) -> None:
        self.runner, self.file = runner, Path(state_dir) / RULES_FILE

    def close(self, openings: Openings) -> str | None:
        dns_uids = (0, *uids_of(self.runner.read("/etc/passwd"), RESOLVER_USERS))
        write_private(self.file, nft_rules(openings, dns_uids).encode())
        done = self.runner.run(["nft", "-f", str(self.file)])
        return None if done.ok else f"nft refused the rule set: {done.stderr.strip()[:200]}"

    def open(self) -> str | None:
        if not self.closed():
            return None
        done = self.runner.run(["nft", "delete", "table", "inet", TABLE])
        return None if done.ok else f"nft: {done.stderr.strip()[:200]}"

    def closed(self) -> bool:
        return self.runner.run(["nft", "list", "table", "inet", TABLE]).ok


class PfFirewall:
    """macOS: a pf anchor, and pf enabled (`pfctl -E` takes a reference, so it stays on)."""

    def __init__(self, runner: Runner, state_dir: Path, interface: str) -> None:
        self.runner, self.file, self.interface = runner, Path(state_dir) / RULES_FILE, interface

    def _utun(self) -> str | None:
        name = self.runner.read(f"/var/run/wireguard/{self.interface}.name")
        return name.strip() if name and name.strip().startswith("utun") else None

    def close(self, openings: Openings) -> str | None:
        write_private(self.file, pf_rules(openings, self._utun()).encode())
        done = self.runner.run(["pfctl", "-a", PF_ANCHOR, "-f", str(self.file)])
        if not done.ok:
            return f"pfctl refused the anchor: {done.stderr.strip()[:200]}"
        self.runner.run(["pfctl", "-E"])
        return None

    def open(self) -> str | None:
        done = self.runner.run(["pfctl", "-a", PF_ANCHOR, "-F", "rules"])
        return None if done.ok else f"pfctl: {done.stderr.strip()[:200]}"

    def closed(self) -> bool:
        done = self.runner.run(["pfctl", "-a", PF_ANCHOR, "-s", "rules"])
        return done.ok and "block return out quick all" in done.stdout


class KillSwitch:
    """Windows: the WireGuard app blocks untunnelled traffic while the tunnel service runs
    (its config has a single peer with 0.0.0.0/0); nothing to load, only to check."""

    def __init__(self, runner: Runner, interface: str) -> None:
        self.runner, self.interface = runner, interface

    def close(self, openings: Openings) -> str | None:
        if self.closed():
            return None
        return "the WireGuard app's kill switch is on only while its tunnel service runs"

    def open(self) -> str | None:
        return None

    def closed(self) -> bool:
        done = self.runner.run(["sc", "query", f"WireGuardTunnel${self.interface}"])
        return done.ok and "RUNNING" in done.stdout


def firewall_for(platform: str, runner: Runner, state_dir: Path, interface: str) -> Firewall:
    if platform == "macos":
        return PfFirewall(runner, state_dir, interface)
    if platform == "windows":
        return KillSwitch(runner, interface)
    return NftFirewall(runner, state_dir)


__all__ = [
    "Firewall",
    "KillSwitch",
    "NftFirewall",
    "Openings",
    "PfFirewall",
    "firewall_for",
    "nft_rules",
    "pf_rules",
    "uids_of",
]

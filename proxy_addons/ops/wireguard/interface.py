"""The gateway's WireGuard interface, brought up for `policy.devices.tunnel` without touching
anything else on the machine.

The kernel's WireGuard is used where the kernel has it (`ip link add ... type wireguard`);
where it doesn't, `wireguard-go` makes the same interface in user space, and `wg` and `ip`
drive either the same way. The gateway's private key is made on first use, readable by its
owner only; the public key is written beside it for the web app, which gives it to devices.
`wg show <if> dump` is read into typed peers for peers.py and the doctor.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.tunnel.config import new_private_key, public_key, valid_key
from proxy_addons.core.policy.model import Tunnel
from proxy_addons.devices.tunnels import key_files
from proxy_addons.ops.wireguard.commands import Commands, WireGuardError, said

logger = logging.getLogger(__name__)

MTU = 1420  # WireGuard's own default: room for its headers inside a 1500-byte path
KERNEL, USERSPACE = "kernel", "wireguard-go"
# What `ip link add ... type wireguard` says when the kernel has no WireGuard.
_NO_KERNEL_WIREGUARD = ("unknown device type", "operation not supported", "not supported")


@dataclass(frozen=True)
class Peer:
    """One peer as the interface has it."""

    public_key: str
    endpoint: str | None  # where its packets last came from (a pupil's home, say)
    allowed_ips: tuple[str, ...]
    latest_handshake: datetime | None
    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True)
class Interface:
    """The interface's own settings and its peers (`wg show <if> dump`)."""

    name: str
    public_key: str | None
    listen_port: int
    peers: tuple[Peer, ...]


def parse_dump(name: str, text: str) -> Interface:
    """`wg show <if> dump`: the interface's line, then one line a peer, tab-separated.

    The interface line is private key, public key, listen port, fwmark; a peer's is public
    key, preshared key, endpoint, allowed ips, latest handshake (epoch seconds, 0: never),
    rx bytes, tx bytes, keepalive. The private key is read past and kept nowhere."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise WireGuardError(f"'wg show {name} dump' printed nothing")
    head = lines[0].split("\t")
    if len(head) < 4 or not head[2].isdigit():
        raise WireGuardError(f"'wg show {name} dump' printed an unexpected first line")
    peers = []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        if len(fields) < 8 or not all(f.isdigit() for f in fields[4:7]):
            raise WireGuardError(f"'wg show {name} dump' line {number} is not a peer")
        seen = int(fields[4])
        peers.append(
            Peer(
                public_key=fields[0],
                endpoint=None if fields[2] == "(none)" else fields[2],
                allowed_ips=tuple(sorted(a for a in fields[3].split(",") if a and a != "(none)")),
                latest_handshake=datetime.fromtimestamp(seen, UTC) if seen else None,
                rx_bytes=int(fields[5]),
                tx_bytes=int(fields[6]),
            )
        )
    return Interface(
        name=name,
        public_key=head[1] if valid_key(head[1]) else None,
        listen_port=int(head[2]),
        peers=tuple(peers),
    )


def ensure_keys(tunnel: Tunnel, var: Path) -> tuple[Path, str]:
    """(the private key file, the public key): made on first use. The private key is the
    owner's alone (0600; a looser file is tightened and said); the public one is 0644."""
    private, public = key_files(tunnel, var)
    private.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    if private.exists():
        mode = stat.S_IMODE(private.stat().st_mode)
        if mode & 0o077:
            logger.warning("tunnel: %s was readable by others (%o): now 0600", private, mode)
            private.chmod(0o600)
        text = private.read_text().strip()
        if not valid_key(text):
            raise WireGuardError(
                f"{private} does not hold a WireGuard private key: move it away and run "
                "`schoolgate tunnel up` to make a new one (devices then need the new public key)"
            )
    else:
        text = new_private_key()
        _write(private, text + "\n", 0o600)
        logger.info("tunnel: made the gateway's WireGuard key in %s", private)
    key = public_key(text)
    try:
        current = public.read_text().strip()
    except OSError:
        current = ""
    if current != key:
        _write(public, key + "\n", 0o644)
    return private, key


def _write(path: Path, text: str, mode: int) -> None:
    """Whole or not at all: a temporary file made with its final mode, then renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)  # whatever the umask took away
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def exists(name: str, cmd: Commands) -> bool:
    return cmd.run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def is_up(name: str, cmd: Commands) -> bool:
    """The interface is administratively up (a WireGuard interface never reports LOWER_UP
    the way Ethernet does, so the flag is what counts)."""
    proc = cmd.run(["ip", "-j", "link", "show", "dev", name], check=False)
    if proc.returncode != 0:
        return False
    try:
        links = json.loads(proc.stdout)
    except ValueError:
        return False
    return bool(links) and "UP" in links[0].get("flags", [])


def create(name: str, cmd: Commands) -> str:
    """Make the interface: the kernel's WireGuard, else wireguard-go. Returns which."""
    proc = cmd.run(["ip", "link", "add", "dev", name, "type", "wireguard"], check=False)
    if proc.returncode == 0:
        return KERNEL
    why = said(proc)
    if not any(text in why.lower() for text in _NO_KERNEL_WIREGUARD):
        raise WireGuardError(f"can't make the WireGuard interface {name}: {why}")
    try:
        cmd.run(["wireguard-go", name])
    except WireGuardError as exc:
        raise WireGuardError(
            f"this kernel has no WireGuard ({why}) and wireguard-go could not make {name}: "
            f"{exc} (apt-get install wireguard-go; it needs /dev/net/tun and CAP_NET_ADMIN)"
        ) from None
    if not exists(name, cmd):
        raise WireGuardError(f"wireguard-go started but {name} did not appear")
    return USERSPACE


def show(name: str, cmd: Commands) -> Interface | None:
    """The interface as WireGuard has it; None when there is no such interface."""
    if not exists(name, cmd):
        return None
    proc = cmd.run(["wg", "show", name, "dump"], check=False)
    if proc.returncode != 0:
        raise WireGuardError(
            f"{name} exists but 'wg show' can't read it ({said(proc)}): is it a WireGuard "
            "interface? (apt-get install wireguard-tools)"
        )
    return parse_dump(name, proc.stdout)


def bring_up(tunnel: Tunnel, var: Path, cmd: Commands) -> str:
    """The interface as the policy says: made if missing, the gateway's key and listen port,
    the gateway's tunnel address (and no other), up. Returns how it was made ("kernel",
    "wireguard-go") or "existing". Safe to repeat."""
    name = tunnel.interface
    private, _ = ensure_keys(tunnel, var)
    how = "existing"
    if not exists(name, cmd):
        how = create(name, cmd)
        logger.info("tunnel: made interface %s with %s", name, how)
    cmd.run(
        ["wg", "set", name, "listen-port", str(tunnel.listen_port), "private-key", str(private)]
    )
    wanted = ipaddress.IPv4Interface(f"{tunnel.gateway_address}/{tunnel.pool.prefixlen}")
    for other in _addresses(name, cmd):
        if other != wanted:  # the pool changed: the old address goes
            cmd.run(["ip", "address", "del", str(other), "dev", name])
    cmd.run(["ip", "address", "replace", str(wanted), "dev", name])
    cmd.run(["ip", "link", "set", "dev", name, "mtu", str(MTU), "up"])
    return how


def _addresses(name: str, cmd: Commands) -> list[ipaddress.IPv4Interface]:
    proc = cmd.run(["ip", "-4", "-j", "address", "show", "dev", name])
    try:
        found = json.loads(proc.stdout or "[]")
    except ValueError:
        return []
    return [
        ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
        for link in found
        for a in link.get("addr_info", [])
        if "local" in a and "prefixlen" in a
    ]


def set_peer(name: str, key: str, address: str, cmd: Commands) -> None:
    """The peer, allowed exactly its one tunnel address (replacing what it had)."""
    cmd.run(["wg", "set", name, "peer", key, "allowed-ips", f"{address}/32"])


def remove_peer(name: str, key: str, cmd: Commands) -> None:
    cmd.run(["wg", "set", name, "peer", key, "remove"])


def take_down(name: str, cmd: Commands) -> None:
    """Delete the interface (wireguard-go exits with it)."""
    if exists(name, cmd):
        cmd.run(["ip", "link", "del", "dev", name])


__all__ = [
    "KERNEL",
    "MTU",
    "USERSPACE",
    "Interface",
    "Peer",
    "bring_up",
    "create",
    "ensure_keys",
    "exists",
    "is_up",
    "parse_dump",
    "remove_peer",
    "set_peer",
    "show",
    "take_down",
]

"""Fail closed for real: the agent's nftables rules in a network namespace made by the test.

home (the device, 10.88.0.2) --veth-- net (10.88.0.1: the gateway's WireGuard endpoint, a
UDP echo on 51820; 10.88.0.80: a web server on TCP 80 and UDP echoes on 443 and 53).

With the rules loaded by the agent's own NftFirewall (its commands run inside `home`), the
web server's TCP 80 is refused at once and QUIC's UDP 443 gets nothing back, while UDP to
the endpoint's port still passes for WireGuard (packets with the tunnel's fwmark) and for
nobody else (the endpoint's address comes from the home network's DNS, which a pupil may
run, so it may be their own server); DNS passes for root (the system's resolver) but not for
an ordinary user (a pupil can't use port 53 as a way out). Removing the rules restores the
direct connection. Needs root, iproute2, nftables and setpriv; otherwise skipped, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.runner import CommandResult, SystemRunner
from agent.tunnel.firewall import NftFirewall, Openings
from agent.tunnel.wgconf import FWMARK

HOME_IP, ENDPOINT, WEB = "10.88.0.2", "10.88.0.1", "10.88.0.80"
WG_PORT = 51820
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "python3"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces and nftables need root"
    for tool in ("ip", "nft", "setpriv"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (iproute2, nftables, util-linux)"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))

SERVE = """
import socket, sys, threading
def tcp(addr, port):
    s = socket.create_server((addr, port)); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(b"web\\n"); c.close()
def udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(2048); s.sendto(data, peer)
threads = [threading.Thread(target=tcp, args=(sys.argv[2], 80), daemon=True)]
threads += [threading.Thread(target=udp, args=(sys.argv[1], int(sys.argv[3])), daemon=True)]
threads += [threading.Thread(target=udp, args=(sys.argv[2], p), daemon=True) for p in (443, 53)]
for t in threads: t.start()
print("ready", flush=True)
threading.Event().wait()
"""

TRY = """
import json, socket, sys
proto, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind); s.settimeout(2)
try:
    if len(sys.argv) > 4:  # as WireGuard sends, with the tunnel's fwmark
        s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, int(sys.argv[4]))
    s.connect((addr, port))
    if proto == "udp":
        s.send(b"hello"); s.recv(64)
    print(json.dumps("ok"))
except OSError as exc:
    print(json.dumps(type(exc).__name__))
"""


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr}")
    return done


class InNamespace(SystemRunner):
    """The agent's SystemRunner, with every command run inside one namespace."""

    def __init__(self, namespace: str) -> None:
        super().__init__("/")
        self.namespace = namespace

    def run(self, argv: list[str], timeout: float = 20.0) -> CommandResult:
        return super().run(["ip", "netns", "exec", self.namespace, *argv], timeout)


@pytest.fixture
def lab() -> Iterator[str]:
    suffix = str(os.getpid())[-5:]
    home, net = f"sgah{suffix}", f"sgan{suffix}"
    server = None
    try:
        run("ip", "netns", "add", home)
        run("ip", "netns", "add", net)
        run("ip", "link", "add", f"ah{suffix}", "netns", home, "type", "veth", "peer",
            "name", f"an{suffix}", "netns", net)  # fmt: skip
        run("ip", "-n", home, "addr", "add", f"{HOME_IP}/24", "dev", f"ah{suffix}")
        run("ip", "-n", net, "addr", "add", f"{ENDPOINT}/24", "dev", f"an{suffix}")
        run("ip", "-n", net, "addr", "add", f"{WEB}/24", "dev", f"an{suffix}")
        for ns, link in ((home, f"ah{suffix}"), (net, f"an{suffix}")):
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", link, "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", net, sys.executable, "-c", SERVE, ENDPOINT, WEB, str(WG_PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield home
    finally:
        if server is not None:
            server.kill()
            server.wait()
        run("ip", "netns", "del", home, check=False)
        run("ip", "netns", "del", net, check=False)


def attempt(
    home: str, proto: str, address: str, port: int, as_user: str | None = None, mark: int = 0
) -> str:
    """One try from the device; as_user runs it as that uid, with the system's Python (this
    one may live where only root can read, as under /root/.pyenv); mark: with that SO_MARK."""
    who = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", PYTHON]
    argv = ["ip", "netns", "exec", home, *(who if as_user else [sys.executable]), "-c", TRY]
    done = run(*argv, proto, address, str(port), *([str(mark)] if mark else []))
    outcome: str = json.loads(done.stdout)
    return outcome


def wait_until_answered(home: str) -> None:
    """The veth link can take a moment to pass traffic (duplicate address detection)."""
    for _ in range(50):
        if attempt(home, "tcp", WEB, 80) == "ok":
            return
        time.sleep(0.1)
    raise AssertionError("the lab's web server never answered")


def test_fail_closed_refuses_web_but_lets_the_tunnel_back(lab: str, tmp_path: Path) -> None:
    wait_until_answered(lab)
    assert attempt(lab, "udp", WEB, 53, as_user="65534") == "ok"  # before: anyone, anywhere
    firewall = NftFirewall(InNamespace(lab), tmp_path)
    assert not firewall.closed()
    openings = Openings("schoolgate0", (ENDPOINT, WG_PORT), probe=(ENDPOINT, 8081))
    assert firewall.close(openings) is None and firewall.closed()

    assert attempt(lab, "tcp", WEB, 80) == "ConnectionRefusedError"  # at once, not a hang
    assert attempt(lab, "udp", WEB, 443) != "ok"  # QUIC gets nothing back
    assert attempt(lab, "udp", ENDPOINT, WG_PORT, mark=FWMARK) == "ok"  # the tunnel comes back
    # Nobody else uses the opening: not root without the mark, and a pupil can't set it.
    assert attempt(lab, "udp", ENDPOINT, WG_PORT) != "ok"
    assert attempt(lab, "udp", ENDPOINT, WG_PORT, as_user="65534") != "ok"
    assert attempt(lab, "udp", ENDPOINT, WG_PORT, as_user="65534", mark=FWMARK) == "PermissionError"
    assert attempt(lab, "tcp", ENDPOINT, 80) == "ConnectionRefusedError"  # only its UDP port
    assert attempt(lab, "udp", WEB, 53) == "ok"  # the system's DNS (root)
    assert attempt(lab, "udp", WEB, 53, as_user="65534") != "ok"  # not a way out for a pupil

    firewall.close(openings)  # loaded again: replaced in one go, not doubled
    listed = run("ip", "netns", "exec", lab, "nft", "list", "table", "inet", "schoolgate_agent")
    assert listed.stdout.count("reject with tcp reset") == 1

    assert firewall.open() is None and not firewall.closed()
    assert attempt(lab, "tcp", WEB, 80) == "ok"
    assert attempt(lab, "udp", WEB, 443) == "ok"

"""School laptops taken home, for real: WireGuard tunnels between network namespaces.

    laptop-a (10.77.1.2 on the school LAN; 198.51.100.2 at home) --+
    laptop-b (10.77.2.2 on the school LAN; 198.51.101.2 at home) --+-- "internet" (routes
                                                                   |   home <-> gateway;
    gateway (10.77.1.1 / 10.77.2.1 LAN, 10.77.200.1 WAN: mitmdump  |   the web servers at
    in transparent mode, `schoolgate web` with the device API over |   10.77.200.2-)
    HTTPS, `schoolgate tunnel run` with wireguard-go; the deploy --+
    firewall with the tunnel's interface)

Each laptop enrols on the school LAN with the real agent (`schoolgate-agent enrol`, `tunnel
setup`), then goes home: its LAN link goes down and its default route goes through its home
router. There the agent finds it is off site (the gateway's pinned device API doesn't answer
outside the tunnel), brings its tunnel up with wg-quick (falling back to wireguard-go), and
reports through it. Its web traffic reaches the gateway through the tunnel and is filtered by
its profile and logged under its device, known by its key.

Needs root, iproute2, nftables, curl, wg, wg-quick and wireguard-go; skipped with the reason
otherwise.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import alerts as alert_rows
from proxy_addons.store.schema import device_tunnels
from tests.conftest import MITMDUMP, ROOT, access_log, copy_policy
from tests.devices.test_device_api import make_pki
from tests.gateway.test_transparent_netns import (
    NFT_DIR,
    UPSTREAM_SCRIPT,
    _cert_pair,
    render_nft,
    run,
    stop,
)

BIN = Path(MITMDUMP).parent
HOSTS = ("games.test", "adult.test", "bank.test", "dns.test", "news.test", "illegal.test")
WEB = "10.77.200.2"
GATEWAY_WAN, GATEWAY_LAN_A, GATEWAY_LAN_B = "10.77.200.1", "10.77.1.1", "10.77.2.1"
LAN_A, LAN_B = "10.77.1.2", "10.77.2.2"
HOME_A, HOME_B = "198.51.100.2", "198.51.101.2"
ROUTER_A, ROUTER_B = "198.51.100.1", "198.51.101.1"
POOL, TUNNEL_GATEWAY = "10.123.0.0/24", "10.123.0.1"
WG_PORT, PROXY_PORT, TRANSPARENT_PORT, API_PORT = 51820, 8080, 8082, 8081
SECRET = "enrol-the-laptops-0123456789"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces, nftables and WireGuard need root"
    for tool in ("ip", "nft", "curl", "wg", "wg-quick", "wireguard-go"):
        if shutil.which(tool) is None:
            packages = "iproute2, nftables, curl, wireguard-tools, wireguard-go"
            return f"'{tool}' is not installed ({packages})"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


@dataclass
class Laptop:
    name: str  # its host name, as enrolled
    ns: str
    lan: str  # its address on the school LAN
    lan_if: str
    home: str  # its address at home
    home_if: str
    router: str  # its home router
    interface: str  # its tunnel's interface
    state: Path  # the agent's state folder
    device_id: str = ""


@dataclass
class Lab:
    tag: str
    tmp: Path
    gateway: str
    internet: str
    var: Path
    policy: Path
    ca: Path
    laptops: dict[str, Laptop] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-4000:]
            for p in sorted(self.var.glob("*.log"))
        )

    def agent(
        self, laptop: Laptop, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["ip", "netns", "exec", laptop.ns, str(BIN / "schoolgate-agent"), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=ROOT)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def curl(
        self, laptop: Laptop, url: str, *args: str, source: str | None = None
    ) -> tuple[int, int, str]:
        """(curl's exit code, HTTP status, body) from the laptop; .test names go to WEB."""
        host = url.split("/")[2]
        cmd = ["ip", "netns", "exec", laptop.ns, "curl", "-sS", "--max-time", "6"]
        cmd += ["--resolve", f"{host}:80:{WEB}", "--resolve", f"{host}:443:{WEB}"]
        if source:
            cmd += ["--interface", source]
        cmd += ["-w", "\n%{http_code}", *args, url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        body, _, code = done.stdout.rpartition("\n")
        return done.returncode, int(code or 0), body

    def schoolgate(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["ip", "netns", "exec", self.gateway, str(BIN / "schoolgate"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)

    def store(self) -> Store:
        return Store.open(store_url(self.var))


def _wait(what: str, ready: Callable[[], bool], lab: Lab, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{lab.logs()}")
        time.sleep(0.2)


def _listening(ns: str, ports: set[int], udp: bool = False) -> bool:
    out = run("ip", "netns", "exec", ns, "ss", "-Hlnu" if udp else "-Hltn").stdout
    return ports <= {int(m) for m in re.findall(r":(\d+)\s", out)}


def _build(lab: Lab) -> None:
    g, i = lab.gateway, lab.internet
    for ns in (g, i, *(p.ns for p in lab.laptops.values())):
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
    _veth("gu", g, "u0", i)
    run("ip", "-n", g, "addr", "add", f"{GATEWAY_WAN}/24", "dev", "gu")
    run("ip", "-n", i, "addr", "add", f"{WEB}/24", "dev", "u0")
    for dev, ns in (("gu", g), ("u0", i)):
        run("ip", "-n", ns, "link", "set", dev, "up")
    for gw_lan, laptop in zip((GATEWAY_LAN_A, GATEWAY_LAN_B), lab.laptops.values(), strict=True):
        g_if, i_if = f"g{laptop.lan_if}", f"i{laptop.home_if}"
        _veth(laptop.lan_if, laptop.ns, g_if, g)
        _veth(laptop.home_if, laptop.ns, i_if, i)
        run("ip", "-n", laptop.ns, "addr", "add", f"{laptop.lan}/24", "dev", laptop.lan_if)
        run("ip", "-n", g, "addr", "add", f"{gw_lan}/24", "dev", g_if)
        run("ip", "-n", laptop.ns, "addr", "add", f"{laptop.home}/24", "dev", laptop.home_if)
        run("ip", "-n", i, "addr", "add", f"{laptop.router}/24", "dev", i_if)
        for ns, dev in (
            (laptop.ns, laptop.lan_if),
            (g, g_if),
            (laptop.ns, laptop.home_if),
            (i, i_if),
        ):
            run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", laptop.ns, "route", "add", "default", "via", gw_lan)  # at school
    run("ip", "-n", g, "route", "add", "default", "via", WEB)  # the internet's router
    for ns in (g, i):
        run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    hosts = Path("/etc/netns") / g / "hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{WEB} {h}\n" for h in HOSTS))
    lans = ", ".join(f'"g{p.lan_if}"' for p in lab.laptops.values())
    defines = {
        "lan_if": f"{{ {lans} }}",
        "wan_if": '"gu"',
        "client_nets": "{ 10.77.1.0/24, 10.77.2.0/24 }",
        "mgmt_nets": "{ 10.77.9.0/24 }",
        "school_dns": "{ 10.77.200.53 }",
        "proxy_port": str(PROXY_PORT),
        "transparent_port": str(TRANSPARENT_PORT),
        "wg_if": f'"{_gateway_if(lab)}"',
        "tunnel_nets": f"{{ {POOL} }}",
        "wg_port": str(WG_PORT),
    }
    rules = lab.tmp / "schoolgate.nft"
    rules.write_text(render_nft((NFT_DIR / "schoolgate.nft").read_text(), defines))
    run("ip", "netns", "exec", g, "nft", "-f", str(rules))


def _veth(name: str, ns: str, peer: str, peer_ns: str) -> None:
    run(
        "ip",
        "link",
        "add",
        name,
        "netns",
        ns,
        "type",
        "veth",
        "peer",
        "name",
        peer,
        "netns",
        peer_ns,
    )


def _gateway_if(lab: Lab) -> str:
    return f"sgw{lab.tag}"


def _policy(lab: Lab) -> None:
    (lab.policy.parent / "enrol.secret").write_text(SECRET + "\n")
    text = lab.policy.read_text()
    text += (
        "devices:\n  enrolment_secret_file: enrol.secret\n  identity_minutes: 30\n"
        f"  tunnel:\n    pool: {POOL}\n    endpoint: {GATEWAY_WAN}:{WG_PORT}\n"
        f"    interface: {_gateway_if(lab)}\n    fail_closed: true\n"
        "network:\n  client_networks: [10.77.1.0/24, 10.77.2.0/24]\n"
        "  management_networks: [10.77.9.0/24]\n"
    )
    lab.policy.write_text(text)


def _start(lab: Lab, cert: Path, key: Path) -> None:
    events = lab.tmp / "events"
    upstream = subprocess.Popen(
        ["ip", "netns", "exec", lab.internet, sys.executable, str(UPSTREAM_SCRIPT)]
        + [str(cert), str(key), str(events), WEB],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lab.processes.append(upstream)
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == b"ready"
    lab.var.mkdir()

    def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (lab.var / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", lab.gateway, *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        lab.processes.append(process)
        return process

    start(
        "gateway",
        [MITMDUMP, "--mode", f"regular@{PROXY_PORT}", "--mode", f"transparent@{TRANSPARENT_PORT}"]
        + ["-s", str(ROOT / "proxy_addons" / "gateway" / "chain.py")]
        + ["--set", f"confdir={lab.var / 'ca'}", "--set", f"schoolgate_policy={lab.policy}"]
        + ["--set", f"schoolgate_var={lab.var}", "--set", "onboarding=false"]
        + ["--set", f"ssl_verify_upstream_trusted_ca={cert.parent / 'web-ca.pem'}"]
        + ["--set", "schoolgate_metrics_port=0", "--set", "flow_detail=1"],
    )
    _wait("the proxy", lambda: _listening(lab.gateway, {PROXY_PORT, TRANSPARENT_PORT}), lab)
    start(
        "web",
        [str(BIN / "schoolgate"), "web", "--policy", str(lab.policy), "--var", str(lab.var)]
        + ["--host", "0.0.0.0", "--port", str(API_PORT)]
        + [
            "--cert",
            str(lab.tmp / "pki" / "server.pem"),
            "--key",
            str(lab.tmp / "pki" / "server.key"),
        ],
    )
    _wait("the device API", lambda: _listening(lab.gateway, {API_PORT}), lab)
    start(
        "tunnel",
        [
            str(BIN / "schoolgate"),
            "tunnel",
            "run",
            "--policy",
            str(lab.policy),
            "--var",
            str(lab.var),
        ],
    )
    _wait("the tunnel", lambda: _listening(lab.gateway, {WG_PORT}, udp=True), lab)


def _enrol_at_school(lab: Lab, laptop: Laptop, gateway_lan: str) -> None:
    """What the IT provider does once, on the school network."""
    secret = lab.tmp / "secret"
    secret.write_text(SECRET + "\n")
    url = f"https://{gateway_lan}:{API_PORT}"
    state = ["--state", str(laptop.state)]
    said = lab.agent(
        laptop,
        "enrol",
        "--gateway",
        url,
        "--ca",
        str(lab.ca),
        "--secret-file",
        str(secret),
        "--hostname",
        laptop.name,
        *state,
    )
    laptop.device_id = said.stdout.split()[-1]
    said = lab.agent(laptop, "tunnel", "setup", *state, "--interface", laptop.interface)
    assert "tunnel address 10.123.0." in said.stdout, said.stdout


def _go_home(lab: Lab, laptop: Laptop) -> None:
    run("ip", "-n", laptop.ns, "link", "set", laptop.lan_if, "down")
    run("ip", "-n", laptop.ns, "route", "replace", "default", "via", laptop.router)


def _run_agent(lab: Lab, laptop: Laptop) -> subprocess.CompletedProcess[str]:
    """One round of the agent's service: where am I, the tunnel, the checks, a report."""
    return lab.agent(
        laptop, "run", "--once", "--state", str(laptop.state), "--interface", laptop.interface
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("tunnel")
    tag = f"{os.getpid() % 100000}"
    pki = make_pki(tmp / "pki", "Test Primary", (GATEWAY_LAN_A, GATEWAY_LAN_B, TUNNEL_GATEWAY))
    _, web_cert, web_key = _cert_pair(tmp)  # the sites' own (web-ca.pem, web.pem, web.key)
    lab = Lab(tag, tmp, f"sgtg{tag}", f"sgti{tag}", tmp / "var", copy_policy(tmp), pki.ca)
    for name, lan, home, router, letter in (
        ("laptop-a", LAN_A, HOME_A, ROUTER_A, "a"),
        ("laptop-b", LAN_B, HOME_B, ROUTER_B, "b"),
    ):
        lab.laptops[name] = Laptop(
            name,
            f"sgt{letter}{tag}",
            lan,
            f"l{letter}{tag}",
            home,
            f"h{letter}{tag}",
            router,
            f"sg{letter}{tag}",
            tmp / f"agent-{letter}",
        )
    try:
        try:
            run("ip", "netns", "add", lab.gateway)
        except AssertionError as exc:
            pytest.skip(f"cannot make network namespaces here: {exc}")
        run("ip", "netns", "del", lab.gateway)
        _build(lab)
        _policy(lab)
        _start(lab, web_cert, web_key)
        yield lab
    finally:
        for laptop in lab.laptops.values():
            conf = laptop.state / f"{laptop.interface}.conf"
            subprocess.run(
                ["ip", "netns", "exec", laptop.ns, "wg-quick", "down", str(conf)],
                capture_output=True,
                timeout=30,
            )
        stop(lab.processes)
        for ns in (lab.gateway, lab.internet, *(p.ns for p in lab.laptops.values())):
            run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(Path("/etc/netns") / lab.gateway, ignore_errors=True)
        for name in (_gateway_if(lab), *(p.interface for p in lab.laptops.values())):
            Path(f"/var/run/wireguard/{name}.sock").unlink(missing_ok=True)


# -- the tests, in the order a school would live them -----------------------------------


def _report_naming(lab: Lab, laptop: Laptop, user: str, ips: list[str]) -> None:
    """A report as the laptop's agent sends it when `user` is signed in: through the agent's
    own `send` (its spool, its pinned HTTPS, its token), over whatever route it has now."""
    body = {
        "schema": 1,
        "device_id": "replaced-by-the-agent",
        "hostname": laptop.name,
        "os_name": "linux",
        "os_version": "12",
        "agent_version": "0.1.0",
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "results": [{"id": "disk_encryption", "status": "pass", "reason": "LUKS on /"}],
        "user": user,
        "ips": ips,
    }
    path = lab.tmp / f"report-{laptop.name}.json"
    path.write_text(json.dumps(body))
    said = lab.agent(laptop, "send", str(path), "--state", str(laptop.state))
    assert "sent 1" in said.stdout, said.stdout + said.stderr


def _address(lab: Lab, laptop: Laptop) -> str:
    with lab.store().connect() as conn:
        return str(
            conn.execute(
                sa.select(device_tunnels.c.address).where(
                    device_tunnels.c.device_id == laptop.device_id
                )
            ).scalar_one()
        )


def _until(lab: Lab, laptop: Laptop, url: str, status: int, timeout: float = 20) -> None:
    """The gateway reads identities every few seconds: wait for `status` at `url`."""
    _wait(f"{url} to answer {status}", lambda: lab.curl(laptop, url)[1] == status, lab, timeout)


def test_a_laptop_at_home_is_filtered_by_its_profile_and_logged_as_itself(lab: Lab) -> None:
    a = lab.laptops["laptop-a"]
    _enrol_at_school(lab, a, GATEWAY_LAN_A)
    assert lab.curl(a, "http://games.test/at-school")[1] == 403  # on site: the LAN's profile
    _go_home(lab, a)
    said = _run_agent(lab, a)
    status = json.loads((a.state / "tunnel-status.json").read_text())
    assert (status["where"], status["state"]) == ("off_site", "up"), said.stdout + said.stderr
    address = _address(lab, a)
    # A pupil signs in: the report travels through the tunnel and speaks for its address.
    _report_naming(lab, a, "pupil", [address, HOME_A])
    _until(lab, a, "http://games.test/at-home", 200)  # ks2 allows games (early years doesn't)
    code, status_code, body = lab.curl(a, "http://bank.test/at-home")
    assert (code, status_code) == (0, 403) and "Test Primary" in body  # ks2: no banking
    code, status_code, body = lab.curl(a, "https://games.test/tls", "-k")
    assert (code, status_code) == (0, 200), body
    wanted = {"host": "bank.test", "decision": "block"}
    records = access_log(lab.var, lambda rs: any(_has(r, **wanted) for r in rs), timeout=10)
    mine = [r for r in records if r.get("ip") == address]
    assert mine and {r["device_id"] for r in mine} == {a.device_id}
    assert {r["device_name"] for r in mine} == {"laptop-a"}
    assert {(r["user"], r["profile"]) for r in mine if r["host"] == "bank.test"} == {
        ("pupil", "ks2")
    }
    # An alert from the tunnel names the device too (the illegal tier alerts the DSL).
    assert lab.curl(a, "http://illegal.test/exact.html")[1] == 403

    def alerted() -> list[Any]:
        with lab.store().connect() as conn:
            return list(
                conn.execute(sa.select(alert_rows).where(alert_rows.c.kind == "illegal_tier"))
            )

    _wait("the illegal-tier alert", lambda: bool(alerted()), lab)
    [alert] = alerted()
    assert (alert.device_id, alert.ip, alert.username) == (a.device_id, address, "pupil")
    assert "laptop-a" in json.dumps(alert.event)


def _has(record: dict[str, Any], **match: object) -> bool:
    return all(record.get(k) == v for k, v in match.items())


def test_a_second_laptop_cannot_claim_the_first_ones_address_or_profile(lab: Lab) -> None:
    a, b = lab.laptops["laptop-a"], lab.laptops["laptop-b"]
    _enrol_at_school(lab, b, GATEWAY_LAN_B)
    _go_home(lab, b)
    _run_agent(lab, b)
    a_address, b_address = _address(lab, a), _address(lab, b)
    assert a_address != b_address
    assert lab.curl(b, "http://games.test/b")[1] == 403  # no one signed in: early years
    # B's report lists A's tunnel address and names a teacher: neither is taken.
    _report_naming(lab, b, "teacher", [b_address, a_address])
    time.sleep(6)  # longer than the gateway takes to read reports
    assert lab.curl(b, "http://games.test/b-after")[1] == 403
    assert lab.curl(b, "http://bank.test/b-after")[1] == 403
    assert lab.curl(a, "http://games.test/a-still")[1] == 200  # A is still the pupil
    # B sends from A's tunnel address through its own tunnel: WireGuard drops it.
    run("ip", "-n", b.ns, "addr", "add", f"{a_address}/32", "dev", b.interface)
    try:
        code, status, _ = lab.curl(b, "http://games.test/spoofed", source=a_address)
        assert code != 0 and status == 0
    finally:
        run("ip", "-n", b.ns, "addr", "del", f"{a_address}/32", "dev", b.interface)
    records = access_log(lab.var, lambda rs: any("a-still" in str(r.get("url")) for r in rs))
    assert not [r for r in records if "spoofed" in str(r.get("url"))]
    assert {r["device_id"] for r in records if r.get("ip") == b_address} == {b.device_id}


def test_a_revoked_laptops_tunnel_stops_at_once(lab: Lab) -> None:
    a, b = lab.laptops["laptop-a"], lab.laptops["laptop-b"]
    assert lab.curl(b, "http://news.test/before-revoke")[1] == 200
    said = lab.schoolgate(
        "devices",
        "revoke",
        b.device_id,
        "--as",
        "it.support",
        "--reason",
        "stolen",
        "--policy",
        str(lab.policy),
        "--var",
        str(lab.var),
    )
    assert said.returncode == 0, said.stderr
    revoked = time.monotonic()
    _wait(
        "the revoked tunnel to stop",
        lambda: lab.curl(b, "http://news.test/after-revoke")[0] != 0,
        lab,
        10,
    )
    assert time.monotonic() - revoked < 8
    peers = run(
        "ip", "netns", "exec", lab.gateway, "wg", "show", _gateway_if(lab), "allowed-ips"
    ).stdout
    assert _address(lab, a) in peers and "10.123.0.3" not in peers
    assert lab.curl(a, "http://news.test/a-unaffected")[1] == 200


def test_fail_closed_refuses_direct_web_but_lets_the_tunnel_come_back(lab: Lab) -> None:
    a = lab.laptops["laptop-a"]
    rules = run("ip", "netns", "exec", a.ns, "nft", "list", "ruleset").stdout
    assert "schoolgate_agent" in rules
    # The tunnel breaks (its interface goes): web traffic doesn't leak round it.
    run(
        "ip",
        "netns",
        "exec",
        a.ns,
        "wg-quick",
        "down",
        str(a.state / f"{a.interface}.conf"),
        timeout=30,
    )
    code, status, _ = lab.curl(a, "http://games.test/direct")
    assert code != 0 and status == 0
    code, status, _ = lab.curl(a, f"https://{WEB}/direct", "-k")
    assert code != 0 and status == 0
    # The agent's next round brings it back through the same firewall: the endpoint is
    # still reachable.
    _run_agent(lab, a)
    status_file = json.loads((a.state / "tunnel-status.json").read_text())
    assert status_file["state"] == "up", status_file
    _until(lab, a, "http://games.test/back", 200)


def test_on_site_too_the_laptop_is_known_by_its_key(lab: Lab) -> None:
    """`on_site: true`: back at school, the laptop keeps its tunnel (to the gateway's LAN
    address) and is known by its key there too; the firewall it kept off site comes off."""
    a = lab.laptops["laptop-a"]
    on_site = f"    on_site: true\n    onsite_endpoint: {GATEWAY_LAN_A}:{WG_PORT}\n"
    text = lab.policy.read_text().replace(
        "    fail_closed: true\n", "    fail_closed: true\n" + on_site
    )
    lab.policy.write_text(text)
    run("ip", "-n", a.ns, "link", "set", a.lan_if, "up")
    run("ip", "-n", a.ns, "route", "replace", "default", "via", GATEWAY_LAN_A)

    def told() -> bool:  # the device API reads the edited policy
        said = lab.agent(a, "tunnel", "setup", "--state", str(a.state), check=False)
        return said.returncode == 0 and "also on site" in said.stdout

    _wait("the policy's on_site to reach the laptop", told, lab)
    _run_agent(lab, a)
    status = json.loads((a.state / "tunnel-status.json").read_text())
    assert (status["where"], status["state"]) == ("on_site", "up"), status
    conf = (a.state / f"{a.interface}.conf").read_text()
    assert f"Endpoint = {GATEWAY_LAN_A}:{WG_PORT}" in conf
    rules = run("ip", "netns", "exec", a.ns, "nft", "list", "ruleset").stdout
    assert "schoolgate_agent" not in rules  # no fail-closed rules at school
    address = _address(lab, a)
    _report_naming(lab, a, "pupil", [address, LAN_A])  # the pupil is signed in at school too
    _until(lab, a, "http://games.test/on-site-by-key", 200)  # ks2, by key and report
    assert lab.curl(a, "http://games.test/on-site-signed-in")[1] == 200
    records = access_log(
        lab.var, lambda rs: any("on-site-signed-in" in str(r.get("url")) for r in rs)
    )
    mine = [r for r in records if "on-site-signed-in" in str(r.get("url"))]
    assert {(r["ip"], r["device_id"], r["user"]) for r in mine} == {(address, a.device_id, "pupil")}

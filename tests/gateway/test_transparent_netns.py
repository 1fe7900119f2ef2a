"""Transparent mode for real: three network namespaces made by the test.

client (10.77.1.2 a client network; 10.77.3.2 let in by the firewall but not by the policy;
10.77.2.2 neither) --veth-- gateway (IP forwarding, deploy/nftables/schoolgate.nft, mitmdump
with the gateway's add-ons in --mode transparent) --veth-- upstream (HTTP/HTTPS for the test's
hosts, UDP echoes, a DNS-over-TLS port: tests/support/netns_upstream.py).

The client has no proxy settings; names are resolved with curl --resolve. Needs root, iproute2
and nftables; without them the test is skipped and says why.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.report import CheckResult, DeviceReport
from proxy_addons.devices.enrolment import enrol
from proxy_addons.store import Store, store_url
from tests.conftest import MITMDUMP, ROOT, access_log, copy_policy

NFT_DIR = ROOT / "deploy" / "nftables"
UPSTREAM_SCRIPT = ROOT / "tests" / "support" / "netns_upstream.py"
HOSTS = ("games.test", "adult.test", "bank.test", "dns.test", "news.test")

CLIENT, NOT_IN_POLICY, OUTSIDER, ADMIN = "10.77.1.2", "10.77.3.2", "10.77.2.2", "10.77.9.2"
GATEWAY_LAN, GATEWAY_WAN = "10.77.1.1", "10.77.200.1"
WEB, SCHOOL_DNS, DOH = "10.77.200.2", "10.77.200.53", "10.77.200.9"
ADULT_WEB = "10.77.200.3"  # a blocked site's own address (adult.test: staff block adult)
# What the gateway's resolver answers (/etc/netns/<gateway>/hosts, bind-mounted over
# /etc/hosts by `ip netns exec`): a name stands for an address only if it resolves to it.
GATEWAY_HOSTS = {**{h: WEB for h in HOSTS if h != "adult.test"}, "adult.test": ADULT_WEB}
PROXY_PORT, TRANSPARENT_PORT = 8080, 8082  # inside the gateway's own namespace: no clashes
DEVICE_API_PORT, METRICS_PORT = 8081, 9464

# The nftables variables for this lab (see the top of schoolgate.nft).
LAB_DEFINES = {
    "lan_if": '"gc"',
    "wan_if": '"gu"',
    "client_nets": "{ 10.77.1.0/24, 10.77.3.0/24 }",
    "mgmt_nets": "{ 10.77.9.0/24 }",
    "school_dns": f"{{ {SCHOOL_DNS} }}",
    "proxy_port": str(PROXY_PORT),
    "transparent_port": str(TRANSPARENT_PORT),
    "wg_if": '"sgwg-lab"',  # no tunnels in this lab: the rules load and match nothing
    "tunnel_nets": "{ 10.77.64.0/24 }",
    "wg_port": "51820",
}


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces and nftables need root"
    for tool in ("ip", "nft", "curl"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (iproute2, nftables, curl)"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


def run(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}")
    return result


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """The lab's processes, last started first: asked, then told."""
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def render_nft(text: str, defines: dict[str, str]) -> str:
    """The deploy file with this network's values in its single-line `define`s."""
    for name, value in defines.items():
        text, count = re.subn(
            rf"^define {name} = .*$", f"define {name} = {value}", text, flags=re.M
        )
        assert count == 1, f"define {name} not found"
    return text


@pytest.mark.parametrize("name", ["schoolgate.nft", "schoolgate-explicit.nft"])
def test_the_deploy_rules_are_valid_nftables(name: str) -> None:
    """Both variants as shipped, and with a real school's values, pass `nft -c`."""
    path = NFT_DIR / name
    run("nft", "-c", "-f", str(path))
    defines = {k: v for k, v in LAB_DEFINES.items() if f"define {k} =" in path.read_text()}
    rendered = render_nft(path.read_text(), defines)
    result = subprocess.run(
        ["nft", "-c", "-f", "-"], input=rendered, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# -- the lab ---------------------------------------------------------------------------


def _cert_pair(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA for the "internet" and a certificate for the test's hosts, signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netns upstream CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "games.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp / "web-ca.pem", tmp / "web.pem", tmp / "web.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


PROBE = """
import errno, socket, sys
kind, src, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
s.settimeout(2)
s.bind((src, 0))
try:
    s.connect((host, port))
    if kind == "udp":
        s.send(b"ping")
        s.recv(100)
        print("answer")
    else:
        print("connected")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
except OSError as exc:
    print("unreachable" if exc.errno == errno.EHOSTUNREACH else f"error {exc.errno}")
"""


@dataclass
class Lab:
    client: str
    gateway: str
    upstream: str
    tmp: Path
    web_ca: Path
    events_file: Path
    var: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def gateway_ca(self) -> Path:
        return self.var / "ca" / "mitmproxy-ca-cert.pem"

    @property
    def gateway_log(self) -> str:
        return (self.var / "gateway.log").read_text(errors="replace")

    def curl(
        self, url: str, *args: str, source: str = CLIENT, ns: str | None = None, to: str = WEB
    ) -> tuple[int, int, str]:
        """(curl's exit code, HTTP status, body) for a request from the client namespace;
        a .test name is sent to the address `to`."""
        host = url.split("/")[2]
        cmd = ["ip", "netns", "exec", ns or self.client, "curl", "-sS", "--max-time", "8"]
        if host.endswith(".test"):
            cmd += ["--resolve", f"{host}:80:{to}", "--resolve", f"{host}:443:{to}"]
        if ns is None:
            cmd += ["--interface", source]
        cmd += ["-w", "\n%{http_code}", *args, url]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        body, _, code = result.stdout.rpartition("\n")
        return result.returncode, int(code or 0), body

    def probe(self, kind: str, host: str, port: int, source: str = CLIENT) -> str:
        cmd = ["ip", "netns", "exec", self.client, sys.executable, "-c", PROBE]
        result = run(*cmd, kind, source, host, str(port))
        return result.stdout.strip()

    def events(self) -> list[dict[str, object]]:
        if not self.events_file.exists():
            return []
        lines = self.events_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.var.glob("*.log")))

    def nft(self, *args: str) -> str:
        return run("ip", "netns", "exec", self.gateway, "nft", *args).stdout


def _wait_listening(lab: Lab, ports: set[int], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited:\n{lab.logs()}")
        out = run("ip", "netns", "exec", lab.gateway, "ss", "-Htln").stdout
        listening = {int(m) for m in re.findall(r":(\d+)\s", out)}
        if ports <= listening and lab.gateway_ca.exists():
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on {ports}:\n{lab.logs()}")


def _build(lab: Lab) -> None:
    c, g, u = lab.client, lab.gateway, lab.upstream
    for ns in (c, g, u):
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "gc", "netns", g)
    run("ip", "link", "add", "gu", "netns", g, "type", "veth", "peer", "name", "u0", "netns", u)
    for addr in (CLIENT, NOT_IN_POLICY, OUTSIDER, ADMIN):
        run("ip", "-n", c, "addr", "add", f"{addr}/24", "dev", "c0")
    for addr in (f"{GATEWAY_LAN}/24", "10.77.3.1/24", "10.77.2.1/24", "10.77.9.1/24"):
        run("ip", "-n", g, "addr", "add", addr, "dev", "gc")
    run("ip", "-n", g, "addr", "add", f"{GATEWAY_WAN}/24", "dev", "gu")
    for addr in (WEB, SCHOOL_DNS, DOH, ADULT_WEB):
        run("ip", "-n", u, "addr", "add", f"{addr}/24", "dev", "u0")
    hosts = Path("/etc/netns") / g / "hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text(
        "127.0.0.1 localhost\n" + "".join(f"{a} {h}\n" for h, a in GATEWAY_HOSTS.items())
    )
    for ns, dev in ((c, "c0"), (g, "gc"), (g, "gu"), (u, "u0")):
        run("ip", "-n", ns, "link", "set", dev, "up")
    run("ip", "-n", c, "route", "add", "default", "via", GATEWAY_LAN)
    run("ip", "netns", "exec", g, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # The firewall: the deploy file with this network's values.
    rules = lab.tmp / "schoolgate.nft"
    rules.write_text(render_nft((NFT_DIR / "schoolgate.nft").read_text(), LAB_DEFINES))
    lab.nft("-f", str(rules))
    lab.nft("add", "element", "inet", "schoolgate", "doh_resolvers", f"{{ {DOH} }}")
    lab.nft("add", "element", "inet", "schoolgate", "client_udp", "{ 123 }")  # NTP, say


def _start(lab: Lab, web_cert: Path, web_key: Path) -> None:
    upstream = subprocess.Popen(
        ["ip", "netns", "exec", lab.upstream, sys.executable, str(UPSTREAM_SCRIPT)]
        + [str(web_cert), str(web_key), str(lab.events_file), f"{WEB},{SCHOOL_DNS},{DOH}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lab.processes.append(upstream)
    assert upstream.stdout is not None
    line = upstream.stdout.readline()
    assert line.strip() == b"ready", line
    policy = copy_policy(lab.tmp)
    # Proxy sign-in for the explicit proxy (pupil: ks2); transparent clients are never asked.
    hashed = bcrypt.hashpw(b"p-pass", bcrypt.gensalt(rounds=4)).decode()
    (policy.parent / "users.htpasswd").write_text(f"pupil:{hashed}\n")
    text = policy.read_text().replace(
        "networks: {10.20.0.0/24: staff}", "networks: {10.20.0.0/24: staff, 10.77.1.0/24: staff}"
    )
    text = text.replace("identities:", "authentication: {htpasswd: users.htpasswd}\nidentities:")
    # The policy lets 10.77.1.0/24 in; 10.77.3.0/24 passes the firewall but not the gateway.
    policy.write_text(
        text + "network:\n  client_networks: [10.77.1.0/24]\n"
        "  management_networks: [10.77.9.0/24]\n"
    )
    lab.var.mkdir()
    with (lab.var / "gateway.log").open("wb") as log:
        gateway = subprocess.Popen(
            ["ip", "netns", "exec", lab.gateway, MITMDUMP]
            + ["--mode", f"regular@{PROXY_PORT}", "--mode", f"transparent@{TRANSPARENT_PORT}"]
            + ["-s", str(ROOT / "proxy_addons" / "gateway" / "chain.py")]
            + ["--set", f"confdir={lab.var / 'ca'}", "--set", f"schoolgate_policy={policy}"]
            + ["--set", f"schoolgate_var={lab.var}", "--set", "onboarding=false"]
            + ["--set", f"ssl_verify_upstream_trusted_ca={lab.web_ca}"]
            + ["--set", "schoolgate_metrics_host=0.0.0.0"]
            + ["--set", f"schoolgate_metrics_port={METRICS_PORT}", "--set", "flow_detail=1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    lab.processes.append(gateway)
    _wait_listening(lab, {PROXY_PORT, TRANSPARENT_PORT, METRICS_PORT}, gateway)
    # The admin web app with the device API, as `schoolgate web` runs it (after the gateway
    # has made the store, so the two never migrate it at once).
    with (lab.var / "web.log").open("wb") as log:
        web = subprocess.Popen(
            ["ip", "netns", "exec", lab.gateway, str(Path(MITMDUMP).parent / "schoolgate")]
            + ["web", "--policy", str(policy), "--var", str(lab.var)]
            + ["--host", "0.0.0.0", "--port", str(DEVICE_API_PORT)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    lab.processes.append(web)
    _wait_listening(lab, {DEVICE_API_PORT}, web)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("netns")
    tag = f"{os.getpid() % 100000}"
    web_ca, web_cert, web_key = _cert_pair(tmp)
    lab = Lab(f"sgc{tag}", f"sgg{tag}", f"sgu{tag}", tmp, web_ca, tmp / "events", tmp / "var")
    try:
        try:
            run("ip", "netns", "add", lab.client)
        except AssertionError as exc:
            pytest.skip(f"cannot make network namespaces here: {exc}")
        run("ip", "netns", "del", lab.client)
        _build(lab)
        _start(lab, web_cert, web_key)
        yield lab
    finally:
        stop(lab.processes)
        for ns in (lab.client, lab.gateway, lab.upstream):
            run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(Path("/etc/netns") / lab.gateway, ignore_errors=True)


# -- what a client with no proxy settings gets -------------------------------------------


def _seen(lab: Lab, **match: object) -> list[dict[str, object]]:
    return [e for e in lab.events() if all(e.get(k) == v for k, v in match.items())]


def test_an_allowed_site_over_http_arrives_unchanged_through_the_gateway(lab: Lab) -> None:
    code, status, body = lab.curl("http://games.test/play?level=2")
    assert (code, status) == (0, 200)
    # games.test is blocked by default (early_years) but the network maps to staff.
    assert json.loads(body) == {
        "upstream": "netns",
        "host": "games.test",
        "path": "/play?level=2",
        "address": WEB,
    }
    # It went through mitmproxy, which got the original destination from the kernel.
    assert f"{CLIENT}:" in lab.gateway_log and f"GET http://{WEB}/play?level=2" in lab.gateway_log
    # The gateway itself made the upstream connection (its own address), not a loop.
    hits = _seen(lab, what="http", host="games.test")
    assert hits and {e["peer"] for e in hits} == {GATEWAY_WAN}


def test_a_blocked_site_over_http_gets_the_block_page(lab: Lab) -> None:
    code, status, body = lab.curl("http://adult.test/", to=ADULT_WEB)
    assert (code, status) == (0, 403)
    assert "Test Primary" in body and "adult.test" in body
    assert not _seen(lab, host="adult.test")  # never reached the site


def test_https_blocked_by_sni_and_the_block_page_for_devices_that_trust_the_ca(lab: Lab) -> None:
    # Trusting the school's CA: allowed sites are decrypted and pass ...
    code, status, body = lab.curl("https://games.test/", "--cacert", str(lab.gateway_ca))
    assert (code, status) == (0, 200)
    assert json.loads(body)["host"] == "games.test"
    assert _seen(lab, what="https", host="games.test")
    # ... and blocked ones are decrypted and get the block page.
    code, status, body = lab.curl(
        "https://adult.test/", "--cacert", str(lab.gateway_ca), to=ADULT_WEB
    )
    assert (code, status) == (0, 403), body
    assert "Test Primary" in body
    # Trusting only the real site's CA: the TLS handshake fails (curl 60: certificate).
    code, status, _ = lab.curl("https://adult.test/", "--cacert", str(lab.web_ca), to=ADULT_WEB)
    assert code == 60 and status == 0
    assert not _seen(lab, sni="adult.test") and not _seen(lab, host="adult.test")


def test_a_refused_ca_is_remembered_per_site_and_passes_that_site_through(lab: Lab) -> None:
    """After the handshake above failed for adult.test, that site (only) is decided on its
    name (decryption.untrusted_clients: host_only): a pinned app, or a client opting out on
    purpose, can't switch off decryption for everything the device does; and the device
    had trusted the school's CA before, so the IT provider is told."""
    # A blocked host is refused on its SNI alone: the connection closes in the handshake.
    code, status, _ = lab.curl(
        "https://adult.test/again", "--cacert", str(lab.web_ca), to=ADULT_WEB
    )
    assert code == 35 and status == 0  # curl 35: TLS connect error
    assert not _seen(lab, sni="adult.test")
    # Another site is still decrypted: refusing the CA there fails once ...
    code, status, body = lab.curl("https://games.test/", "--cacert", str(lab.web_ca))
    assert code == 60 and status == 0
    # ... and then that site passes through, decided by SNI.
    code, status, body = lab.curl("https://games.test/", "--cacert", str(lab.web_ca))
    assert (code, status) == (0, 200)
    assert json.loads(body)["host"] == "games.test"
    # Banking is host-only for everyone: passed through with the site's own certificate.
    code, status, body = lab.curl("https://bank.test/", "--cacert", str(lab.web_ca))
    assert (code, status) == (0, 200)
    assert json.loads(body)["host"] == "bank.test"
    assert _seen(lab, what="sni", sni="bank.test")
    # A third site is still decrypted for this device.
    code, status, body = lab.curl("https://news.test/x", "--cacert", str(lab.gateway_ca))
    assert (code, status) == (0, 200)
    assert json.loads(body)["path"] == "/x"
    assert "Alert raised: ca_refused" in lab.gateway_log


def test_quic_is_refused_so_browsers_fall_back_to_tcp(lab: Lab) -> None:
    assert lab.probe("udp", WEB, 123) == "answer"  # the school allowed NTP: the path works
    assert lab.probe("udp", WEB, 443) == "refused"
    assert not _seen(lab, what="udp", port=443)


def test_dns_only_to_the_school_resolvers_and_no_dns_over_tls(lab: Lab) -> None:
    assert lab.probe("udp", SCHOOL_DNS, 53) == "answer"
    assert lab.probe("udp", WEB, 53) == "unreachable"
    assert lab.probe("tcp", WEB, 853) == "unreachable"
    assert not _seen(lab, what="udp", port=53, local=WEB)
    assert not _seen(lab, what="tcp", port=853)


def test_dns_over_https_resolvers_are_blocked_by_address(lab: Lab) -> None:
    code, _, _ = lab.curl("https://dns.test/dns-query", "--resolve", f"dns.test:443:{DOH}")
    assert code == 7  # could not connect: rejected, not redirected to the proxy
    assert lab.probe("tcp", DOH, 443) == "unreachable"
    assert not _seen(lab, host="dns.test") and not _seen(lab, sni="dns.test")


def test_clients_outside_the_client_networks_are_refused(lab: Lab) -> None:
    # Outside the firewall's client networks: neither redirected nor forwarded ...
    code, _, _ = lab.curl("http://games.test/outsider", source=OUTSIDER)
    assert code == 7
    # ... and the explicit proxy port is closed to it, while it serves a client.
    proxy = f"http://{GATEWAY_LAN}:{PROXY_PORT}"
    code, _, _ = lab.curl("http://games.test/outsider", "-x", proxy, source=OUTSIDER)
    assert code == 7
    # (The gateway has no DNS here: name the address, the filter decides on the Host header.)
    explicit = (f"http://{WEB}/explicit", "-H", "Host: bank.test", "-x", proxy)
    assert lab.curl(*explicit)[1] == 407  # the explicit proxy asks for a sign-in ...
    code, status, _ = lab.curl(*explicit, "--proxy-user", "pupil:p-pass")
    assert (code, status) == (0, 403)  # ... and filters as the user (ks2: no banking)
    code, status, _ = lab.curl("http://bank.test/transparent")
    assert (code, status) == (0, 200)  # transparent: no sign-in; the network's profile (staff)
    # Let in by the firewall but not by the policy: the gateway itself refuses.
    code, status, _ = lab.curl("http://games.test/not-in-policy", source=NOT_IN_POLICY)
    assert code in (52, 56) and status == 0  # empty reply / connection reset
    code, status, _ = lab.curl("http://games.test/not-in-policy", "-x", proxy, source=NOT_IN_POLICY)
    assert code in (52, 56) and status == 0
    assert "outside the school's client networks" in lab.gateway_log
    assert not [e for e in _seen(lab, host="games.test") if "outsider" in str(e.get("path"))]
    assert not [e for e in _seen(lab, host="games.test") if "not-in-policy" in str(e.get("path"))]


def test_the_gateways_own_traffic_is_neither_redirected_nor_filtered(lab: Lab) -> None:
    code, status, body = lab.curl("http://adult.test/from-gateway", ns=lab.gateway, to=ADULT_WEB)
    assert (code, status) == (0, 200)
    assert json.loads(body)["path"] == "/from-gateway"
    assert "from-gateway" not in lab.gateway_log
    # Only the clients' web traffic was redirected (the counter on the redirect rule).
    chain = lab.nft("list", "chain", "inet", "schoolgate", "prerouting")
    packets = re.search(rf"counter packets (\d+) bytes \d+ redirect to :{TRANSPARENT_PORT}", chain)
    assert packets and int(packets.group(1)) > 0


def test_each_port_answers_only_the_networks_it_serves(lab: Lab) -> None:
    probe = lab.probe
    # The proxy: client networks only; the transparent port only for redirected traffic.
    assert probe("tcp", GATEWAY_LAN, PROXY_PORT) == "connected"
    assert probe("tcp", GATEWAY_LAN, PROXY_PORT, source=ADMIN) == "refused"
    assert probe("tcp", GATEWAY_LAN, TRANSPARENT_PORT) == "refused"
    # The device API: the devices on client networks and the management network.
    assert probe("tcp", GATEWAY_LAN, DEVICE_API_PORT) == "connected"
    assert probe("tcp", GATEWAY_LAN, DEVICE_API_PORT, source=ADMIN) == "connected"
    assert probe("tcp", GATEWAY_LAN, DEVICE_API_PORT, source=OUTSIDER) == "refused"
    # Metrics (and SSH): the management network only.
    assert probe("tcp", GATEWAY_LAN, METRICS_PORT, source=ADMIN) == "connected"
    assert probe("tcp", GATEWAY_LAN, METRICS_PORT) == "refused"
    assert probe("tcp", GATEWAY_LAN, METRICS_PORT, source=OUTSIDER) == "refused"
    code, status, body = lab.curl(f"http://{GATEWAY_LAN}:{METRICS_PORT}/metrics", source=ADMIN)
    assert (code, status) == (0, 200) and "schoolgate_" in body


def test_the_admin_app_answers_only_the_management_network(lab: Lab) -> None:
    """Second lock behind the firewall: `schoolgate web` keeps its admin pages to the policy's
    network.management_networks; the device API stays open to the school's devices."""
    web = f"http://{GATEWAY_LAN}:{DEVICE_API_PORT}"
    code, status, body = lab.curl(f"{web}/login", source=ADMIN)
    assert (code, status) == (0, 200), body
    code, status, body = lab.curl(f"{web}/login")
    assert (code, status) == (0, 403) and "management network" in body
    code, status, body = lab.curl(f"{web}/api/v1/report", "-X", "POST", "--json", "{}")
    assert (code, status) == (0, 401) and "enrol first" in body


def test_identity_comes_from_the_device_agents_report(lab: Lab) -> None:
    """Last: it changes who 10.77.1.2 is. Staff by network, then the pupil signed in there.
    The report goes to the device API from the client's own address, as the agent sends it;
    it speaks for that address only, not for the others it lists."""
    assert lab.curl("http://bank.test/")[1] == 200  # staff: banking allowed
    assert lab.curl("http://games.test/")[1] == 200  # as staff, with no user (checked below)
    store = Store.open(store_url(lab.var))
    try:
        now = datetime.datetime.now(datetime.UTC)
        device_id, token = enrol(store, "s", b"s", "suite-pc-07", now)
    finally:
        store.dispose()
    report = DeviceReport(
        device_id=device_id,
        hostname="suite-pc-07",
        os_name="linux",
        os_version="12",
        agent_version="0.1.0",
        generated_at=now,
        results=(CheckResult("disk_encryption", "pass", "root is on LUKS"),),
        user="pupil",
        ips=(CLIENT, NOT_IN_POLICY, ADMIN),  # a device may list any address it likes
    )
    api = f"http://{GATEWAY_LAN}:{DEVICE_API_PORT}/api/v1/report"
    auth = f"Authorization: Bearer {token}"
    code, status, body = lab.curl(api, "-H", auth, "--json", json.dumps(report.to_json()))
    assert (code, status) == (0, 202), body
    answer = json.loads(body)
    assert answer["address"] == CLIENT and answer["ignored_ips"] == [NOT_IN_POLICY, ADMIN]
    deadline = time.monotonic() + 15
    while (result := lab.curl("http://bank.test/"))[1] != 403:  # ks2 blocks banking
        assert time.monotonic() < deadline, f"the device report was not used: {result}"
        time.sleep(0.3)
    assert lab.curl("http://games.test/")[1] == 200  # ks2 allows games
    # The access log names the user the report put at the address, and their profile.
    pupil = {"host": "bank.test", "user": "pupil", "decision": "block"}
    records = access_log(lab.var, lambda recs: bool(_matching(recs, **pupil)), timeout=5)
    blocked = _matching(records, **pupil)
    assert blocked, "no access record for the pupil"
    assert {(r["ip"], r["profile"]) for r in blocked} == {(CLIENT, "ks2")}
    assert {r["profile"] for r in _matching(records, host="games.test", user=None)} == {"staff"}


def _matching(records: list[dict[str, Any]], **match: object) -> list[dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def test_dns_wpad_on_port_80_of_the_gateway_gets_the_pac_file(lab: Lab) -> None:
    """Clients that find WPAD by DNS fetch http://wpad.<domain>/wpad.dat on port 80 of the
    gateway's own address: the firewall sends that to the proxy port, which serves it."""
    code, status, body = lab.curl(f"http://{GATEWAY_LAN}/wpad.dat", "-H", "Host: wpad.school.lan")
    assert (code, status) == (0, 200), body
    assert "function FindProxyForURL" in body and "PROXY " in body


# -- a blocked address under an allowed name: the destination decides --------------------


@pytest.mark.parametrize(
    "url, args",
    [
        ("http://games.test/", ()),  # Host: games.test, which resolves elsewhere
        ("http://schoolgate.local/", ()),  # the portal's name on someone else's address
        (f"http://{ADULT_WEB}/", ("-H", "Host: games.test")),
        ("https://games.test/", ("--cacert", "CA")),  # SNI and Host games.test, decrypted
        ("https://games.test/", ("-k",)),  # ... by a device that takes any certificate
        (f"https://{ADULT_WEB}/", ("-k", "-H", "Host: games.test")),  # no SNI
        ("https://games.test/", ("--cacert", "WEB_CA")),  # without the CA: passed through?
        ("https://adult.test/", ("-k", "-H", "Host: games.test")),
    ],
)
def test_a_blocked_address_is_not_reached_under_another_name(
    lab: Lab, url: str, args: tuple[str, ...]
) -> None:
    """Transparent mode: the kernel's original destination is a blocked site's address;
    whatever name the client gives, nothing comes back from that address."""
    lab.curl("http://adult.test/learn", to=ADULT_WEB)  # the gateway resolves adult.test
    swap = {"CA": str(lab.gateway_ca), "WEB_CA": str(lab.web_ca)}
    code, status, body = lab.curl(url, *(swap.get(a, a) for a in args), to=ADULT_WEB)
    assert '"upstream": "netns"' not in body, body
    assert status != 200 or code != 0, body


def test_a_name_at_its_own_address_is_decided_by_name(lab: Lab) -> None:
    """The control: games.test at the address the gateway's resolver gives for it."""
    for url, args in (("http://games.test/x", ()), ("https://games.test/x", ("-k",))):
        code, status, body = lab.curl(url, *args)
        assert (code, status) == (0, 200), body
        assert json.loads(body)["address"] == WEB


SPLIT_GET = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=3)
s.sendall(b"GET /split")  # no line end yet: mitmproxy alone would relay it as raw TCP
time.sleep(0.3)
s.sendall(b" HTTP/1.1\\r\\nHost: games.test\\r\\nConnection: close\\r\\n\\r\\n")
out = b""
try:
    while chunk := s.recv(65536):
        out += chunk
except OSError:
    pass
sys.stdout.write(out.decode("utf-8", "replace"))
"""


def test_bytes_mitmproxy_takes_for_raw_tcp_reach_no_blocked_address(lab: Lab) -> None:
    """A request line in two writes, to a blocked site's address: decided as HTTP."""
    lab.curl("http://adult.test/learn", to=ADULT_WEB)  # the gateway resolves adult.test
    cmd = ["ip", "netns", "exec", lab.client, sys.executable, "-c", SPLIT_GET, ADULT_WEB]
    out = run(*cmd, check=False).stdout
    assert '"upstream": "netns"' not in out, out
    assert out.startswith("HTTP/1.1 403"), out[:300]
    control = run(*cmd[:-1], WEB, check=False).stdout  # games.test at its own address
    assert '"upstream": "netns"' in control and f'"address": "{WEB}"' in control, control

"""Throughput through a device's WireGuard tunnel against transparent mode on site.

    sudo .venv/bin/python bench/tunnel_bench.py [--mb 100] [--rounds 3] [--seconds 5]
        [--concurrency 20]

Builds four network namespaces, as tests/gateway/test_transparent_netns.py does:

    school client (10.78.1.2) --LAN veth--  gateway  --veth-- upstream web server (10.78.200.2)
    home device (10.78.50.2)  --"internet" veth (the gateway's public address 10.78.50.1)--'
        and through it a WireGuard tunnel: device 10.78.64.2 <-> gateway 10.78.64.1

The gateway runs a real mitmdump with the gateway's add-ons in transparent mode behind the
deploy firewall (deploy/nftables/schoolgate.nft with its tunnel variables wg_if, tunnel_nets
and wg_port set). The home device is enrolled and its key bound to its tunnel address in the
gateway's store (proxy_addons/devices/tunnels.py), as enrolment does; the gateway's end of the
tunnel is brought up by the product's own `schoolgate tunnel up` (the kernel's WireGuard where
there is one, else `wireguard-go`: this machine has no kernel module, and the kernel's costs
less CPU), the device's end with `wireguard-go`, `wg` and `ip`. The upstream (this file, `--serve`)
serves a download of `--mb` megabytes and a 1 KB page on 80/443 (redirected to the proxy)
and 8000/8443 (let through by the firewall's client_tcp set, so not proxied).

It measures, for each of
  (a) on site, LAN, through the proxy (transparent mode as today);
  (b) off site, through the tunnel and the proxy (what a school laptop at home gets);
  (c) off site, through the tunnel, no proxy (what WireGuard alone costs);
  (d) on site, LAN, no proxy (the gateway only forwarding: the floor);
the download rate of one HTTP and one HTTPS download (MB/s, curl; HTTPS through the proxy is
decrypted and re-encrypted, as for a device that trusts the school's CA), the requests/s of
small HTTP pages (`hey`, keep-alive, every proxied request decided and logged), and the CPU
each process used (psutil: mitmdump, wireguard-go at each end, the upstream) per GB moved
and per request. Medians of `--rounds` runs, the paths taken in turn each round so that a
noisy moment on a shared machine doesn't land on one path only. The kernel's own work
(veth, nftables, TCP) counts in no process. Prints figures; checks nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from agent.tunnel.config import new_private_key, public_key  # noqa: E402
from proxy_addons.core.policy.model import Tunnel  # noqa: E402
from proxy_addons.devices.enrolment import enrol  # noqa: E402
from proxy_addons.devices.tunnels import bind, gateway_public_key  # noqa: E402
from proxy_addons.store import Store, store_url  # noqa: E402
from tests.conftest import MITMDUMP, copy_policy  # noqa: E402
from tests.gateway.test_transparent_netns import _cert_pair, render_nft  # noqa: E402

HOST = "news.test"  # unlisted: allowed for staff, so every path serves the same bytes
CLIENT, GATEWAY_LAN = "10.78.1.2", "10.78.1.1"
HOME, GATEWAY_PUBLIC = "10.78.50.2", "10.78.50.1"
WEB, GATEWAY_WAN, SCHOOL_DNS = "10.78.200.2", "10.78.200.1", "10.78.200.53"
POOL, GATEWAY_TUNNEL = "10.78.64.0/24", "10.78.64.1"
WG_PORT, PROXY_PORT, TRANSPARENT_PORT = 51820, 8080, 8082
RAW_HTTP, RAW_HTTPS = 8000, 8443  # not redirected: forwarded as the school's own exception
PAGE = b"<html><body>" + b"lesson " * 140 + b"</body></html>"  # about 1 KB
BLOCK = bytes(range(256)) * 4096  # 1 MiB of a byte pattern


# -- the upstream, run inside its namespace (`--serve`) -----------------------------------


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode("latin-1")
            query = parse_qs(urlsplit(target).query)
            bulk = target.startswith("/bulk")
            size = int(query.get("size", ["0"])[0]) if bulk else len(PAGE)
            kind = b"application/octet-stream" if bulk else b"text/html"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (kind, size)
            )
            if not bulk:
                writer.write(PAGE)
            view, left = memoryview(BLOCK), size
            while left:
                writer.write(view[: min(left, len(BLOCK))])
                left -= min(left, len(BLOCK))
                await writer.drain()
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def _serve(address: str, cert: str, key: str) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    for port, context in ((80, None), (RAW_HTTP, None), (443, tls), (RAW_HTTPS, tls)):
        await asyncio.start_server(_answer, address, port, ssl=context, backlog=1024)
    print("ready", flush=True)
    await asyncio.Event().wait()


# -- the lab ------------------------------------------------------------------------------


def run(*cmd: str, check: bool = True) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


@dataclass
class Lab:
    tag: str
    tmp: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    daemons: dict[str, psutil.Process] = field(default_factory=dict)  # started by a command

    def ns(self, role: str) -> str:
        return f"sgb{role}{self.tag}"

    def wg_if(self, role: str) -> str:
        # Different names at each end: wireguard-go's control socket (/var/run/wireguard/
        # <name>.sock) is one file system for every namespace.
        return f"sgwg{role}{self.tag}"

    @property
    def var(self) -> Path:
        return self.tmp / "var"

    def start(self, role: str, ns: str, *cmd: str, log: str | None = None) -> None:
        out = (self.tmp / log).open("wb") if log else subprocess.DEVNULL
        self.processes[role] = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )


def build_network(lab: Lab) -> None:
    c, h, g, u = (lab.ns(r) for r in "chgu")
    for ns in (c, h, g, u):
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
    for ns, dev, peer_ns, peer, mine, theirs in (
        (c, "c0", g, "gc", f"{CLIENT}/24", f"{GATEWAY_LAN}/24"),
        (h, "h0", g, "gh", f"{HOME}/24", f"{GATEWAY_PUBLIC}/24"),
        (u, "u0", g, "gu", f"{WEB}/24", f"{GATEWAY_WAN}/24"),
    ):
        run("ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", peer,
            "netns", peer_ns)  # fmt: skip
        run("ip", "-n", ns, "addr", "add", mine, "dev", dev)
        run("ip", "-n", peer_ns, "addr", "add", theirs, "dev", peer)
        run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", peer_ns, "link", "set", peer, "up")
    run("ip", "-n", u, "addr", "add", f"{SCHOOL_DNS}/24", "dev", "u0")
    run("ip", "-n", c, "route", "add", "default", "via", GATEWAY_LAN)
    run("ip", "netns", "exec", g, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    hosts = Path("/etc/netns") / g / "hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text(f"127.0.0.1 localhost\n{WEB} {HOST}\n")
    defines = {
        "lan_if": '"gc"',
        "wan_if": '"gu"',
        "client_nets": "{ 10.78.1.0/24 }",
        "wg_if": f'"{lab.wg_if("g")}"',
        "tunnel_nets": f"{{ {POOL} }}",
        "wg_port": str(WG_PORT),
        "mgmt_nets": "{ 10.78.9.0/24 }",
        "school_dns": f"{{ {SCHOOL_DNS} }}",
        "proxy_port": str(PROXY_PORT),
        "transparent_port": str(TRANSPARENT_PORT),
    }
    rules = lab.tmp / "schoolgate.nft"
    nft = (ROOT / "deploy" / "nftables" / "schoolgate.nft").read_text()
    rules.write_text(render_nft(nft, defines))
    run("ip", "netns", "exec", g, "nft", "-f", str(rules))
    run("ip", "netns", "exec", g, "nft", "add", "element", "inet", "schoolgate", "client_tcp",
        f"{{ {RAW_HTTP}, {RAW_HTTPS} }}")  # fmt: skip


def start_upstream(lab: Lab, cert: Path, key: Path) -> None:
    lab.start("upstream", lab.ns("u"), sys.executable, __file__, "--serve", WEB, str(cert),
              str(key), log="upstream.log")  # fmt: skip
    deadline = time.monotonic() + 20
    while "ready" not in (lab.tmp / "upstream.log").read_text():
        if time.monotonic() > deadline or lab.processes["upstream"].poll() is not None:
            raise RuntimeError(
                "the upstream did not start: " + (lab.tmp / "upstream.log").read_text()
            )
        time.sleep(0.1)


def bench_policy(lab: Lab) -> Path:
    """The test policy; the school LAN and the tunnel pool both staff, so both paths filter
    alike; devices.tunnel as a school would write it."""
    policy = copy_policy(lab.tmp)
    text = policy.read_text().replace(
        "networks: {10.20.0.0/24: staff}",
        f"networks: {{10.20.0.0/24: staff, 10.78.1.0/24: staff, {POOL}: staff}}",
    )
    policy.write_text(
        text + "network:\n  client_networks: [10.78.1.0/24]\n"
        "  management_networks: [10.78.9.0/24]\n"
        f"devices:\n  tunnel:\n    pool: {POOL}\n    endpoint: {GATEWAY_PUBLIC}:{WG_PORT}\n"
        f"    interface: {lab.wg_if('g')}\n"
    )
    return policy


def start_gateway(lab: Lab, policy: Path) -> None:
    lab.var.mkdir()
    lab.start("mitmdump", lab.ns("g"), MITMDUMP,
              "--mode", f"regular@{PROXY_PORT}", "--mode", f"transparent@{TRANSPARENT_PORT}",
              "-s", str(ROOT / "proxy_addons" / "gateway" / "chain.py"),
              "--set", f"confdir={lab.var / 'ca'}", "--set", f"schoolgate_policy={policy}",
              "--set", f"schoolgate_var={lab.var}", "--set", "onboarding=false",
              "--set", "ssl_insecure=true", "--set", "schoolgate_metrics_port=0",
              "--set", "termlog_verbosity=error", log="gateway.log")  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        listening = run("ip", "netns", "exec", lab.ns("g"), "ss", "-Htln")
        if f":{TRANSPARENT_PORT} " in listening and (lab.var / "ca").exists():
            return
        if time.monotonic() > deadline or lab.processes["mitmdump"].poll() is not None:
            raise RuntimeError(
                "the gateway did not start: " + (lab.var / "gateway.log").read_text()
            )
        time.sleep(0.2)


def wireguard_up(lab: Lab, role: str, private: str, address: str, peer: list[str]) -> None:
    """The device's end: wireguard-go in the foreground (so psutil sees its CPU), configured
    with `wg` and `ip` as wg-quick would."""
    ns, name = lab.ns(role), lab.wg_if(role)
    lab.start(f"wireguard-go ({role})", ns, "wireguard-go", "-f", name, log=f"wg-{role}.log")
    deadline = time.monotonic() + 20
    while run("ip", "-n", ns, "link", "show", name, check=False) == "":
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"wireguard-go made no {name}: " + (lab.tmp / f"wg-{role}.log").read_text()
            )
        time.sleep(0.1)
    key = lab.tmp / f"{role}.key"
    key.write_text(private + "\n")
    key.chmod(0o600)
    run("ip", "netns", "exec", ns, "wg", "set", name, "private-key", str(key), *peer)
    run("ip", "-n", ns, "addr", "add", address, "dev", name)
    run("ip", "-n", ns, "link", "set", name, "up")


def tunnel_up(lab: Lab, policy: Path) -> None:
    """Enrol the home device and bind its key, bring the gateway's end up with the product's
    own `schoolgate tunnel up`, then the device's end."""
    device_key = new_private_key()
    tunnel = Tunnel(pool=ipaddress.IPv4Network(POOL), endpoint=GATEWAY_PUBLIC)
    store = Store.open(store_url(lab.var))
    try:
        now = datetime.datetime.now(datetime.UTC)
        device_id, _ = enrol(store, "s", b"s", "laptop-at-home", now)
        address = bind(store, tunnel, device_id, public_key(device_key), now, "bench").address
    finally:
        store.dispose()
    schoolgate = str(Path(MITMDUMP).parent / "schoolgate")
    said = run("ip", "netns", "exec", lab.ns("g"), schoolgate, "tunnel", "up",
               "--policy", str(policy), "--var", str(lab.var))  # fmt: skip
    print(f"gateway: {said.strip()}")
    name = lab.wg_if("g")
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "wireguard-go" and name in (proc.info["cmdline"] or []):
            lab.daemons["wireguard-go (g)"] = proc  # kernel WireGuard: no process to watch
    gateway_key = gateway_public_key(tunnel, lab.var)
    assert gateway_key is not None, "schoolgate tunnel up wrote no public key"
    wireguard_up(lab, "h", device_key, f"{address}/32",
                 ["peer", gateway_key, "endpoint", f"{GATEWAY_PUBLIC}:{WG_PORT}",
                  "allowed-ips", "0.0.0.0/0", "persistent-keepalive", "25"])  # fmt: skip
    run("ip", "-n", lab.ns("h"), "route", "add", "default", "dev", lab.wg_if("h"))


# -- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    label: str
    ns: str  # the namespace the client runs in: "c" (school) or "h" (home)
    proxied: bool


PATHS = (
    Route("(a) on site, LAN, proxy", "c", True),
    Route("(b) off site, tunnel, proxy", "h", True),
    Route("(c) off site, tunnel, no proxy", "h", False),
    Route("(d) on site, LAN, no proxy", "c", False),
)


@dataclass
class Sample:
    value: float  # MB/s or requests/s
    cpu: dict[str, float]  # process -> CPU seconds per GB (downloads) or ms per request


def cpu_seconds(lab: Lab) -> dict[str, float]:
    out = {}
    pids = {role: proc.pid for role, proc in lab.processes.items()}
    pids.update({role: proc.pid for role, proc in lab.daemons.items()})
    for role, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        out[role] = times.user + times.system
    return out


def download(lab: Lab, path: Route, scheme: str, mb: int) -> Sample:
    port = (
        (80 if scheme == "http" else 443)
        if path.proxied
        else (RAW_HTTP if scheme == "http" else RAW_HTTPS)
    )
    ca = lab.var / "ca" / "mitmproxy-ca-cert.pem" if path.proxied else lab.tmp / "web-ca.pem"
    size = mb * 1_000_000
    before = cpu_seconds(lab)
    out = run("ip", "netns", "exec", lab.ns(path.ns), "curl", "-sS", "-o", "/dev/null",
              "--max-time", "300", "--resolve", f"{HOST}:{port}:{WEB}", "--cacert", str(ca),
              "-w", "%{http_code} %{size_download} %{speed_download}",
              f"{scheme}://{HOST}:{port}/bulk?size={size}")  # fmt: skip
    after = cpu_seconds(lab)
    code, got, speed = out.split()
    if code != "200" or int(got) != size:
        raise RuntimeError(f"{path.label} {scheme}: HTTP {code}, {got} of {size} bytes")
    gb = size / 1e9
    return Sample(float(speed) / 1e6, {k: (after[k] - before.get(k, 0)) / gb for k in after})


def pages(lab: Lab, path: Route, seconds: int, concurrency: int) -> Sample:
    port = 80 if path.proxied else RAW_HTTP
    url = f"http://{WEB}:{port}/page"
    hey = ["ip", "netns", "exec", lab.ns(path.ns), "hey", "-c", str(concurrency), "-host", HOST]
    run(*hey, "-z", "1s", url)  # warm up: connections, the gateway's caches
    before = cpu_seconds(lab)
    out = run(*hey, "-z", f"{seconds}s", "-t", "20", url)
    after = cpu_seconds(lab)
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    total = sum(codes.values())
    if not total or codes.get(200, 0) != total:
        raise RuntimeError(f"{path.label} pages: {codes or out[-400:]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Sample(rps, {k: 1000 * (after[k] - before.get(k, 0)) / total for k in after})


def median(samples: list[Sample]) -> Sample:
    keys = sorted({k for s in samples for k in s.cpu})
    cpu = {k: statistics.median(s.cpu.get(k, 0.0) for s in samples) for k in keys}
    return Sample(statistics.median(s.value for s in samples), cpu)


def report(results: dict[tuple[str, str], list[Sample]]) -> None:
    kinds = ("HTTP MB/s", "HTTPS MB/s", "pages/s")
    print(f"\nmedians{'':<26}" + "".join(f"{k:>12}" for k in kinds))
    for path in PATHS:
        row = [median(results[(path.label, k)]).value for k in kinds]
        print(f"  {path.label:<31}" + "".join(f"{v:>12.1f}" for v in row))
    print("\nCPU per process (median): s per GB downloaded (HTTP / HTTPS), ms per page")
    for path in PATHS:
        cells = []
        for role in ("mitmdump", "wireguard-go (g)", "wireguard-go (h)", "upstream"):
            per = [median(results[(path.label, k)]).cpu.get(role, 0.0) for k in kinds]
            if any(v >= 0.005 for v in per):
                cells.append(f"{role} {per[0]:.1f} / {per[1]:.1f} s, {per[2]:.2f} ms")
        print(f"  {path.label:<31} " + "; ".join(cells))
    a, b, c = (median(results[(p.label, "HTTPS MB/s")]).value for p in PATHS[:3])
    print(f"\nHTTPS download, off site through the tunnel and the proxy: {b / a:.0%} of on site")
    print(f"  and {b / c:.0%} of the tunnel without the proxy (what the proxy costs in the tunnel)")
    print(f"  in Mbit/s: (a) {a * 8:.0f}, (b) {b * 8:.0f}, (c) {c * 8:.0f}")
    wg = median(results[(PATHS[1].label, "HTTPS MB/s")]).cpu.get("wireguard-go (g)", 0.0)
    print(
        f"The gateway's wireguard-go: {wg:.1f} CPU s per GB, {wg * 0.0125:.0%} of one core "
        "for every 100 Mbit/s of devices' downloads"
    )


def measure(lab: Lab, opts: argparse.Namespace) -> None:
    results: dict[tuple[str, str], list[Sample]] = {}
    for round_no in range(1, opts.rounds + 1):
        for path in PATHS:
            got = {
                "HTTP MB/s": download(lab, path, "http", opts.mb),
                "HTTPS MB/s": download(lab, path, "https", opts.mb),
                "pages/s": pages(lab, path, opts.seconds, opts.concurrency),
            }
            for kind, sample in got.items():
                results.setdefault((path.label, kind), []).append(sample)
            figures = "  ".join(f"{k} {s.value:7.1f}" for k, s in got.items())
            print(f"round {round_no}  {path.label:<31}{figures}", flush=True)
    report(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=100, help="size of each download")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="of small pages per run")
    parser.add_argument("--concurrency", type=int, default=20, help="connections for pages")
    parser.add_argument(
        "--serve", nargs=3, metavar=("ADDRESS", "CERT", "KEY"), help=argparse.SUPPRESS
    )
    opts = parser.parse_args()
    if opts.serve:
        asyncio.run(_serve(*opts.serve))
        return 0
    if os.geteuid() != 0:
        print("bench needs root (network namespaces, nftables, WireGuard)")
        return 2
    missing = [t for t in ("ip", "nft", "curl", "hey", "wg", "wireguard-go") if not shutil.which(t)]
    if missing:
        tools = "iproute2 nftables curl hey wireguard-tools wireguard-go"
        print(f"bench needs {', '.join(missing)} (Debian packages: {tools})")
        return 2
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()}")
    print(f"{opts.mb} MB downloads (one at a time), 1 KB pages with {opts.concurrency} "
          f"connections for {opts.seconds} s; {opts.rounds} rounds\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(f"{os.getpid() % 100000}", Path(tmp))
        try:
            _, cert, key = _cert_pair(lab.tmp)
            build_network(lab)
            start_upstream(lab, cert, key)
            policy = bench_policy(lab)
            start_gateway(lab, policy)
            tunnel_up(lab, policy)
            measure(lab, opts)
        finally:
            for proc in reversed(lab.processes.values()):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            for daemon in lab.daemons.values():
                if daemon.is_running():
                    daemon.terminate()
            for role in "chgu":
                run("ip", "netns", "del", lab.ns(role), check=False)
            shutil.rmtree(Path("/etc/netns") / lab.ns("g"), ignore_errors=True)
    print(f"\nload average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

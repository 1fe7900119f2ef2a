"""Throughput through the proxy: bare mitmdump, the gateway, and 1, 2 and N workers.

    .venv/bin/python bench/throughput_bench.py [--seconds 8] [--rounds 3] [--workers-max N]

Runs `hey` (Debian package `hey`) against a fast local upstream on loopback, through:
  - plain mitmdump (no add-ons), the baseline the target names;
  - plain mitmdump with the gateway's hook dispatch (bench/lean_dispatch.py): mitmproxy
    made faster the way `schoolgate run` makes it, so the gateway's add-ons' own cost shows;
  - the gateway (`schoolgate run`, example policy, store and access log) with 1 worker;
  - the gateway with 2 ... N workers sharing the port (`--workers`);
for plain HTTP (every request decided and logged) and for host-name-only HTTPS
(CONNECT decided on the host name, then passed through), all in one run. Prints
requests/s, p50 and p99 latency and the ratios against the targets: the add-ons cost
at most 10% of bare mitmdump's throughput; workers scale nearly linearly. Also the
proxy's own CPU time per request (all its processes, psutil): where `hey` takes cores
the workers could use (a 2-core machine), requests per second can't show linear scaling,
but equal CPU per request for 1 and N workers says each worker costs what one alone does,
so throughput grows with the cores there are. Checks nothing: the figures depend on the
machine and on `hey` sharing its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BODY = b"<html><body>" + b"lesson " * 120 + b"</body></html>"  # about 1 KB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a fast upstream: asyncio, keep-alive, one fixed page ------------------------------------


async def _serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
        + str(len(BODY)).encode()
        + b"\r\n\r\n"
    )
    try:
        while True:
            request = await reader.readuntil(b"\r\n\r\n")
            if not request:
                break
            writer.write(head + BODY)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def _self_signed(folder: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = time.time()
    import datetime as dt

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(now - 3600, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )
    (folder / "up.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "up.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "up.pem", folder / "up.key")
    return context


def start_upstream(folder: Path) -> tuple[int, int]:
    """Plain and TLS upstream ports, served from a thread of their own process."""
    http_port, https_port = free_port(), free_port()
    tls = _self_signed(folder)
    ready = threading.Event()

    async def main() -> None:
        await asyncio.start_server(_serve_client, "127.0.0.1", http_port, backlog=1024)
        await asyncio.start_server(_serve_client, "127.0.0.1", https_port, ssl=tls, backlog=1024)
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    ready.wait(10)
    return http_port, https_port


# -- the proxies under test ----------------------------------------------------------------


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port}")


def bench_policy(folder: Path) -> Path:
    """The example policy, with the bench's HTTPS host decided on its name only."""
    target = folder / "policies"
    shutil.copytree(ROOT / "policies", target)
    path = target / "school.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["decryption"]["host_only"]["domains"] = ["localhost"]
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def start_plain(folder: Path, *, lean: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    """Bare mitmdump; `lean`: with the gateway's hook dispatch (bench/lean_dispatch.py)."""
    port = free_port()
    cmd = [str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "--listen-port", str(port),
           "-q", "--set", f"confdir={folder / 'plain-ca'}", "--set", "ssl_insecure=true",
           "--set", "connection_strategy=lazy", "--ignore-hosts", r"^localhost:"]  # fmt: skip
    if lean:
        cmd += ["-s", str(ROOT / "bench" / "lean_dispatch.py")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return proc, port


def start_gateway(folder: Path, policy: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    var = folder / f"var-{workers}"  # one gateway per worker count at a time
    cmd = [str(BIN / "schoolgate"), "run", "--policy", str(policy), "--var", str(var),
           "--listen-port", str(port), "--workers", str(workers),
           "--set", f"schoolgate_metrics_port={free_port() if workers == 1 else 0}",
           "--set", "ssl_insecure=true", "--set", "termlog_verbosity=error",
           # the upstream is on this machine's loopback, which UpstreamGuard refuses otherwise
           "--set", "schoolgate_allow_local_upstreams=true"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_listening(port, proc)
    time.sleep(2.0 + workers)  # every worker up, not only the first to bind
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


# -- measuring -----------------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms: float = float("nan")  # the proxy's CPU time (all its processes) per request


def _cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its children (a gateway's workers)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def hey(
    proxy_port: int, url: str, seconds: int, concurrency: int, extra: list[str], pid: int
) -> Result:
    subprocess.run(  # warm up: connections, certificates, caches
        ["hey", "-z", "1s", "-c", str(concurrency), "-x", f"http://127.0.0.1:{proxy_port}", url],
        capture_output=True,
        check=False,
    )
    cpu_before = _cpu_seconds(pid)
    out = subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(concurrency),
            "-t",
            "20",
            "-x",
            f"http://127.0.0.1:{proxy_port}",
            *extra,
            url,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = _cpu_seconds(pid) - cpu_before

    def latency(pct: str) -> float:
        m = re.search(rf"{pct}% in ([\d.]+) secs", out)
        return float(m.group(1)) * 1000 if m else float("nan")

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    ok = int(codes.get("200", 0))
    total = sum(int(v) for v in codes.values())
    errors = total - ok + sum(int(n) for n in re.findall(r"\[(\d+)\]\s+Get", out))
    done = total or 1
    return Result(rps, latency("50"), latency("99"), errors, 1000 * cpu / done)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every setup, alternating")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers-max", type=int, default=os.cpu_count() or 2)
    opts = parser.parse_args()
    if shutil.which("hey") is None:
        print("bench needs `hey`: apt-get install hey")
        return 2
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()}")
    print(
        f"hey: {opts.concurrency} connections, {opts.seconds} s per run, ~1 KB page; "
        f"{opts.rounds} rounds, every setup in turn; medians\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        http_port, https_port = start_upstream(folder)
        policy = bench_policy(folder)
        # HTTP: keep-alive to the proxy, every request decided and logged. HTTPS host-only:
        # a new connection per request (CONNECT, the decision on the SNI, then a tunnel),
        # as a tunnel kept alive costs the proxy nothing per request but copying bytes.
        # `-host localhost`: hey otherwise sends "localhost:PORT" as the TLS server name,
        # which no browser does and the gateway refuses as a name it cannot read.
        urls = {
            "HTTP": (f"http://localhost:{http_port}/lesson", []),
            "HTTPS host-only": (
                f"https://localhost:{https_port}/lesson",
                ["-disable-keepalive", "-host", "localhost"],
            ),
        }
        bare, lean, one = "mitmdump (bare)", "mitmdump (lean dispatch)", "gateway, 1 worker"
        setups: list[tuple[str, int]] = [(bare, 0), (lean, -1), (one, 1)]
        setups += [(f"gateway, {n} workers", n) for n in range(2, max(2, opts.workers_max) + 1)]
        runs: dict[tuple[str, str], list[Result]] = {}
        # All proxies up at once (idle ones cost nothing), then taken in turn, round after
        # round, so that a noisy moment on a shared machine doesn't land on one setup only.
        procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            for name, workers in setups:
                sub = folder / f"setup-{workers}"
                sub.mkdir()
                procs[name] = (
                    start_plain(sub, lean=workers < 0)
                    if workers <= 0
                    else start_gateway(sub, policy, workers)
                )
            for round_no in range(1, opts.rounds + 1):
                for name, _ in setups:
                    for kind, (url, extra) in urls.items():
                        proc, port = procs[name]
                        r = hey(port, url, opts.seconds, opts.concurrency, extra, proc.pid)
                        runs.setdefault((name, kind), []).append(r)
                        print(
                            f"round {round_no}  {name:<24} {kind:<16} {r.rps:>6.0f} req/s  "
                            f"p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms  "
                            f"CPU {r.cpu_ms:5.2f} ms/req  errors {r.errors}",
                            flush=True,
                        )
        finally:
            for proc, _ in procs.values():
                stop(proc)
        med = {key: _median(results) for key, results in runs.items()}
        print("\nmedians:")
        for name, _ in setups:
            for kind in urls:
                r = med[(name, kind)]
                print(
                    f"  {name:<24} {kind:<16} {r.rps:>6.0f} req/s  p50 {r.p50_ms:6.1f} ms  "
                    f"p99 {r.p99_ms:6.1f} ms  CPU {r.cpu_ms:5.2f} ms/req  "
                    f"errors {sum(x.errors for x in runs[(name, kind)])}"
                )
        print()
        for kind in urls:
            gw = med[(one, kind)].rps
            for base in (bare, lean):
                ratio = gw / med[(base, kind)].rps
                print(
                    f"{kind}: gateway / {base} = {ratio:.2f} "
                    f"(add-ons cost {100 * (1 - ratio):.0f}%; target <= 10%)"
                )
            one_cpu = med[(one, kind)].cpu_ms
            for name, workers in setups[3:]:
                ratio = med[(name, kind)].rps / gw
                cpu_ratio = med[(name, kind)].cpu_ms / one_cpu
                print(
                    f"{kind}: {workers} workers / 1 worker = {ratio:.2f} (linear: {workers}); "
                    f"CPU per request {cpu_ratio:.2f}x one worker's (1.00: each worker as "
                    "cheap as one alone, so throughput grows with the free cores)"
                )
    print(f"\nload average at end: {os.getloadavg()}")
    return 0


def _median(results: list[Result]) -> Result:
    def mid(values: list[float]) -> float:
        return statistics.median(values)

    return Result(
        mid([r.rps for r in results]),
        mid([r.p50_ms for r in results]),
        mid([r.p99_ms for r in results]),
        sum(r.errors for r in results),
        mid([r.cpu_ms for r in results]),
    )


if __name__ == "__main__":
    sys.exit(main())

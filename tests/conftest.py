"""Shared fixtures: local upstream servers and a real gateway process on loopback."""

from __future__ import annotations

import datetime
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, settings

from proxy_addons.workflow import accounts
from tests.pg import close_databases

# Hypothesis' per-example deadline (200 ms) measures the machine, not the code: on a
# loaded 2-core CI machine a store or gateway example can pass it and fail the run.
settings.register_profile(
    "schoolgate", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("schoolgate")

# bcrypt's cost for accounts the tests make in-process: 4 rounds (about a millisecond) instead
# of the shipped 12 (a quarter of a second for each hash and each sign-in, hundreds of times
# over). The tests are about who may sign in, not bcrypt's cost; accounts made by the real
# `schoolgate account add` keep 12, and tests/cli/test_cli_account.py checks that.
accounts.ROUNDS = 4

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
MITMDUMP = str(VENV_BIN / "mitmdump")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers every request with what it saw, so tests can check it arrived unchanged."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = json.dumps(
            {
                "host": self.headers.get("Host"),
                "path": self.path,
                "method": self.command,
                "body": body.decode("utf-8", "replace"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "local")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "upstream.pem", tmp / "upstream.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Upstream:
    http_port: int
    https_port: int


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    tmp = tmp_path_factory.mktemp("upstream")
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    cert, key = _self_signed(tmp)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    secure.socket = ctx.wrap_socket(secure.socket, server_side=True)
    for server in (plain, secure):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Upstream(plain.server_address[1], secure.server_address[1])
    plain.shutdown()
    secure.shutdown()


@dataclass
class Gateway:
    port: int
    var: Path
    policy: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.var / "ca" / "mitmproxy-ca-cert.pem"

    def curl(
        self, url: str, *args: str, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["curl", "-sS", "--max-time", "10", "-x", self.proxy, "--cacert", str(self.ca)]
        if user:
            cmd += ["--proxy-user", user]
        cmd += ["-w", "\n%{http_code}", *args, url]
        return subprocess.run(cmd, capture_output=True, text=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited ({process.returncode}):\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"gateway did not listen on {port}:\n{log.read_text()}")


def start_mitmdump(
    policy: Path,
    var: Path,
    upstream: Upstream,
    *,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Gateway:
    """A real mitmdump with the gateway's add-ons, listening on a free loopback port."""
    port = free_port()
    var.mkdir(parents=True, exist_ok=True)
    log = var / "gateway.log"
    cmd = [
        MITMDUMP,
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "-s",
        str(ROOT / "proxy_addons" / "gateway" / "chain.py"),
        "-s",
        str(ROOT / "tests" / "support" / "local_upstream.py"),
        "--set",
        f"confdir={var / 'ca'}",
        "--set",
        f"schoolgate_policy={policy}",
        "--set",
        f"schoolgate_var={var}",
        "--set",
        f"local_upstream_http=127.0.0.1:{upstream.http_port}",
        "--set",
        f"local_upstream_https=127.0.0.1:{upstream.https_port}",
        "--set",
        "ssl_insecure=true",  # only the test's self-signed upstream
        "--set",
        "onboarding=false",
        "--set",
        "flow_detail=2",
        # No metrics listener unless a test asks for one (fixed ports clash between gateways).
        *(
            []
            if any("schoolgate_metrics_port" in e for e in (extra or []))
            else ["--set", "schoolgate_metrics_port=0"]
        ),
        *(extra or []),
    ]
    full_env = {**os.environ, **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT
        )
    wait_for_port(port, process, log)
    gateway = Gateway(port, var, policy, process, log)
    _wait_for_ca(gateway)
    return gateway


def _wait_for_ca(gateway: Gateway) -> None:
    deadline = time.monotonic() + 10
    while not gateway.ca.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def logged_references(var: Path, wanted: set[str], timeout: float = 10.0) -> set[str]:
    """The block references in the gateway's access log, once `wanted` are all there (or
    the timeout): the writer is asynchronous and writes a few times a second."""
    return {
        str(r["reference"])
        for r in access_log(var, lambda recs: wanted <= {r.get("reference") for r in recs}, timeout)
        if r.get("reference")
    }


def access_log(
    var: Path, ready: Callable[[list[dict[str, Any]]], bool] = bool, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The access log's JSON records, waiting (up to `timeout`) until `ready(records)`."""
    path = var / "log" / "access.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        records = [json.loads(line) for line in lines if line.strip()]
        if ready(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def copy_policy(tmp: Path) -> Path:
    """A writable copy of tests/data/policy (policy file and its lists)."""
    target = tmp / "policy"
    shutil.copytree(ROOT / "tests" / "data" / "policy", target)
    return target / "school.yaml"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the PostgreSQL databases tests/pg.py made ahead or left to drop."""
    close_databases()

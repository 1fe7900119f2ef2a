"""The school's own CA: `schoolgate ca init | show`, used by a real mitmdump and the portal."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy_addons.ops import school_ca
from tests.conftest import (
    ROOT,
    VENV_BIN,
    Upstream,
    copy_policy,
    free_port,
    start_mitmdump,
    wait_for_port,
)
from tests.gateway.test_gateway_e2e import body_and_status

SCHOOLGATE = str(VENV_BIN / "schoolgate")
SCHOOL = "St Aidan's C of E Primary School"


def sg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCHOOLGATE, *args], capture_output=True, text=True, cwd=ROOT)


def test_ca_init_names_the_school_and_is_a_constrained_ca(tmp_path: Path) -> None:
    folder = tmp_path / "ca"
    made = sg("ca", "init", "--school", SCHOOL, "--dir", str(folder))
    assert made.returncode == 0, made.stderr
    cert = x509.load_pem_x509_certificate((folder / "mitmproxy-ca-cert.pem").read_bytes())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert SCHOOL in str(cn) and org == SCHOOL and "mitmproxy" not in cert.subject.rfc4514_string()
    assert cert.issuer == cert.subject
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    years = (cert.not_valid_after_utc - cert.not_valid_before_utc).days / 365.25
    assert 9.9 < years < 10.1
    # Every file of mitmproxy's confdir; the private key readable by its owner only.
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names == [
        "mitmproxy-ca-cert.cer",
        "mitmproxy-ca-cert.p12",
        "mitmproxy-ca-cert.pem",
        "mitmproxy-ca.p12",
        "mitmproxy-ca.pem",
        "mitmproxy-dhparam.pem",
    ]
    assert (folder / "mitmproxy-ca.pem").stat().st_mode & 0o077 == 0
    fingerprint = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
    assert fingerprint in made.stdout

    shown = sg("ca", "show", "--dir", str(folder))
    assert shown.returncode == 0
    assert fingerprint in shown.stdout and f"O={SCHOOL}" in shown.stdout
    assert str(cert.not_valid_after_utc.year) in shown.stdout


def test_ca_init_refuses_to_replace_a_ca_without_force(tmp_path: Path) -> None:
    folder = tmp_path / "ca"
    assert sg("ca", "init", "--school", "First School", "--dir", str(folder)).returncode == 0
    before = (folder / "mitmproxy-ca.pem").read_bytes()
    again = sg("ca", "init", "--school", "Second School", "--dir", str(folder))
    assert again.returncode == 1
    assert "--force" in again.stderr and "every device" in again.stderr
    assert (folder / "mitmproxy-ca.pem").read_bytes() == before
    forced = sg("ca", "init", "--school", "Second School", "--dir", str(folder), "--force")
    assert forced.returncode == 0 and "must now trust the new certificate" in forced.stderr
    assert "Second School" in school_ca.describe(folder).subject
    assert sg("ca", "show", "--dir", str(tmp_path / "none")).returncode == 1


def _leaf(proxy_port: int, host: str, cafile: Path) -> x509.Certificate:
    """CONNECT through the gateway; the site certificate Python's ssl verified against `cafile`."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as raw:
        raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += raw.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200"), reply
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_mitmdump_loads_the_school_ca_and_signs_leaves_with_it(
    tmp_path: Path, upstream: Upstream
) -> None:
    var = tmp_path / "var"
    assert sg("ca", "init", "--school", SCHOOL, "--dir", str(var / "ca")).returncode == 0
    ours = (var / "ca" / "mitmproxy-ca-cert.pem").read_bytes()
    gateway = start_mitmdump(copy_policy(tmp_path), var, upstream)
    try:
        # curl trusting only the school's CA: the decrypted page arrives.
        body, code = body_and_status(gateway.curl("https://www.example.com/lesson"))
        assert code == 200 and '"path": "/lesson"' in body
        leaf = _leaf(gateway.port, "www.example.com", gateway.ca)
        root = x509.load_pem_x509_certificate(ours)
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
            "www.example.com"
        )
        assert leaf.issuer == root.subject and SCHOOL in root.subject.rfc4514_string()
        leaf.verify_directly_issued_by(root)  # signed by the school's key, not another's
        # mitmproxy did not make a CA of its own.
        assert (var / "ca" / "mitmproxy-ca-cert.pem").read_bytes() == ours
    finally:
        gateway.stop()


def test_the_portal_serves_the_ca_over_plain_http_with_its_fingerprint(
    tmp_path: Path, upstream: Upstream
) -> None:
    var = tmp_path / "var"
    assert sg("ca", "init", "--school", SCHOOL, "--dir", str(var / "ca")).returncode == 0
    cert = school_ca.load_certificate(var / "ca")
    gateway = start_mitmdump(copy_policy(tmp_path), var, upstream)
    try:
        curl = ["curl", "-sS", "--max-time", "10", "-x", gateway.proxy]
        pem = subprocess.run([*curl, "http://schoolgate.local/ca.pem"], capture_output=True)
        assert pem.stdout == (var / "ca" / "mitmproxy-ca-cert.pem").read_bytes()
        der = subprocess.run([*curl, "http://schoolgate.local/ca.cer"], capture_output=True)
        assert x509.load_der_x509_certificate(der.stdout) == cert
        page = subprocess.run(
            [*curl, "http://schoolgate.local/ca"], capture_output=True, text=True
        ).stdout
        assert school_ca.fingerprint(cert) in page and "St Aidan" in page
        assert "Windows" in page and "Chromebook" in page
        # Straight to the gateway's port, as a device with no proxy set yet would come.
        direct = subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "10",
                "-H",
                "Host: schoolgate.local",
                f"http://127.0.0.1:{gateway.port}/ca.cer",
            ],
            capture_output=True,
        )
        assert x509.load_der_x509_certificate(direct.stdout) == cert
    finally:
        gateway.stop()


def test_schoolgate_run_creates_a_ca_named_for_the_policy_school(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "run.log"
    cmd = [SCHOOLGATE, "run", "--policy", "policies/school.yaml", "--var", str(tmp_path / "var")]
    cmd += ["--listen-port", str(port), "--set", "schoolgate_metrics_port=0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        info = school_ca.describe(tmp_path / "var" / "ca")
        assert "O=Oakfield Primary School" in info.subject
        assert "Created the school's CA" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("name", ["", "   "])
def test_ca_init_needs_a_name(tmp_path: Path, name: str) -> None:
    result = sg("ca", "init", "--school", name, "--dir", str(tmp_path / "ca"))
    assert result.returncode == 1 and "school's name" in result.stderr


def _ensure(folder: str) -> bool:
    return school_ca.ensure(Path(folder), "Worker School")


def test_workers_starting_together_make_one_ca(tmp_path: Path) -> None:
    import multiprocessing

    folder = tmp_path / "ca"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        made = pool.map(_ensure, [str(folder)] * 4)
    assert made.count(True) == 1
    assert "Worker School" in school_ca.describe(folder).subject

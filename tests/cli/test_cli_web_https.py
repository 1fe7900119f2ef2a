"""`schoolgate ca init` issues the gateway's HTTPS certificate, and `schoolgate web` serves
HTTPS with it by default, trusted by a client that trusts only the school's CA; its
plain-HTTP listener only redirects. Real processes, as installed."""

from __future__ import annotations

import ipaddress
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from proxy_addons.ops import school_ca, server_cert
from tests.conftest import ROOT, free_port, wait_for_port

BIN = Path(sys.executable).parent
POLICY = ROOT / "policies" / "school.yaml"


def schoolgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "schoolgate"), *args], capture_output=True, text=True, cwd=ROOT, check=False
    )


def sans(path: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        names.get_values_for_type(x509.DNSName),
        [str(a) for a in names.get_values_for_type(x509.IPAddress)],
    )


def test_ca_init_issues_the_gateways_certificate(tmp_path: Path) -> None:
    done = schoolgate(
        "ca", "init", "--school", "Oakfield Primary", "--var", str(tmp_path),
        "--policy", str(POLICY), "--name", "gateway.oakfield.example", "--name", "10.99.0.5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cert_path, key_path = server_cert.default_files(tmp_path)
    names, addresses = sans(cert_path)
    # The policy's portal host, the names asked for, this machine's loopback addresses.
    assert {"schoolgate.local", "gateway.oakfield.example"} <= set(names)
    assert {"10.99.0.5", "127.0.0.1", "::1"} <= set(addresses)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = school_ca.load_certificate(tmp_path / "ca")
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The chain file ends with the CA, so a client given only the leaf's issuer name can build it.
    assert cert_path.read_text().count("BEGIN CERTIFICATE") == 2
    assert f"certificate:  {cert_path}" in done.stdout


def test_server_cert_reissues_only_names_asked_and_if_due(tmp_path: Path) -> None:
    assert school_ca.create(tmp_path / "ca", "Oakfield").subject
    assert server_cert.needs_renewal(tmp_path)
    done = schoolgate(
        "ca", "server-cert", "--var", str(tmp_path), "--only", "--name", "admin.oakfield.example"
    )
    assert done.returncode == 0, done.stderr
    assert sans(server_cert.default_files(tmp_path)[0]) == (["admin.oakfield.example"], [])
    assert not server_cert.needs_renewal(tmp_path)
    again = schoolgate("ca", "server-cert", "--var", str(tmp_path), "--if-due")
    assert "current: nothing to do" in again.stdout
    assert sans(server_cert.default_files(tmp_path)[0]) == (["admin.oakfield.example"], [])


def test_server_cert_needs_the_ca_and_a_real_name(tmp_path: Path) -> None:
    done = schoolgate("ca", "server-cert", "--var", str(tmp_path), "--only", "--name", "x.example")
    assert done.returncode == 1
    assert "run 'schoolgate ca init --school NAME' first" in done.stderr
    school_ca.create(tmp_path / "ca", "Oakfield")
    bad = schoolgate("ca", "server-cert", "--var", str(tmp_path), "--only", "--name", "a b")
    assert bad.returncode == 1 and "'a b' is not a host name or an IP address" in bad.stderr


def test_split_names_keeps_each_once() -> None:
    names, addresses = server_cert.split_names(["GW.example.", "gw.example", "[::1]", "::1", ""])
    assert names == ["gw.example"]
    assert addresses == [ipaddress.ip_address("::1")]
    assert server_cert.host_of("https://Admin.example:8081/x") == "admin.example"
    assert server_cert.host_of("gw.school.lan:8080") == "gw.school.lan"
    assert server_cert.host_of(None) is None
    assert server_cert.CA_KEY_FILE == school_ca.KEY_FILE


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """`schoolgate web` with only the var folder `ca init` filled: HTTPS by default."""
    done = schoolgate("ca", "init", "--school", "Oakfield", "--var", str(tmp_path), "--only",
                      "--name", "127.0.0.1", "--name", "gateway.oakfield.example")  # fmt: skip
    assert done.returncode == 0, done.stderr
    port, http_port = free_port(), free_port()
    log = tmp_path / "web.log"
    cmd = [str(BIN / "schoolgate"), "web", "--policy", str(POLICY), "--var", str(tmp_path)]
    cmd += ["--port", str(port), "--http-port", str(http_port)]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for_port(port, process, log)
        wait_for_port(http_port, process, log)
        yield port, http_port, tmp_path / "ca" / school_ca.CERT_FILE
    finally:
        process.terminate()
        process.wait(10)


def test_web_serves_https_by_default_trusted_through_the_school_ca(
    served: tuple[int, int, Path],
) -> None:
    port, _, ca = served
    with httpx.Client(verify=ssl.create_default_context(cafile=ca)) as client:
        page = client.get(f"https://127.0.0.1:{port}/login")
    assert page.status_code == 200
    assert "Sign in" in page.text
    # A client trusting only the public CAs refuses it: it is the school's CA that vouches.
    with pytest.raises(httpx.ConnectError), httpx.Client() as public:
        public.get(f"https://127.0.0.1:{port}/login")


def test_plain_http_only_redirects_to_https(served: tuple[int, int, Path]) -> None:
    port, http_port, ca = served
    with httpx.Client() as plain:
        known = plain.get(
            f"http://127.0.0.1:{http_port}/unblocks/new?url=https%3A%2F%2Fa.example%2F",
            headers={"Host": f"gateway.oakfield.example:{http_port}"},
        )
        forged = plain.post(f"http://127.0.0.1:{http_port}/login", headers={"Host": "evil.example"})
    assert known.status_code == 308
    assert known.headers["location"] == (
        f"https://gateway.oakfield.example:{port}/unblocks/new?url=https%3A%2F%2Fa.example%2F"
    )
    assert "Set-Cookie" not in known.headers
    # A Host the certificate doesn't name is not echoed: the certificate's own name is used.
    assert forged.status_code == 308
    assert forged.headers["location"] == f"https://gateway.oakfield.example:{port}/login"
    with httpx.Client(
        verify=ssl.create_default_context(cafile=ca), follow_redirects=True
    ) as client:
        followed = client.get(f"http://127.0.0.1:{http_port}/login")
    assert followed.status_code == 200 and str(followed.url).startswith("https://")

"""The gateway's own HTTPS certificate, issued by the school's CA (school_ca.py).

The admin web app and the device API are served over HTTPS from the first start: staff sign
in with passwords and the session cookie is Secure. School devices already trust the
school's CA (it is what lets the gateway inspect traffic), so a certificate from it is
trusted by every browser on the school's network without buying one.

Files, in VAR/tls (the service owns VAR; the key is readable by it alone):

    server-cert.pem   the gateway's certificate, then the school CA's (the chain)
    server-key.pem    its private key (0600)

A certificate from the school's own PKI or from ACME can be used instead: point
SCHOOLGATE_WEB_CERT and SCHOOLGATE_WEB_KEY at it (docs/install.md).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy_addons.ops.atomic_file import write_atomic

# school_ca.KEY_FILE (that module loads mitmproxy, which `schoolgate web` must not).
CA_KEY_FILE = "mitmproxy-ca.pem"
CLOCK_SKEW = timedelta(days=2)  # as the CA's: devices with a slow clock still accept it
CERT_FILE = "server-cert.pem"
KEY_FILE = "server-key.pem"
# Under Apple's 825-day limit for private CAs and near the public 398: reissued yearly
# (`schoolgate ca server-cert`, or install.sh when fewer than RENEW_BEFORE days are left).
LIFETIME = timedelta(days=397)
RENEW_BEFORE = timedelta(days=30)


class CertError(RuntimeError):
    """The certificate can't be issued or read as asked."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ServerCertInfo:
    names: tuple[str, ...]
    addresses: tuple[str, ...]
    not_after: datetime
    cert: Path
    key: Path


def tls_folder(var: Path) -> Path:
    return var / "tls"


def default_files(var: Path) -> tuple[Path, Path]:
    """Where `schoolgate web` looks for its certificate and key when none is given."""
    folder = tls_folder(var)
    return folder / CERT_FILE, folder / KEY_FILE


def host_of(address: str | None) -> str | None:
    """The host in a URL ("https://gw.school:8081/x") or "host:port"; None when there is none."""
    if not address:
        return None
    text = address if "//" in address else f"//{address}"
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    return host or None


def own_names() -> tuple[list[str], list[IPAddress]]:
    """This machine's host name, fully qualified name and addresses, as far as it can tell
    without asking anyone: the resolver's answers for its names, and the address it would
    use to reach the internet (a UDP socket's choice; nothing is sent)."""
    names = [n for n in {socket.gethostname(), socket.getfqdn()} if n and n != "localhost"]
    found: set[IPAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    for name in names:
        try:
            for *_, sockaddr in socket.getaddrinfo(name, None):
                found.add(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except (OSError, ValueError):
            continue
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                found.add(ipaddress.ip_address(s.getsockname()[0].split("%", 1)[0]))
        except (OSError, ValueError):
            continue
    return sorted(names), sorted(found, key=lambda a: (a.version, int(a)))


def split_names(entries: Iterable[str]) -> tuple[list[str], list[IPAddress]]:
    """Names and addresses apart, each once, in the order given; blanks dropped."""
    names: list[str] = []
    addresses: list[IPAddress] = []
    for raw in entries:
        entry = raw.strip().strip("[]").lower().rstrip(".")
        if not entry:
            continue
        try:
            addr = ipaddress.ip_address(entry)
        except ValueError:
            if not all(part and len(part) < 64 for part in entry.split(".")) or " " in entry:
                raise CertError(f"'{raw}' is not a host name or an IP address") from None
            if entry not in names:
                names.append(entry)
            continue
        if addr not in addresses:
            addresses.append(addr)
    return names, addresses


def issue(ca_folder: Path, var: Path, entries: Iterable[str]) -> ServerCertInfo:
    """Issue the gateway's certificate for `entries` (host names and IP addresses), signed by
    the school's CA in `ca_folder`, into VAR/tls; replaces the one there."""
    names, addresses = split_names(entries)
    if not names and not addresses:
        raise CertError("the certificate needs at least one name or address (--name, --ip)")
    ca_key, ca_cert = _load_ca(ca_folder)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, (names or [str(addresses[0])])[0][:64])]
    )
    now = datetime.now(UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(a) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = default_files(var)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    chain = cert.public_bytes(pem) + ca_cert.public_bytes(pem)
    secret = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # The key first: a certificate beside an old key would make the server fail to start.
    write_atomic(key_path, secret, 0o600)
    write_atomic(cert_path, chain, 0o644)
    return describe(cert_path, key_path)


def _load_ca(folder: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    path = folder / CA_KEY_FILE
    if not path.is_file():
        raise CertError(f"no CA in {folder}: run 'schoolgate ca init --school NAME' first")
    data = path.read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{path} does not hold the EC key 'schoolgate ca init' makes")
    return key, x509.load_pem_x509_certificate(data)


def describe(cert_path: Path, key_path: Path) -> ServerCertInfo:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    return ServerCertInfo(
        names=tuple(sans.get_values_for_type(x509.DNSName)),
        addresses=tuple(str(a) for a in sans.get_values_for_type(x509.IPAddress)),
        not_after=cert.not_valid_after_utc,
        cert=cert_path,
        key=key_path,
    )


def needs_renewal(var: Path, now: datetime | None = None) -> bool:
    """No certificate in VAR/tls, or one that ends within RENEW_BEFORE."""
    cert_path, key_path = default_files(var)
    if not (cert_path.is_file() and key_path.is_file()):
        return True
    ends = describe(cert_path, key_path).not_after
    return ends - (now or datetime.now(UTC)) < RENEW_BEFORE


__all__ = [
    "CERT_FILE",
    "CertError",
    "KEY_FILE",
    "ServerCertInfo",
    "default_files",
    "describe",
    "host_of",
    "issue",
    "needs_renewal",
    "own_names",
    "split_names",
    "tls_folder",
]

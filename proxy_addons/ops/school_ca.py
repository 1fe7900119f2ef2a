"""The school's own certificate authority, in the files mitmproxy reads from its confdir.

mitmproxy would otherwise make a CA called "mitmproxy" on first start; a school's
devices should instead trust a CA that names the school, so staff who look at a
certificate see who is inspecting their traffic. The files and their names are
those of mitmproxy 12 (`CertStore.from_store` / `create_store`):

    mitmproxy-ca.pem          private key + certificate (what mitmproxy loads)
    mitmproxy-ca.p12          the same as PKCS#12
    mitmproxy-ca-cert.pem     the certificate alone (what devices install)
    mitmproxy-ca-cert.cer     the same, PEM, as mitmproxy writes it
    mitmproxy-ca-cert.p12     the certificate alone as PKCS#12
    mitmproxy-dhparam.pem     DH parameters (mitmproxy's own, as it writes them)

The key is EC P-256: mitmproxy signs every leaf certificate with the CA's key
and reuses its public key for the leaves, so a P-256 key keeps handshakes
cheap (an RSA-3072 signature costs many times more) and every current browser
and OS accepts it.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from mitmproxy.certs import DEFAULT_DHPARAM

from proxy_addons.ops.atomic_file import write_atomic

BASENAME = "mitmproxy"
KEY_FILE = f"{BASENAME}-ca.pem"
CERT_FILE = f"{BASENAME}-ca-cert.pem"
LIFETIME = timedelta(days=3652)  # ten years: re-trusting every device is a big job
CLOCK_SKEW = timedelta(days=2)  # as mitmproxy: devices with a slow clock still accept it
MAX_NAME = 64  # X.520 upper bound for CN and O


class CAError(RuntimeError):
    """The CA can't be created or read as asked."""


@dataclass(frozen=True)
class CAInfo:
    subject: str
    fingerprint_sha256: str  # colon-separated upper-case hex, as browsers show it
    not_before: datetime
    not_after: datetime
    key: str
    path: Path


def ca_files(folder: Path) -> list[Path]:
    """Every file of a CA in `folder` that exists (for backups)."""
    names = [
        KEY_FILE,
        f"{BASENAME}-ca.p12",
        CERT_FILE,
        f"{BASENAME}-ca-cert.cer",
        f"{BASENAME}-ca-cert.p12",
        f"{BASENAME}-dhparam.pem",
    ]
    return [folder / n for n in names if (folder / n).is_file()]


def exists(folder: Path) -> bool:
    return (folder / KEY_FILE).is_file()


def _clip(text: str) -> str:
    return text.strip()[:MAX_NAME].strip()


def create(folder: Path, school: str, *, force: bool = False) -> CAInfo:
    """Make the school's CA in `folder`; refuses to replace one unless `force`."""
    school = school.strip()
    if not school:
        raise CAError("the CA needs the school's name (--school)")
    if exists(folder) and not force:
        raise CAError(
            f"{folder / KEY_FILE} already holds a CA ({describe(folder).subject}). "
            "Replacing it means every device must be made to trust the new one; "
            "use --force if that is what you want."
        )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, _clip(f"{school} web filter CA")),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _clip(school)),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Schoolgate"),
        ]
    )
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,  # mitmproxy's leaves reuse this key for TLS
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(folder, key, cert)
    return describe(folder)


def _write(folder: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pem_cert = cert.public_bytes(serialization.Encoding.PEM)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    label = BASENAME.encode()
    secret = {
        KEY_FILE: pem_key + pem_cert,
        f"{BASENAME}-ca.p12": pkcs12.serialize_key_and_certificates(
            label, key, cert, None, serialization.NoEncryption()
        ),
    }
    public = {
        CERT_FILE: pem_cert,
        f"{BASENAME}-ca-cert.cer": pem_cert,
        f"{BASENAME}-ca-cert.p12": pkcs12.serialize_key_and_certificates(
            label, None, cert, None, serialization.NoEncryption()
        ),
        f"{BASENAME}-dhparam.pem": _mitmproxy_dhparam(),
    }
    # The key file last: its presence is what says "a CA is here" (see exists()).
    for name, data in public.items():
        write_atomic(folder / name, data, 0o644)
    for name in (f"{BASENAME}-ca.p12", KEY_FILE):
        write_atomic(folder / name, secret[name], 0o600)


def _mitmproxy_dhparam() -> bytes:
    return DEFAULT_DHPARAM


def load_certificate(folder: Path) -> x509.Certificate:
    path = folder / CERT_FILE
    if not path.is_file():
        raise CAError(f"no CA certificate at {path}: run 'schoolgate ca init --school NAME'")
    return x509.load_pem_x509_certificate(path.read_bytes())


def fingerprint(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def describe(folder: Path) -> CAInfo:
    cert = load_certificate(folder)
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        key = f"EC {public.curve.name}"
    else:
        key = f"{type(public).__name__.removeprefix('_')} {getattr(public, 'key_size', '?')} bits"
    return CAInfo(
        subject=", ".join(attr.rfc4514_string() for attr in cert.subject),
        fingerprint_sha256=fingerprint(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key=key,
        path=folder / CERT_FILE,
    )


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure(folder: Path, school: str) -> bool:
    """Create the school's CA unless one is there (several workers may ask at once).

    Returns True when it made one.
    """
    with _locked(folder):
        if exists(folder):
            return False
        create(folder, school)
        return True

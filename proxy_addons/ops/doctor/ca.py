"""The doctor's check of the school's CA: present, in date, key matching, named for the school."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from proxy_addons.ops.doctor.findings import Check, fail, ok, warn

CA_FILE = "mitmproxy-ca.pem"  # key and certificate, as mitmproxy's confdir holds them
CA_WARN_DAYS = 90


def check_ca(ca_dir: Path, now: datetime | None = None) -> list[Check]:
    """The school's CA: present, in date, key matching, named for the school."""
    now = now or datetime.now(UTC)
    path = ca_dir / CA_FILE
    fix = 'schoolgate ca init --school "Your School Name" (docs/ca.md)'
    if not path.exists():
        return [fail("ca", f"no CA at {path}", fix)]
    try:
        data = path.read_bytes()
        cert = x509.load_pem_x509_certificate(data)
        key = serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError, TypeError) as exc:
        return [fail("ca", f"{path} is not a PEM certificate and private key: {exc}", fix)]
    results: list[Check] = []
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(names[0].value) if names else cert.subject.rfc4514_string()
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        results.append(fail("ca", f"{path}: the private key does not match the certificate", fix))
    ends = cert.not_valid_after_utc
    if cert.not_valid_before_utc > now:
        results.append(
            fail(
                "ca",
                f"the CA '{name}' is not valid until {cert.not_valid_before_utc:%Y-%m-%d}",
                "check the clock (see time sync), or make a new CA: " + fix,
            )
        )
    if ends <= now:
        results.append(fail("ca", f"the CA '{name}' expired on {ends:%Y-%m-%d}", fix))
    elif ends - now < timedelta(days=CA_WARN_DAYS):
        results.append(
            warn(
                "ca",
                f"the CA '{name}' expires on {ends:%Y-%m-%d}: devices will reject the gateway",
                "make a new CA and deploy it to devices before then (docs/ca.md)",
            )
        )
    if name.lower().startswith("mitmproxy"):
        results.append(
            warn(
                "ca",
                f"the CA is mitmproxy's default one ('{name}'), not the school's own",
                fix,
            )
        )
    if not results:
        results.append(ok("ca", f"'{name}', valid until {ends:%Y-%m-%d}, key matches"))
    return results

"""The school's CA on the portal: `/ca` (how to install it), `/ca.cer` (DER) beside `/ca.pem`.

Plain http on purpose: a device that doesn't trust the CA yet can't open an
https page the gateway decrypts. The fingerprint on the page lets whoever
installs the certificate check it is the school's own before trusting it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from flask import Flask, Response, abort

from proxy_addons.ops import school_ca
from proxy_addons.pages import blockpage


def wire(app: Flask, ca_path: Callable[[], Path], school: Callable[[], str]) -> None:
    def certificate() -> x509.Certificate:
        folder = ca_path().parent
        try:
            return school_ca.load_certificate(folder)
        except (school_ca.CAError, ValueError):
            abort(404)

    @app.get("/ca.cer")
    def ca_der() -> Response:
        return Response(
            school_ca.der(certificate()),
            mimetype="application/pkix-cert",
            headers={"Content-Disposition": 'attachment; filename="school-ca.cer"'},
        )

    @app.get("/ca")
    def ca_page() -> str:
        cert = certificate()
        return blockpage.render_page(
            "ca_install.html",
            school=school(),
            subject=", ".join(attr.rfc4514_string() for attr in cert.subject),
            fingerprint=school_ca.fingerprint(cert),
            not_after=f"{cert.not_valid_after_utc:%d %B %Y}",
        )

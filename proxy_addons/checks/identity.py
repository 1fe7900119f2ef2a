"""Running a termly check from the gateway "as" a profile: who may, and how it is proved.

`schoolgate checks run --profile ks2` must see exactly what a KS2 pupil's device sees, through
the running gateway, without a pupil's password. Proxy sign-in would need an account per
profile and the school's network mapping can't be entered from the gateway machine, so the
runner asks for the profile outright, with a header only believed when:

- the request comes from the gateway machine itself (a loopback address: no device on the
  school network can send one, in explicit or transparent mode), and
- it carries the token in `<var>/check-token`, a file only the gateway's own user can read
  (created with mode 0600 when the gateway starts), so other local programs can't either.

Anything else is ignored and the header is always removed before a request goes upstream.
Traffic identified this way is marked `identified_by: "check"` in the decision record, so
monitoring does not alert on a test canary as if a person had tried it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from pathlib import Path

from proxy_addons.core.network_access import client_address
from proxy_addons.store.secret_file import ensure_secret

logger = logging.getLogger(__name__)

CHECK_HEADER = "X-Schoolgate-Check-As"  # value: "<profile> <token>"
TOKEN_FILE = "check-token"


def token_path(var: Path) -> Path:
    return Path(var) / TOKEN_FILE


def ensure_token(var: Path) -> str:
    """The gateway's check token, created (owner-only) on first use."""
    return ensure_secret(token_path(var))


def read_token(var: Path) -> str:
    """For the runner: the token the gateway using `var` accepts (OSError if none/unreadable)."""
    return token_path(var).read_text().strip()


def header_value(profile: str, token: str) -> str:
    return f"{profile} {token}"


def is_loopback(ip: str | None) -> bool:
    addr = client_address(ip)
    return addr is not None and addr.is_loopback


class CheckIdentity:
    """Decides whether a request may be taken as a check run for a named profile."""

    def __init__(self) -> None:
        self._token: str | None = None

    def configure(self, var: Path) -> None:
        try:
            self._token = ensure_token(var)
        except OSError as exc:
            self._token = None
            logger.warning("No check token (%s): gateway checks are refused.", exc)

    def profile_from(self, headers: Mapping[str, str], ip: str | None) -> str | None:
        """The profile a loopback request with the right token asks for, else None."""
        value = next((v for k, v in headers.items() if k.lower() == CHECK_HEADER.lower()), None)
        if value is None or not self._token or not is_loopback(ip):
            return None
        profile, _, token = value.strip().partition(" ")
        if not profile or not hmac.compare_digest(token.strip().encode(), self._token.encode()):
            logger.warning("A check request from %s had a wrong token; ignored.", ip)
            return None
        return profile


__all__ = [
    "CHECK_HEADER",
    "CheckIdentity",
    "ensure_token",
    "header_value",
    "is_loopback",
    "read_token",
    "token_path",
]

"""What `schoolgate web` needs besides the apps: the policy re-read when it is edited, the
session-signing key, and the one WSGI app it serves (the device API under `/api/`, the admin
pages for the management and staff networks only, reverse-proxy headers believed only when
asked)."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from proxy_addons.core.network_access import management_only
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.web.app import WSGIApp, mount

logger = logging.getLogger(__name__)

SECRET_FILE = "web-secret"


def read_secret_key(var_dir: Path) -> bytes:
    """The session-signing key in `var/web-secret`, made (readable by us only) if missing."""
    path = var_dir / SECRET_FILE
    var_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            logger.warning("%s can be read by others: chmod 600 it", path)
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise ValueError(
                f"{path} is too short to be a secret key: delete it to make a new one"
            ) from None
        return key
    key = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    logger.info("made a new web app secret key in %s", path)
    return key


class PolicyFile:
    """The policy, re-read when one of its files changes; a broken edit keeps the last good one."""

    def __init__(self, path: Path, check_every: float = 5.0) -> None:
        self.path = path
        self.check_every = check_every
        self.current = load_policy(path)
        self._stamp = self._mtimes()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _mtimes(self) -> tuple[float, ...]:
        files = self.current.files or (self.path,)
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in files)

    def __call__(self) -> Policy:
        if time.monotonic() - self._checked < self.check_every:
            return self.current
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._mtimes()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.current = load_policy(self.path)
                    logger.info("policy reloaded from %s", self.path)
                except Exception as exc:  # keep serving with the last good policy
                    logger.error("policy %s not reloaded: %s", self.path, exc)
        return self.current


def served_app(
    admin: Flask, device_api: Flask, policy: PolicyFile, trusted_proxies: int
) -> WSGIApp:
    """The device API mounted beside the admin app; the admin pages only for the policy's
    management networks (network_access.py); X-Forwarded-* from `trusted_proxies` hops."""
    app = mount(admin.wsgi_app, device_api.wsgi_app)
    app = management_only(app, lambda: policy().network.admin_networks)
    if trusted_proxies:
        app = ProxyFix(app, x_for=trusted_proxies, x_proto=trusted_proxies, x_host=trusted_proxies)
    return app


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


__all__ = ["PolicyFile", "is_loopback", "read_secret_key", "served_app"]

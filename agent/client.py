"""The agent's side of the device API: enrol once, then send reports, keeping what can't go yet.

The gateway is trusted only through the CA file given at enrolment (pinning): the system's
CAs are never consulted, so a certificate from any other authority is refused. The token
lives in the state folder, readable by us only (0600), and is never logged.

Reports go to a spool folder first and are sent oldest first; a report that can't be
delivered (gateway unreachable, or a 5xx) stays there and goes with the next send, in order.
A report the gateway refuses for good (400, 403, 413) is moved to `rejected/` so that it
doesn't block the ones behind it; a 409 means the gateway already has it (or newer). The
answer carries the policy's thresholds, kept in the state folder for the next report's
checks (agent/checks/thresholds.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.checks.thresholds import Thresholds, thresholds_from_json

logger = logging.getLogger(__name__)

STATE_FILE = "enrolment.json"  # gateway URL, CA file, device id (no secrets)
TOKEN_FILE = "token"
THRESHOLDS_FILE = "thresholds.json"  # the policy's figures, from the last report's answer
SPOOL = "spool"
REJECTED = "rejected"
TIMEOUT = 15.0
MAX_SPOOL = 500  # oldest reports are dropped beyond this (a device offline for weeks)


class ClientError(RuntimeError):
    """Enrolment or sending failed in a way the person running the agent should see."""


@dataclass(frozen=True)
class SendResult:
    sent: int
    rejected: int
    waiting: int  # still in the spool


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by us only, replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class Client:
    """One device's connection to its gateway, with its state in `state_dir`."""

    def __init__(self, state_dir: Path, gateway: str | None = None, cafile: Path | None = None):
        self.state_dir = Path(state_dir)
        saved = self._state()
        self.gateway = (gateway or saved.get("gateway") or "").rstrip("/")
        ca = cafile or saved.get("cafile")
        self.cafile = Path(ca) if ca else None
        self.device_id: str | None = saved.get("device_id")

    # -- state -------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _token(self) -> str:
        try:
            return (self.state_dir / TOKEN_FILE).read_text().strip()
        except OSError as exc:
            raise ClientError("this device is not enrolled: run `enrol` first") from exc

    @property
    def spool(self) -> Path:
        return self.state_dir / SPOOL

    def tls_context(self) -> ssl.SSLContext:
        if self.cafile is None:
            raise ClientError("no CA file for the gateway: give --ca")
        if not self.gateway.startswith("https://"):
            raise ClientError("the gateway address must start with https://")
        # Only this CA: create_default_context(cafile=...) loads no system CAs.
        return ssl.create_default_context(cafile=str(self.cafile))

    def _post(self, path: str, body: bytes, token: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.gateway + path, body, headers, method="POST")
        try:
            with self._opener().open(req, timeout=TIMEOUT) as resp:
                return resp.status, json_object(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json_object(exc.read())

    def _opener(self) -> urllib.request.OpenerDirector:
        """The pinned CA, and no proxy: the device API is on the gateway itself, a proxy would
        only intercept it, and a report speaks for the address it comes from (the device's)."""
        return urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self.tls_context())
        )

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        """A device API call as this enrolled device: its token, the pinned CA, and no proxy."""
        opener = self._opener()
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.gateway + path, data, headers, method=method)
        try:
            with opener.open(req, timeout=TIMEOUT) as answer:
                return answer.status, json_object(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json_object(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            raise ClientError(f"can't reach the gateway {self.gateway}: {_reason(exc)}") from exc

    # -- enrolling -------------------------------------------------------------------------

    def enrol(self, secret: str, hostname: str, device_id: str | None = None) -> str:
        """Enrol with the school's secret; keep the token (0600) and return the device id.

        With `device_id`, enrol again under that id (after the gateway revoked it, or to
        change the token: the current one, if kept here, is sent to prove it is this device).
        """
        request: dict[str, Any] = {"secret": secret, "hostname": hostname}
        current = None
        if device_id is not None:
            request["device_id"] = device_id
            try:
                current = self._token() if self.device_id == device_id else None
            except ClientError:
                current = None
        body = json.dumps(request).encode()
        try:
            status, answer = self._post("/api/v1/enrol", body, current)
        except (urllib.error.URLError, OSError) as exc:
            raise ClientError(f"can't reach the gateway {self.gateway}: {_reason(exc)}") from exc
        if status != 201:
            raise ClientError(f"enrolment refused ({status}): {answer.get('error', '?')}")
        device_id, token = answer.get("device_id"), answer.get("token")
        if not isinstance(device_id, str) or not isinstance(token, str):
            raise ClientError("the gateway's answer to enrolment was not understood")
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.state_dir / TOKEN_FILE, token.encode() + b"\n")
        state = {"gateway": self.gateway, "cafile": str(self.cafile), "device_id": device_id}
        write_private(self.state_dir / STATE_FILE, json.dumps(state).encode())
        self.device_id = device_id
        logger.info("enrolled with %s as %s", self.gateway, device_id)
        return device_id

    # -- the off-site tunnel -----------------------------------------------------------------

    def tunnel(self, public_key: str) -> dict[str, Any] | None:
        """Give the gateway this device's WireGuard public key; its answer's `tunnel` object.

        None when the gateway offers no tunnels (404). The same key again gets the same
        config back, so this is safe to repeat (agent/tunnel/setup.py parses the answer)."""
        status, answer = self.call("POST", "/api/v1/tunnel", {"public_key": public_key})
        if status == 404:
            return None
        if status != 200 or not isinstance(answer.get("tunnel"), dict):
            raise ClientError(f"tunnel refused ({status}): {answer.get('error', '?')}")
        tunnel: dict[str, Any] = answer["tunnel"]
        return tunnel

    # -- reporting -------------------------------------------------------------------------

    def queue(self, report: dict[str, Any]) -> Path:
        """Put a report (its JSON form) in the spool, named so that names sort by age."""
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.spool / f"{time.time_ns():020d}.json"
        while path.exists():  # two in one nanosecond tick (coarse clocks)
            path = path.with_name(f"{int(path.stem) + 1:020d}.json")
        write_private(path, json.dumps(report).encode())
        waiting = sorted(self.spool.glob("*.json"))
        for old in waiting[:-MAX_SPOOL]:
            logger.warning("spool full: dropping the old report %s", old.name)
            old.unlink(missing_ok=True)
        return path

    def flush(self) -> SendResult:
        """Send the spooled reports oldest first; stop at the first that can't be delivered."""
        token = self._token()
        sent = rejected = 0
        waiting = sorted(self.spool.glob("*.json")) if self.spool.exists() else []
        for i, path in enumerate(waiting):
            try:
                status, answer = self._post("/api/v1/report", path.read_bytes(), token)
            except (urllib.error.URLError, OSError) as exc:
                logger.warning(
                    "gateway unreachable, %d report(s) kept: %s", len(waiting) - i, _reason(exc)
                )
                return SendResult(sent, rejected, len(waiting) - i)
            if status in (200, 201, 202, 409):  # 409: the gateway has it or a newer one
                if "thresholds" in answer:  # the policy's figures, for the next report's checks
                    self.save_thresholds(answer["thresholds"])
                if status == 409:  # or it is dated ahead of the gateway's clock: say so
                    logger.warning("report %s not taken: %s", path.name, answer.get("error"))
                path.unlink(missing_ok=True)
                sent += status != 409
            elif status in (400, 403, 413):
                logger.error(
                    "report %s refused (%d): %s %s",
                    path.name,
                    status,
                    answer.get("field"),
                    answer.get("error"),
                )
                (self.state_dir / REJECTED).mkdir(exist_ok=True, mode=0o700)
                shutil.move(path, self.state_dir / REJECTED / path.name)
                rejected += 1
            else:  # 401 (token revoked?), 5xx: keep it and everything after it
                logger.warning("report not delivered (%d): %s", status, answer.get("error"))
                return SendResult(sent, rejected, len(waiting) - i)
        return SendResult(sent, rejected, 0)

    def save_thresholds(self, data: Any) -> None:
        """Keep the gateway's thresholds (as read, so an odd figure is its default)."""
        kept = json.dumps(thresholds_from_json(data).to_json(), sort_keys=True).encode()
        path = self.state_dir / THRESHOLDS_FILE
        if not path.exists() or path.read_bytes() != kept:
            logger.info("thresholds from the gateway's policy saved for the next checks")
            write_private(path, kept)

    def thresholds(self) -> Thresholds:
        """The thresholds the gateway gave last; the standard's defaults before it has."""
        try:
            return thresholds_from_json(json.loads((self.state_dir / THRESHOLDS_FILE).read_text()))
        except (OSError, ValueError):
            return Thresholds()

    def send(self, report: dict[str, Any]) -> SendResult:
        """Queue a report and send everything waiting, in order."""
        self.queue(report)
        return self.flush()


def json_object(raw: bytes) -> dict[str, Any]:
    """A response body's JSON object; {} for anything else (the status says what went wrong)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _reason(exc: BaseException) -> str:
    return in_words(getattr(exc, "reason", None) or exc)


def in_words(exc: BaseException | str) -> str:
    """What went wrong for a log line or a status: an OS error's own words, without Python's
    '[Errno 101]' in front ("Network is unreachable")."""
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


__all__ = ["Client", "ClientError", "SendResult", "in_words", "write_private"]

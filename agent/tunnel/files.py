"""What the agent keeps about its tunnel in its state folder, and how long it has been so.

- `tunnel.key`: the device's WireGuard private key (0600). Made here, never logged, never
  sent: only its public key goes to the gateway.
- `tunnel.json`: the gateway's last TunnelConfig and when it was fetched.
- `tunnel-status.json`: the last state and place, and `since`, so that a restart of the agent
  doesn't reset how long the tunnel has been down (the gateway alerts on that).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.client import write_private
from agent.report import ReportError, TunnelUp, Where
from agent.tunnel.config import TunnelConfig, new_private_key, parse_config, valid_key

KEY_FILE = "tunnel.key"
CONFIG_FILE = "tunnel.json"
STATUS_FILE = "tunnel-status.json"


@dataclass(frozen=True)
class Status:
    """The tunnel's state and place as last decided, and when that state began."""

    state: TunnelUp
    where: Where
    since: datetime
    endpoint_ip: str | None = None  # the endpoint's address last written into the config


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _time(value: object) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else None


class TunnelFiles:
    """The tunnel's files in one agent state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def private_key(self) -> str:
        """The device's private key, made (0600) the first time it is asked for."""
        path = self.state_dir / KEY_FILE
        try:
            key = path.read_text().strip()
        except OSError:
            key = ""
        if not valid_key(key):
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = new_private_key()
            write_private(path, key.encode() + b"\n")
        return key

    def save_config(self, config: TunnelConfig, fetched_at: datetime) -> None:
        body = {"config": config.to_json(), "fetched_at": fetched_at.isoformat()}
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.state_dir / CONFIG_FILE, json.dumps(body, indent=1).encode())

    def config(self) -> tuple[TunnelConfig, datetime | None] | None:
        """The saved config and when it was fetched; None when there is none (or it is bad)."""
        data = _json(self.state_dir / CONFIG_FILE)
        if not data:
            return None
        try:
            return parse_config(data.get("config")), _time(data.get("fetched_at"))
        except ReportError:
            return None

    def forget_config(self) -> None:
        (self.state_dir / CONFIG_FILE).unlink(missing_ok=True)

    def status(self) -> Status | None:
        data = _json(self.state_dir / STATUS_FILE)
        since = _time(data.get("since"))
        if since is None or data.get("state") not in ("up", "down", "off"):
            return None
        state: TunnelUp = data["state"]
        where: Where = data["where"] if data.get("where") in ("on_site", "off_site") else "unknown"
        endpoint_ip = data.get("endpoint_ip")
        return Status(
            state=state,
            where=where,
            since=since,
            endpoint_ip=endpoint_ip if isinstance(endpoint_ip, str) else None,
        )

    def forget_status(self) -> None:
        (self.state_dir / STATUS_FILE).unlink(missing_ok=True)

    def save_status(self, status: Status) -> None:
        body = {
            "state": status.state,
            "where": status.where,
            "since": status.since.isoformat(),
            "endpoint_ip": status.endpoint_ip,
        }
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.state_dir / STATUS_FILE, json.dumps(body).encode())


__all__ = ["CONFIG_FILE", "KEY_FILE", "STATUS_FILE", "Status", "TunnelFiles"]

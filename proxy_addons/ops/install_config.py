"""An installation's settings: /etc/schoolgate/schoolgate.env, as deploy/install.sh lays it out.

The same KEY=VALUE file feeds the systemd units (EnvironmentFile=) and the
`schoolgate` wrapper (sourced by sh), so it is read here the way both read it:
one assignment a line, `#` comments, values optionally in double or single quotes.
`schoolgate doctor` uses it to know which paths, ports and mode to check.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_FILE = Path("/etc/schoolgate/schoolgate.env")
SERVICE_USER = "schoolgate"

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class ConfigError(ValueError):
    """The settings file can't be read as KEY=VALUE lines; the message names file and line."""


def read_env_file(path: Path) -> dict[str, str]:
    """The assignments in an EnvironmentFile-style file."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ConfigError(f"{path}:{number}: expected NAME=VALUE, found {raw.strip()[:60]!r}")
        name, value = match.groups()
        value = value.strip()
        if value[:1] in ("'", '"'):
            try:
                parts = shlex.split(value)
            except ValueError as exc:
                raise ConfigError(f"{path}:{number}: {name}: {exc}") from None
            value = parts[0] if len(parts) == 1 else " ".join(parts)
        values[name] = value
    return values


@dataclass(frozen=True)
class InstallConfig:
    """What the units run with; defaults are install.sh's."""

    env_file: Path | None = None
    policy: Path = Path("/etc/schoolgate/school.yaml")
    var: Path = Path("/var/lib/schoolgate")
    etc: Path = Path("/etc/schoolgate")
    service_user: str = SERVICE_USER
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    proxy_modes: str = "--set mode=regular"
    web_host: str = "127.0.0.1"
    web_port: int = 8081
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    dsn: str = ""
    workers: int = 1

    @property
    def transparent(self) -> bool:
        """Transparent mode is on: the firewall must redirect to the gateway."""
        return "transparent" in self.proxy_modes

    @property
    def transparent_port(self) -> int | None:
        """The port of mitmproxy's transparent listener (mode=transparent@PORT)."""
        match = re.search(r"transparent(?:@(?:[^\s:@]*:)?(\d+))?", self.proxy_modes)
        if not match:
            return None
        return int(match.group(1)) if match.group(1) else self.listen_port

    @classmethod
    def from_values(cls, values: Mapping[str, str], env_file: Path | None = None) -> InstallConfig:
        def num(name: str, default: int) -> int:
            text = values.get(name, "").strip()
            if not text:
                return default
            try:
                return int(text)
            except ValueError:
                where = f"{env_file}: " if env_file else ""
                raise ConfigError(f"{where}{name} must be a number, not {text!r}") from None

        base = cls()
        policy = Path(values.get("SCHOOLGATE_POLICY") or base.policy)
        return cls(
            env_file=env_file,
            policy=policy,
            var=Path(values.get("SCHOOLGATE_VAR") or base.var),
            etc=policy.parent,
            service_user=values.get("SCHOOLGATE_USER") or base.service_user,
            listen_host=values.get("SCHOOLGATE_LISTEN_HOST") or base.listen_host,
            listen_port=num("SCHOOLGATE_LISTEN_PORT", base.listen_port),
            proxy_modes=values.get("SCHOOLGATE_PROXY_MODES") or base.proxy_modes,
            web_host=values.get("SCHOOLGATE_WEB_HOST") or base.web_host,
            web_port=num("SCHOOLGATE_WEB_PORT", base.web_port),
            metrics_host=values.get("SCHOOLGATE_METRICS_HOST") or base.metrics_host,
            metrics_port=num("SCHOOLGATE_METRICS_PORT", base.metrics_port),
            dsn=values.get("SCHOOLGATE_DSN", ""),
            workers=num("SCHOOLGATE_WORKERS", base.workers),
        )

    @classmethod
    def load(cls, path: Path) -> InstallConfig:
        return cls.from_values(read_env_file(path), env_file=path)

"""The doctor's check of the configured ports: Schoolgate listening on each, or free for it."""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass

import psutil

from proxy_addons.ops.doctor.findings import Check, fail, ok, warn
from proxy_addons.ops.install_config import InstallConfig


@dataclass(frozen=True)
class Listener:
    pid: int | None
    command: str  # short, to show
    ours: bool = False  # a Schoolgate process (by its full command line)


def tcp_listeners() -> dict[int, list[Listener]]:
    """Listening TCP ports and the processes behind them (pid None when not ours to see)."""
    found: dict[int, list[Listener]] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        command, ours = "", False
        if conn.pid:
            try:
                argv = psutil.Process(conn.pid).cmdline()
            except (psutil.Error, OSError):
                argv = []
            full = " ".join(argv)
            ours = "schoolgate" in full or "proxy_addons" in full
            # "python3.13 server.py", not the full paths: enough to recognise it.
            command = " ".join(" ".join(os.path.basename(a) for a in argv[:4]).split())
        found.setdefault(conn.laddr.port, []).append(Listener(conn.pid, command, ours))
    return found


def _bind_problem(host: str, port: int) -> str | None:
    """Why binding host:port fails, or None (a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this machine"
            return exc.strerror or str(exc)
    return None


def check_port(
    name: str,
    host: str,
    port: int,
    setting: str,
    service: str,
    listeners: dict[int, list[Listener]],
) -> Check:
    """A configured port: ours listening is OK; another program on it is a FAIL."""
    where = f"{host}:{port}"
    found = listeners.get(port, [])
    ours = [item for item in found if item.ours]
    if ours:
        return ok(name, f"listening on {where} (pid {ours[0].pid})")
    if found:
        others = [item for item in found if item.pid]
        if not others:
            return warn(
                name,
                f"something listens on port {port}, but this user can't see what",
                "run schoolgate doctor as root",
            )
        return fail(
            name,
            f"port {port} is taken by another program (pid {others[0].pid}: "
            f"{others[0].command[:80]}): {service} can't listen there",
            f"stop that program, or set another {setting} in schoolgate.env",
        )
    problem = _bind_problem(host, port)
    if problem:
        return fail(name, f"{service} can't listen on {where}: {problem}", f"check {setting}")
    return warn(
        name,
        f"nothing listens on {where}: {service} is not running",
        f"systemctl start {service}; journalctl -u {service} says why it stopped",
    )


def check_ports(
    cfg: InstallConfig, listeners: dict[int, list[Listener]] | None = None
) -> list[Check]:
    found = tcp_listeners() if listeners is None else listeners
    checks = [
        check_port(
            "proxy port",
            cfg.listen_host,
            cfg.listen_port,
            "SCHOOLGATE_LISTEN_PORT",
            "schoolgate",
            found,
        ),
        check_port(
            "web port", cfg.web_host, cfg.web_port, "SCHOOLGATE_WEB_PORT", "schoolgate-web", found
        ),
    ]
    if cfg.metrics_port:
        checks.append(
            check_port(
                "metrics port",
                cfg.metrics_host,
                cfg.metrics_port,
                "SCHOOLGATE_METRICS_PORT",
                "schoolgate",
                found,
            )
        )
    port = cfg.transparent_port
    if port is not None and port != cfg.listen_port:
        checks.append(
            check_port(
                "transparent port",
                cfg.listen_host,
                port,
                "SCHOOLGATE_PROXY_MODES",
                "schoolgate",
                found,
            )
        )
    return checks

"""Who and what the device is, for the report header; every fact is best effort."""

from __future__ import annotations

import getpass
import ipaddress
import re
import socket
import sys
from dataclasses import dataclass

import psutil

from agent.checks import linux as linux_checks
from agent.runner import Runner


@dataclass(frozen=True)
class DeviceFacts:
    hostname: str
    os_name: str  # linux | macos | windows
    os_version: str
    os_release: str | None
    serial: str | None
    user: str | None
    ips: tuple[str, ...]
    macs: tuple[str, ...]


def current_platform() -> str:
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"


def _serial(runner: Runner, platform: str) -> str | None:
    if platform == "linux":
        text = runner.read("/sys/class/dmi/id/product_serial")  # root only on most distros
        value = text.strip() if text else ""
    elif platform == "macos":
        res = runner.run(["ioreg", "-c", "IOPlatformExpertDevice", "-d", "2"], timeout=10)
        m = re.search(r'"IOPlatformSerialNumber" = "([^"]+)"', res.stdout)
        value = m.group(1) if m else ""
    else:
        res = runner.run(
            [
                "powershell.exe",
                "-NoProfile",
                "-Command",
                "(Get-CimInstance Win32_BIOS).SerialNumber",
            ],
            timeout=30,
        )
        value = res.stdout.strip() if res.ok else ""
    if not value or value.lower() in ("none", "to be filled by o.e.m.", "default string"):
        return None
    return value[:128]


def _user() -> str | None:
    users = [u.name for u in psutil.users() if u.name]
    if users:
        return users[0]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _addresses() -> tuple[tuple[str, ...], tuple[str, ...]]:
    ips: list[str] = []
    macs: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                ip = a.address.split("%")[0]
                try:
                    parsed = ipaddress.ip_address(ip)
                except ValueError:
                    continue
                if not parsed.is_loopback and not parsed.is_link_local:
                    ips.append(ip)
            elif a.family == psutil.AF_LINK:
                mac = a.address.lower().replace("-", ":")
                if (
                    re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac)
                    and mac != "00:00:00:00:00:00"
                ):
                    macs.append(mac)
    return tuple(dict.fromkeys(ips))[:32], tuple(dict.fromkeys(macs))[:32]


def gather(runner: Runner, platform: str | None = None) -> DeviceFacts:
    platform = platform or current_platform()
    os_version, os_release = "unknown", None
    if platform == "linux":
        rel = linux_checks.os_release(runner)
        os_version = rel.get("VERSION_ID") or "unknown"
        os_release = f"{rel.get('ID', 'linux')} {rel.get('VERSION_ID', '')}".strip()
    elif platform == "macos":
        res = runner.run(["sw_vers", "-productVersion"], timeout=10)
        os_version = res.stdout.strip() or "unknown"
        os_release = f"macos {os_version}"
    else:
        res = runner.run(["cmd", "/c", "ver"], timeout=10)
        m = re.search(r"(\d+\.\d+\.\d+(?:\.\d+)?)", res.stdout)
        os_version = m.group(1) if m else "unknown"
        os_release = f"windows {os_version}"
    ips, macs = _addresses()
    return DeviceFacts(
        hostname=socket.gethostname(),
        os_name=platform,
        os_version=os_version[:64],
        os_release=os_release,
        serial=_serial(runner, platform),
        user=_user(),
        ips=ips,
        macs=macs,
    )

"""Compliance thresholds; defaults here, real values come from the gateway's policy."""

from __future__ import annotations

from dataclasses import dataclass, field


def _min_versions() -> dict[str, str]:
    return {
        "ubuntu": "22.04",
        "debian": "12",
        "fedora": "40",
        "macos": "14",
        "windows": "10.0.19045",
    }


@dataclass(frozen=True)
class Thresholds:
    idle_lock_max_s: int = 900
    lock_delay_max_s: int = 5
    security_update_max_days: int = 14
    av_signature_max_days: int = 7
    xprotect_max_days: int = 60  # Apple ships XProtect less often than ClamAV/Defender
    # keyed by OS id (ubuntu, debian, fedora, macos, windows); compared numerically
    min_os_versions: dict[str, str] = field(default_factory=_min_versions)
    # "<os id> <version>" -> ISO end-of-life date; kept on the gateway, empty on devices
    eol: dict[str, str] = field(default_factory=dict)

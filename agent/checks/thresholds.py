"""Compliance thresholds: the figures the checks judge by, set in the gateway's policy
(`devices.thresholds`, docs/policy.md) and given to the agent in the answer to each report.

The defaults are the DfE cyber security standard's and NCSC's figures, so a device that has
not heard from its gateway yet still judges by the standard. The agent keeps the last
thresholds it was given in its state folder (`thresholds.json`) and builds the next report's
checks with them. This module is the shape both sides share: the gateway never sends
anything the agent can't read, and the agent reads anything odd as the default, never fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any


def _min_versions() -> dict[str, str]:
    return {
        "ubuntu": "22.04",
        "debian": "12",
        "fedora": "40",
        "macos": "14",
        "windows": "10.0.19045",
    }


_LISTS = ("software_approved", "software_banned", "admin_accounts_approved")
_MAX_LIST = 500  # patterns per list; more is a mistake, not a policy


@dataclass(frozen=True)
class Thresholds:
    idle_lock_max_s: int = 900  # school policy / CIS (Windows InactivityTimeoutSecs 900)
    lock_delay_max_s: int = 5  # CIS (macOS askForPasswordDelay)
    security_update_max_days: int = 14  # DfE standard: critical and high within 14 days
    av_signature_max_days: int = 7
    xprotect_max_days: int = 60  # Apple ships XProtect less often than ClamAV/Defender
    password_min_length: int = 12  # NCSC / school policy
    lockout_max_attempts: int = 10  # DfE standard: lock after at most 10 failed attempts
    laptop_support_years: int = 5  # DfE standard: laptops and desktops
    tablet_support_years: int = 3  # DfE standard: tablets
    # keyed by OS id (ubuntu, debian, fedora, macos, windows); compared numerically
    min_os_versions: dict[str, str] = field(default_factory=_min_versions)
    # "<os id> <version>" -> ISO end-of-life date; kept on the gateway, empty on devices
    eol: dict[str, str] = field(default_factory=dict)
    # The school's lists (policy data, devices.software / devices.accounts): shell-style
    # patterns matched without regard to case against application and account names.
    software_approved: tuple[str, ...] = ()  # empty: no approved list, only banned is judged
    software_banned: tuple[str, ...] = ()
    admin_accounts_approved: tuple[str, ...] = ()  # local administrators the school expects
    # Set per device by the gateway: this device is on devices.removable_storage.allowed.
    usb_storage_allowed: bool = False

    def to_json(self) -> dict[str, Any]:
        """What the gateway tells an agent (the EOL table stays on the gateway)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "eol"}
        out["min_os_versions"] = dict(self.min_os_versions)
        for name in _LISTS:
            out[name] = list(getattr(self, name))
        return out


def thresholds_from_json(data: Any) -> Thresholds:
    """Thresholds from the gateway's answer (or the saved copy). A figure that is missing or
    not a whole number from 0, or a list that is not short strings, keeps its default: a
    strange answer never stops the checks."""
    if not isinstance(data, dict):
        return Thresholds()
    changes: dict[str, Any] = {}
    for f in fields(Thresholds):
        value = data.get(f.name)
        if f.name == "eol":
            continue
        if f.name in _LISTS:
            if (
                isinstance(value, list)
                and len(value) <= _MAX_LIST
                and all(isinstance(v, str) and 0 < len(v) <= 200 for v in value)
            ):
                changes[f.name] = tuple(value)
        elif f.name == "usb_storage_allowed":
            if isinstance(value, bool):
                changes[f.name] = value
        elif f.name == "min_os_versions":
            if isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                changes[f.name] = dict(value)
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**6:
            changes[f.name] = value
    return replace(Thresholds(), **changes)

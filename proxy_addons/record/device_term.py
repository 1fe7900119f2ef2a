"""School devices against the DfE cyber security standard over a term, as counts.

The figures are worked out from the devices' reports by devices/term_compliance.py (a layer
above this one) and handed to the governors' report by its callers, the way the termly
checks' summary is. Counts only: no device, user or allocation is named here, so the
governors' report can carry them; the IT provider's own pages name devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

OVERALL = "overall"

# Each check in the words a governor reads, in the order the standard lists them; a check
# not named here (a newer agent's) is shown by its id after these.
CHECK_WORDS = {
    OVERALL: "Every check passed (the device as a whole)",
    "disk_encryption": "Disk encrypted",
    "screen_lock": "Screen locks when left",
    "patches": "Security updates installed in time (14 days at most)",
    "removable_storage": "USB memory sticks blocked",
    "software": "Only approved software installed",
    "accounts": "No unapproved administrator accounts",
    "password_policy": "Password length and lock-out set",
    "os_supported": "Operating system still supported",
    "hardware_age": "Hardware young enough for security support",
    "firewall": "Firewall on",
    "antimalware": "Anti-malware running and up to date",
    "mdm_compliance": "Compliant with the school's MDM policy",
}


@dataclass(frozen=True)
class CheckFigures:
    """One check (or OVERALL) over the term. `whole_term + at_some_point + not_reported` is
    every device counted; `from_mdm` of those that reported came from the MDM's export."""

    check: str
    devices: int
    whole_term: int  # reported, and compliant on it every day they were in use
    at_some_point: int  # failed, could not tell (unknown) or fell silent at some point
    device_days: float  # the days those devices spent so, added up
    now: int  # not compliant at the end of the period (today while the term runs)
    not_reported: int  # never reported it in the term: unknown, never counted as compliant
    from_mdm: int

    @property
    def words(self) -> str:
        return CHECK_WORDS.get(self.check, self.check.replace("_", " ").capitalize())


@dataclass(frozen=True)
class DeviceFigures:
    """The term's device figures: OVERALL first, then each check reported."""

    start: datetime
    until: datetime  # the end of term, or now while it runs
    ended: bool
    devices: int  # enrolled (or imported from the MDM) and not revoked before the term
    reported: int  # sent at least one report in the term
    from_mdm: int  # of `devices`, imported from the MDM's export (no agent)
    silent_after_days: int  # a device silent this long counts as not compliant
    rows: tuple[CheckFigures, ...]

    @property
    def overall(self) -> CheckFigures | None:
        return self.rows[0] if self.rows else None

    @property
    def checks(self) -> tuple[CheckFigures, ...]:
        return self.rows[1:]


CSV_HEADER = [
    "check",
    "in words",
    "devices",
    "compliant all term",
    "not compliant at some point",
    "device-days not compliant",
    "not compliant at the end",
    "never reported",
    "from the MDM",
]


def csv_rows(figures: DeviceFigures) -> list[list[object]]:
    """The figures as rows for devices.csv (CSV_HEADER)."""
    return [
        [
            r.check,
            r.words,
            r.devices,
            r.whole_term,
            r.at_some_point,
            round(r.device_days, 1),
            r.now,
            r.not_reported,
            r.from_mdm,
        ]
        for r in figures.rows
    ]


def days_text(days: float) -> str:
    """Device-days as a governor reads them: "none", "under a day", "3.5"."""
    if days <= 0:
        return "none"
    if days < 0.05:
        return "under a day"
    return f"{days:.1f}".removesuffix(".0")


__all__ = [
    "CHECK_WORDS",
    "CSV_HEADER",
    "OVERALL",
    "CheckFigures",
    "DeviceFigures",
    "csv_rows",
    "days_text",
]

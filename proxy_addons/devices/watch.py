"""Watching enrolled devices from the gateway: OS end of life, alerts and device gauges.

End-of-life dates live on the gateway (policies/os-eol.yaml), not on devices, so one edit
there changes every device's verdict at its next report. Alerts about devices are technical
events for the IT provider: they name the device (hostname and id) and the failing checks,
never the signed-in user. They go through the durable outbox, whose workers in the gateway
deliver them (rows written by another process are picked up on the workers' idle poll).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from agent.checks.base import version_tuple
from agent.report import CheckResult, DeviceReport
from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import (
    DEVICE_NONCOMPLIANT,
    DEVICE_STALE,
    Audience,
    Event,
    local_time,
)
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.periodic import Periodic
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices import inventory
from proxy_addons.devices.alert_state import (
    UNKNOWN_GRACE,
    alert_unknown_devices,
    claim,
    forget,
    forget_all_but,
    recalled,
    remember,
)
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

OS_CHECK = "os_supported"
SWEEP_SECONDS = 300.0


# -- end of life -----------------------------------------------------------------------------


def load_eol(path: Path | None) -> dict[str, date]:
    """The EOL table: "<os id> <version>" -> last day of support; empty without a file.

    Read on each report (it is small), so an edit needs no restart; a broken file is logged
    and treated as empty, which leaves the devices' own verdicts in place.
    """
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        logger.error("OS end-of-life table %s can't be read: %s", path, exc)
        return {}
    table = raw.get("eol") if isinstance(raw, dict) else None
    out: dict[str, date] = {}
    for os_id, releases in (table or {}).items():
        for version, until in (releases or {}).items():
            try:
                out[f"{str(os_id).lower()} {version}"] = (
                    until if isinstance(until, date) else date.fromisoformat(str(until))
                )
            except ValueError:
                logger.error("OS end-of-life table %s: %s %s is not a date", path, os_id, version)
    return out


def _os_id_and_version(report: DeviceReport) -> tuple[str, str]:
    if report.os_release:
        os_id, _, version = report.os_release.strip().partition(" ")
        return os_id.lower(), version.strip() or report.os_version
    if report.os_name in ("macos", "windows"):
        return report.os_name, report.os_version
    return "", report.os_version  # a Linux report without its distribution


def os_verdict(eol: Mapping[str, date], report: DeviceReport, today: date) -> CheckResult:
    """Whether the report's OS release is still supported, by the gateway's table.

    The longest matching entry wins ("windows 10.0.19045" over "windows 10"); a release
    the table doesn't know stays unknown, which never counts as compliant.
    """
    os_id, version = _os_id_and_version(report)
    evidence: dict[str, Any] = {"os": os_id, "version": version, "source": "gateway"}
    have = version_tuple(version)
    if not os_id or have is None:
        return CheckResult(
            OS_CHECK, "unknown", "The OS name and version were not reported.", evidence
        )
    best: tuple[tuple[int, ...], str, date] | None = None
    for key, until in eol.items():
        name, _, eol_version = key.partition(" ")
        want = version_tuple(eol_version)
        if name != os_id or want is None or have[: len(want)] != want:
            continue
        if best is None or len(want) > len(best[0]):
            best = (want, key, until)
    if best is None:
        reason = f"{os_id} {version} is not in the gateway's end-of-life table."
        return CheckResult(OS_CHECK, "unknown", reason, evidence)
    _, key, until = best
    evidence.update(eol=until.isoformat(), entry=key)
    if today > until:
        reason = f"{os_id} {version} reached end of support on {until.isoformat()}."
        return CheckResult(OS_CHECK, "fail", reason, evidence)
    reason = f"{os_id} {version} is supported until {until.isoformat()}."
    return CheckResult(OS_CHECK, "pass", reason, evidence)


def with_eol(report: DeviceReport, eol: Mapping[str, date], today: date) -> DeviceReport:
    """The report with the gateway's OS verdict in place of the device's, unless the device
    already failed it (below the minimum version). Without a table, the report as sent."""
    if not eol:
        return report
    verdict = os_verdict(eol, report, today)
    results = [r for r in report.results if r.id != OS_CHECK]
    sent = next((r for r in report.results if r.id == OS_CHECK), None)
    results.append(sent if sent is not None and sent.status == "fail" else verdict)
    return dataclasses.replace(report, results=tuple(results))


# -- alerts ----------------------------------------------------------------------------------


def _failing(report: DeviceReport) -> list[str]:
    return sorted(r.id for r in report.results if r.status != "pass")


def noncompliant_event(report: DeviceReport, policy: Policy, at: datetime) -> Event:
    """A device's report failed checks: which ones, and which device (never its user)."""
    failing = _failing(report) or ["no checks reported"]
    return Event(
        kind=DEVICE_NONCOMPLIANT,
        severity=3,
        audience=Audience.TECHNICAL,
        summary=f"Device {report.hostname} is not compliant",
        fields={
            "hostname": report.hostname,
            "device_id": report.device_id,
            "checks": ", ".join(failing),
            "time": local_time(policy.timezone, at),
        },
        fold_key=f"{DEVICE_NONCOMPLIANT}|{report.device_id}|{','.join(failing)}",
        at=at,
        timezone=policy.timezone.key,
    )


def stale_event(device: inventory.Device, policy: Policy, at: datetime) -> Event:
    """A device has stopped reporting: it counts as non-compliant until it reports again."""
    last = local_time(policy.timezone, device.last_report_at) if device.last_report_at else "never"
    return Event(
        kind=DEVICE_STALE,
        severity=3,
        audience=Audience.TECHNICAL,
        summary=f"Device {device.hostname} has not reported for {policy.devices.stale_days} days",
        fields={
            "hostname": device.hostname,
            "device_id": device.device_id,
            "last_report": last,
            "time": local_time(policy.timezone, at),
        },
        fold_key=f"{DEVICE_STALE}|{device.device_id}|{last}",
        at=at,
        timezone=policy.timezone.key,
    )


def raise_technical(store: Store, policy: Policy, event: Event) -> int:
    """Store `event` in the outbox for the technical channels; returns the rows written.
    The gateway's outbox workers deliver it (rows another process wrote at their idle poll)."""
    logger.info("Device alert: %s for %s", event.kind, event.fields.get("device_id", "?"))
    return len(raise_alert(AlertOutbox(store), policy, event))


def alert_noncompliance(store: Store, policy: Policy, report: DeviceReport, at: datetime) -> bool:
    """Raise an alert when the report fails a check the device's last report did not.

    The failing checks last seen are kept in the store (device_alerts), not only in the
    device's row, so an alert that could not be raised is tried again at the next report,
    and a restart raises nothing twice. Returns whether an alert was raised.
    """
    if report.compliant:
        forget(store, DEVICE_NONCOMPLIANT, report.device_id)
        return False
    failing = _failing(report) or ["-"]
    earlier = recalled(store, DEVICE_NONCOMPLIANT, report.device_id)
    state = ",".join(failing)
    if earlier is not None and set(failing) <= set(earlier.split(",")):
        remember(store, DEVICE_NONCOMPLIANT, report.device_id, state, at)  # fewer: noted
        return False
    raise_technical(store, policy, noncompliant_event(report, policy, at))
    remember(store, DEVICE_NONCOMPLIANT, report.device_id, state, at)
    return True


class StaleSweep(Periodic):
    """The device sweep's periodic job. Raises each stale device once, until it reports
    again (then it may go stale anew), and each unknown MAC seen on the network once
    (proxy_addons/devices/alert_state.py).

    What was raised is kept in the store, keyed by the device's last report, so neither a
    restart nor a second gateway raises a still-stale device again. A device that never
    reported is left alone for `stale_days` after enrolment; a revoked one is left alone.
    """

    def __init__(
        self,
        store: Store,
        policy: Callable[[], Policy],
        interval: float = SWEEP_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        unknown_grace: timedelta = UNKNOWN_GRACE,
    ) -> None:
        super().__init__()
        self.store, self.policy, self.interval, self.clock = store, policy, interval, clock
        self.unknown_grace = unknown_grace

    def sweep(self) -> int:
        """One pass; returns how many devices were raised."""
        policy, now = self.policy(), self.clock()
        days = policy.devices.stale_days
        stale = [
            d
            for d in inventory.stale_devices(self.store, now, days)
            if not d.revoked
            and (d.last_report_at is not None or now - d.enrolled_at > timedelta(days=days))
        ]
        # A device that reported since may be raised again later.
        forget_all_but(self.store, DEVICE_STALE, {d.device_id for d in stale})
        raised = 0
        for device in stale:
            last = device.last_report_at.isoformat() if device.last_report_at else "never"
            if not claim(self.store, DEVICE_STALE, device.device_id, last, now):
                continue
            try:
                raise_technical(self.store, policy, stale_event(device, policy, now))
            except Exception:
                forget(self.store, DEVICE_STALE, device.device_id)  # tried again next sweep
                raise
            raised += 1
        return raised

    def sweep_unknown(self) -> int:
        """One pass over MACs seen on the network that no enrolled device reported."""
        policy = self.policy()
        return alert_unknown_devices(
            self.store,
            policy,
            self.clock(),
            lambda event: raise_technical(self.store, policy, event),
            self.unknown_grace,
        )

    thread_name = "device-stale"
    failure = "Device sweep failed; trying again later"

    def tick(self) -> None:
        self.sweep()
        self.sweep_unknown()


# -- metrics ---------------------------------------------------------------------------------


def device_counts(
    found: Iterable[inventory.Device],
) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Devices by compliance (stale first, then the last report) and checks by status."""
    compliance: Counter[str] = Counter({"compliant": 0, "non_compliant": 0, "stale": 0})
    checks: Counter[tuple[str, str]] = Counter()
    for device in found:
        if device.stale:
            compliance["stale"] += 1
        else:
            compliance["compliant" if device.compliant else "non_compliant"] += 1
        for result in device.results:
            checks[(str(result.get("id")), str(result.get("status")))] += 1
    return compliance, checks


__all__ = [
    "StaleSweep",
    "alert_noncompliance",
    "device_counts",
    "load_eol",
    "noncompliant_event",
    "os_verdict",
    "raise_technical",
    "stale_event",
    "with_eol",
]

"""Devices that can't run the agent (iPads, Chromebooks), from the school's MDM export.

`schoolgate devices import-mdm FILE.csv` reads the documented columns (name, serial, model,
os, os_version, last_seen, encrypted, passcode, compliant), or Microsoft Intune's "All
devices" export, whose column names are mapped (INTUNE). Each device is keyed by its serial:
importing again updates it. It is stored with source "mdm" and no usable token (the stored
hash is empty, which no token's SHA-256 matches), so it can never report or re-enrol as an
agent; its compliance is what the MDM said, shown as "from MDM". Applied whole or not at
all; a bad row is named by its line number."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import sqlalchemy as sa

from proxy_addons.devices.asset_log import ImportRefused
from proxy_addons.store import Store
from proxy_addons.store.schema import device_reports, devices
from proxy_addons.workflow import audit

COLUMNS = (
    "name",
    "serial",
    "model",
    "os",
    "os_version",
    "last_seen",
    "encrypted",
    "passcode",
    "compliant",
)
# Microsoft Intune admin centre, Devices > All devices > Export: its column names.
INTUNE = {
    "Device name": "name",
    "Serial number": "serial",
    "Model": "model",
    "OS": "os",
    "OS version": "os_version",
    "Last check-in": "last_seen",
    "Encrypted": "encrypted",
    "Compliance": "compliant",
}
YES = {"yes", "true", "1", "compliant", "encrypted", "on", "enabled"}
NO = {"no", "false", "0", "noncompliant", "non-compliant", "not compliant", "off", "disabled"}
NO_TOKEN = ""  # devices.token_hash of an MDM device: never equal to a SHA-256 hex digest
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M")


@dataclass(frozen=True)
class MdmDevice:
    line: int
    name: str
    serial: str
    model: str | None
    os_name: str | None
    os_version: str | None
    last_seen: datetime
    encrypted: bool | None
    passcode: bool | None
    compliant: bool | None  # the MDM's own verdict, when the export has one

    @property
    def device_id(self) -> str:
        """The same id every import, from the serial."""
        return "mdm-" + hashlib.sha256(self.serial.encode()).hexdigest()[:16]


def _flag(value: str | None, column: str) -> bool | None:
    word = (value or "").strip().lower()
    if not word or word in {"unknown", "not evaluated", "n/a"}:
        return None
    if word in YES:
        return True
    if word in NO:
        return False
    raise ValueError(f"{column} should be yes or no, not {value!r}")


def _time(value: str | None, tz: tzinfo) -> datetime:
    text = (value or "").strip()
    if not text:
        raise ValueError("last_seen is empty")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        for fmt in TIME_FORMATS:
            try:
                at = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"last_seen {text!r} is not a date and time") from None
    return (at if at.tzinfo else at.replace(tzinfo=tz)).astimezone(UTC)


def _text(row: dict[str, str], name: str, limit: int) -> str | None:
    value = (row.get(name) or "").strip()
    if len(value) > limit or not value.isprintable():
        raise ValueError(f"{name} should be one line of at most {limit} characters")
    return value or None


def _columns(names: list[str]) -> dict[str, str]:
    """Each header cell to its documented column (Intune's names mapped)."""
    mapped = {n: INTUNE.get(n.strip(), n.strip().lower()) for n in names}
    missing = [c for c in ("name", "serial", "last_seen") if c not in mapped.values()]
    if missing:
        raise ImportRefused(
            [f"line 1: the header has no {', '.join(missing)} (see docs/inventory.md)"]
        )
    return mapped


def read(text: str, tz: tzinfo) -> list[MdmDevice]:
    """Every row of an export; ImportRefused names every bad line."""
    reader = csv.DictReader(io.StringIO(text))
    mapped = _columns(list(reader.fieldnames or []))
    problems: list[str] = []
    found: list[MdmDevice] = []
    serials: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        row = {mapped[k]: v for k, v in raw.items() if k in mapped and isinstance(v, str)}
        try:
            name, serial = _text(row, "name", 253), _text(row, "serial", 128)
            if name is None or serial is None:
                raise ValueError("name and serial are both needed")
            if serial in serials:
                raise ValueError(f"serial {serial!r} is also on line {serials[serial]}")
            serials[serial] = line
            found.append(
                MdmDevice(
                    line=line,
                    name=name,
                    serial=serial,
                    model=_text(row, "model", 100),
                    os_name=_text(row, "os", 16),
                    os_version=_text(row, "os_version", 64),
                    last_seen=_time(row.get("last_seen"), tz),
                    encrypted=_flag(row.get("encrypted"), "encrypted"),
                    passcode=_flag(row.get("passcode"), "passcode"),
                    compliant=_flag(row.get("compliant"), "compliant"),
                )
            )
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        raise ImportRefused(problems)
    return found


def _result(d: MdmDevice, check: str, value: bool | None, what: str) -> dict[str, Any]:
    status = "unknown" if value is None else "pass" if value else "fail"
    said = {None: "does not say", True: "says yes", False: "says no"}[value]
    return {
        "id": check,
        "status": status,
        "reason": f"from MDM: the export {said} to {what}",
        "evidence": {"source": "mdm", "model": d.model or "?"},
    }


def results_of(d: MdmDevice) -> list[dict[str, Any]]:
    """The checks an MDM export can speak for, each marked as from MDM; the MDM's own verdict
    only when the export gives one (an export without the column has nothing to judge)."""
    found = [
        _result(d, "disk_encryption", d.encrypted, "encrypted"),
        _result(d, "screen_lock", d.passcode, "passcode set"),
    ]
    if d.compliant is not None:
        found.append(_result(d, "mdm_compliance", d.compliant, "compliant with the MDM's policy"))
    return found


def compliant_of(d: MdmDevice) -> bool:
    """Every check it speaks for passed, as for a device with the agent: an MDM calling a
    device compliant while its passcode is not known is not a pass here (the governors'
    figures count every check, and a device can't meet them all with one unknown)."""
    return all(r["status"] == "pass" for r in results_of(d))


@dataclass(frozen=True)
class MdmImportResult:
    added: int
    updated: int
    skipped: list[str]  # serials an enrolled agent already reports for


def import_mdm(store: Store, text: str, by: str, now: datetime, tz: tzinfo) -> MdmImportResult:
    """Add or update the export's devices (source "mdm"); audited as one import."""
    found = read(text, tz)
    added = updated = 0
    skipped: list[str] = []
    with store.begin() as conn:
        for d in found:
            agent = conn.execute(
                sa.select(devices.c.hostname).where(
                    devices.c.serial == d.serial, devices.c.source != "mdm"
                )
            ).first()
            if agent is not None:
                skipped.append(f"line {d.line}: {d.serial} is {agent.hostname}, an agent reports")
                continue
            values = {
                "hostname": d.name,
                "os_name": d.os_name,
                "os_version": d.os_version,
                "serial": d.serial,
                "last_report_at": d.last_seen,
                "last_generated_at": d.last_seen,
                "compliant": compliant_of(d),
                "results": results_of(d),
            }
            exists = conn.execute(
                sa.select(devices.c.device_id).where(devices.c.device_id == d.device_id)
            ).first()
            if exists is None:
                conn.execute(
                    devices.insert().values(
                        device_id=d.device_id,
                        token_hash=NO_TOKEN,
                        enrolled_at=now,
                        last_ips=[],
                        last_macs=[],
                        source="mdm",
                        **values,
                    )
                )
                added += 1
            else:
                conn.execute(
                    devices.update().where(devices.c.device_id == d.device_id).values(**values)
                )
                updated += 1
            _keep_history(conn, d, now)
        audit.append(
            conn,
            actor=by,
            action="device.mdm_import",
            subject="devices",
            detail={"added": added, "updated": updated, "skipped": len(skipped)},
            at=now,
        )
    return MdmImportResult(added=added, updated=updated, skipped=skipped)


def _keep_history(conn: sa.Connection, d: MdmDevice, now: datetime) -> None:
    """One history row per time the MDM saw it (importing the same export twice adds none)."""
    seen = conn.execute(
        sa.select(device_reports.c.id).where(
            device_reports.c.device_id == d.device_id,
            device_reports.c.generated_at == d.last_seen,
        )
    ).first()
    if seen is None:
        conn.execute(
            device_reports.insert().values(
                device_id=d.device_id,
                generated_at=d.last_seen,
                received_at=now,
                compliant=compliant_of(d),
                results=results_of(d),
                source="mdm",
            )
        )


__all__ = ["COLUMNS", "INTUNE", "MdmDevice", "MdmImportResult", "import_mdm", "read"]

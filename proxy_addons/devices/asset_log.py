"""The asset log: whom each device is allocated to, its asset tag and where it is.

Set one device at a time (the web app's device page) or from a CSV the school already keeps
(`schoolgate devices import-allocation`). A CSV is applied whole or not at all: every row is
checked and matched to one device first, and a bad row is reported with its line number.
Every change is in the audit trail, naming who made it."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from proxy_addons.store import Store
from proxy_addons.store.schema import devices
from proxy_addons.workflow import audit

FIELDS = ("allocated_to", "asset_tag", "location")
KEYS = ("device_id", "hostname", "serial")  # how a CSV row names its device, first found wins
LIMITS = {"allocated_to": 200, "asset_tag": 100, "location": 200}


class ImportRefused(ValueError):
    """The file was not applied; `problems` name each bad line (nothing was changed)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Allocation:
    allocated_to: str | None = None
    asset_tag: str | None = None
    location: str | None = None

    def values(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in FIELDS}


def clean(name: str, value: str | None) -> str | None:
    """One field as stored: trimmed, None when empty; refused when too long or not one line."""
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > LIMITS[name] or not value.isprintable():
        raise ValueError(f"{name} should be one line of at most {LIMITS[name]} characters")
    return value


def _apply(
    conn: sa.Connection,
    device_id: str,
    changes: dict[str, str | None],
    by: str,
    via: str,
    now: datetime,
) -> bool:
    """Write the changed fields and audit them; False when nothing changed."""
    row = conn.execute(
        sa.select(*(devices.c[n] for n in FIELDS)).where(devices.c.device_id == device_id)
    ).first()
    if row is None:
        raise KeyError(device_id)
    before = row._asdict()
    changed = {n: v for n, v in changes.items() if before[n] != v}
    if not changed:
        return False
    conn.execute(devices.update().where(devices.c.device_id == device_id).values(**changed))
    detail = {"via": via, "changed": {n: {"from": before[n], "to": v} for n, v in changed.items()}}
    audit.append(
        conn, actor=by, action="device.allocation", subject=device_id, detail=detail, at=now
    )
    return True


def set_allocation(
    store: Store, device_id: str, allocation: Allocation, by: str, now: datetime
) -> bool:
    """Set one device's asset-log fields (from the web app); audited; False if unchanged."""
    with store.begin() as conn:
        return _apply(conn, device_id, allocation.values(), by, "web", now)


@dataclass(frozen=True)
class ImportResult:
    rows: int
    changed: int


def _header(reader: csv.DictReader[str]) -> tuple[str, list[str]]:
    names = [n.strip() for n in reader.fieldnames or []]
    reader.fieldnames = names
    key = next((k for k in KEYS if k in names), None)
    given = [f for f in FIELDS if f in names]
    if key is None or not given:
        raise ImportRefused(
            [
                "line 1: the header needs one of device_id, hostname or serial and at least one "
                f"of allocated_to, asset_tag, location (it has: {', '.join(names) or 'nothing'})"
            ]
        )
    return key, given


def _match(conn: sa.Connection, key: str, value: str) -> list[str]:
    column = devices.c[key]
    found = conn.execute(sa.select(devices.c.device_id).where(column == value)).scalars()
    return list(found)


def import_allocation(store: Store, text: str, by: str, now: datetime) -> ImportResult:
    """Apply an asset-log CSV: all rows or none. A column left out is left alone; an empty
    cell in a column that is there clears that field."""
    reader = csv.DictReader(io.StringIO(text))
    key, given = _header(reader)
    problems: list[str] = []
    planned: dict[str, tuple[int, dict[str, str | None]]] = {}
    with store.begin() as conn:
        for row in reader:
            line = reader.line_num
            wanted = (row.get(key) or "").strip()
            if not wanted:
                problems.append(f"line {line}: no {key}")
                continue
            try:
                changes = {f: clean(f, row.get(f)) for f in given}
            except ValueError as exc:
                problems.append(f"line {line}: {exc}")
                continue
            matches = _match(conn, key, wanted)
            if len(matches) != 1:
                why = "no device has" if not matches else f"{len(matches)} devices have"
                problems.append(f"line {line}: {why} {key} {wanted!r}")
            elif matches[0] in planned:
                problems.append(
                    f"line {line}: the same device as line {planned[matches[0]][0]} ({wanted!r})"
                )
            else:
                planned[matches[0]] = (line, changes)
        if problems:
            raise ImportRefused(problems)  # rolls the transaction back: nothing applied
        changed = sum(
            _apply(conn, device_id, changes, by, "import", now)
            for device_id, (_, changes) in planned.items()
        )
    return ImportResult(rows=len(planned), changed=changed)


__all__ = [
    "FIELDS",
    "Allocation",
    "ImportRefused",
    "ImportResult",
    "clean",
    "import_allocation",
    "set_allocation",
]

"""The access log for people and spreadsheets: CSV, JSON and a table (`schoolgate log`)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import tzinfo
from typing import Any

from proxy_addons.record.access_records import FIELDS, AccessRecord


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet won't run as a formula (search terms are typed by anyone)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV file (Excel's CRLF lines, the csv module's quoting), every cell formula-safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return out.getvalue()


def _printable(value: str | None) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in value) if value else ""


def to_csv(records: Iterable[AccessRecord]) -> str:
    return csv_text(FIELDS, (list(r.as_dict().values()) for r in records))


def to_json(records: Iterable[AccessRecord]) -> str:
    return json.dumps([r.as_dict() for r in records], ensure_ascii=False, indent=1) + "\n"


def to_table(records: Sequence[AccessRecord], tz: tzinfo) -> str:
    """A table for people: school time, who, what, and the decision in brief."""
    head = ("time", "user", "device", "profile", "decision", "category", "address", "search")
    rows = [head]
    for r in records:
        why = r.category or r.reason
        rows.append(
            (
                f"{r.time.astimezone(tz):%Y-%m-%d %H:%M:%S}",
                r.user or "-",
                r.ip or "-",
                r.profile,
                r.decision.upper(),
                why,
                _printable(r.url or f"{r.host} (host only)")[:100],
                _printable(r.search_term)[:60],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"

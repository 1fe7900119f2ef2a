"""Edits made straight to the policy files, outside the approval process, recorded and told.

The IT provider owns the box and may still edit the files; the schools' policies ask that
no change goes unrecorded. The gateway keeps the files as last applied under
var/policy-applied/; on each reload it compares them with the files now in force. A
difference an approved change explains (its files' hashes after applying) just moves the
copy on; any other becomes a `policy_changes` row in state "edited", outside_process, with
its diff, an audit record, and a notice to the DSL and the IT provider (`tell`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from proxy_addons.alerts.events import Audience, Event, local_time
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import policy_changes
from proxy_addons.workflow import audit
from proxy_addons.workflow.policy_changes import OUTSIDE, Change, read_change
from proxy_addons.workflow.policy_edits import (
    editable_lists,
    text_hash,
    unified_diff,
    write_atomically,
)

logger = logging.getLogger(__name__)

FOLDER = "policy-applied"
MAX_BYTES = 5_000_000  # the school's own files; UT1 folders come from `lists update`
RECENT_APPLIED = 200  # approved changes looked at to explain a difference
EDITED_OUTSIDE = "policy_edited_outside"  # the alert's kind


def tracked(policy: Policy) -> dict[str, Path]:
    """The files a change may touch, or a person may edit by hand: the policy's own YAML
    files and the school's own list files, those inside the policy's folder."""
    root = policy.path.parent
    out = {p.relative_to(root).as_posix(): p for p in policy.files if Path(p).is_relative_to(root)}
    out.update({rel: root / rel for rel in editable_lists(policy)})
    return dict(sorted(out.items()))


def hashed_lines(text: str) -> str:
    """An illegal-tier list file as it may be kept or shown outside the tier: each entry as
    the SHA-256 of the line (comments and blank lines dropped; already hashed lines kept), so
    a diff says that entries came or went, and which by hash, never what they are."""
    out = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        out.append(entry if entry.startswith("sha256:") else f"sha256:{text_hash(entry)}")
    return "".join(f"{line}\n" for line in out)


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_BYTES:
            return f"(over {MAX_BYTES} bytes: not compared)\n"
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def record_outside_edits(
    store: Store,
    policy: Policy,
    var_dir: Path,
    tell: Callable[[Change], None] | None = None,
    now: datetime | None = None,
) -> Change | None:
    """Compare the files in force with the copy last applied; record and tell an edit no
    approved change explains. The first time (no copy yet) the copy is only made."""
    copy = Path(var_dir) / FOLDER
    first = not copy.is_dir()
    files = tracked(policy)
    tier = {Path(p).resolve() for p in policy.illegal.sources}
    changed: dict[str, tuple[str, str]] = {}
    for rel, path in files.items():
        now_text, kept = _read(path), copy / rel
        before = _read(kept) if kept.is_file() else ""
        if Path(path).resolve() in tier:  # the copy and the diff hold hashes, never entries
            now_text, before = hashed_lines(now_text), hashed_lines(before)
        if first or now_text != before:
            changed[rel] = (before, now_text)
    if not changed:
        return None
    unexplained = {} if first else _unexplained(store, changed)
    row = _record(store, unexplained, now or datetime.now(UTC)) if unexplained else None
    for rel, (_, text) in changed.items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(copy / rel, text)
    if row is not None and tell is not None:
        try:
            tell(row)
        except Exception:
            logger.exception("Telling of a policy edit outside the approval process failed")
    return row


def _unexplained(store: Store, changed: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    applied: dict[str, set[str]] = {}
    query = (
        sa.select(policy_changes.c.change)
        .where(policy_changes.c.state == "applied")
        .order_by(policy_changes.c.id.desc())
        .limit(RECENT_APPLIED)
    )
    with store.connect() as conn:
        for change in conn.execute(query).scalars():
            for rel, digest in dict((change or {}).get("applied", {})).items():
                applied.setdefault(rel, set()).add(digest)
    return {
        rel: pair for rel, pair in changed.items() if text_hash(pair[1]) not in applied.get(rel, ())
    }


def _record(store: Store, changed: dict[str, tuple[str, str]], now: datetime) -> Change:
    names = ", ".join(sorted(changed))
    diff = unified_diff(changed)
    summary = f"Edited outside the approval process: {names}"[:500]
    with store.begin() as conn:
        inserted = conn.execute(
            policy_changes.insert().values(
                state="edited",
                kind="file_edit",
                summary=summary,
                reason=OUTSIDE,
                change={"kind": "file_edit", "files": sorted(changed)},
                diff=diff,
                proposed_by=OUTSIDE,
                proposed_at=now,
                applied_at=now,
                outside_process=True,
            )
        ).inserted_primary_key
        cid = int(inserted[0]) if inserted else 0
        audit.append(
            conn,
            actor=OUTSIDE,
            action="policy.edited_outside",
            subject=f"policy change {cid}",
            detail={"change": cid, "files": sorted(changed), "diff": diff},
        )
    logger.warning("Policy files %s %s (change %d)", names, OUTSIDE, cid)
    return read_change(store, cid)


def outside_edit_events(change: Change, policy: Policy) -> list[Event]:
    """The notice of an edit outside the process: to the DSL's team (the filtering changed
    with nobody's approval) and to the IT provider (who owns the files). No pupil's data."""
    at = change.proposed_at
    fields = {
        "policy": ", ".join(change.change.get("files", [])),
        "time": local_time(policy.timezone, at),
        "action": (
            "The filtering changed without a second person's approval. Ask the IT provider "
            "what was changed and why; the diff is under Filtering changes, change "
            f"{change.id} (schoolgate policy history --diff {change.id})."
        ),
    }
    return [
        Event(
            kind=EDITED_OUTSIDE,
            severity=3,
            audience=audience,
            summary="Filtering changed outside the approval process",
            fields=fields,
            fold_key=f"{EDITED_OUTSIDE}|{change.id}",
            at=at,
            timezone=policy.timezone.key,
        )
        for audience in (Audience.SAFEGUARDING, Audience.TECHNICAL)
    ]


__all__ = ["EDITED_OUTSIDE", "FOLDER", "outside_edit_events", "record_outside_edits", "tracked"]

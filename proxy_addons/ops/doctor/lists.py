"""The doctor's check of the category lists: the policy loads, every list reads, the index
is current and whole, and the last `schoolgate lists update` worked."""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy_addons.core.lists.build import build_index
from proxy_addons.core.lists.index import ListIndex
from proxy_addons.core.lists.layout import Expected, IndexDamaged
from proxy_addons.core.lists.sources import ListSourceError
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.ops.doctor.findings import Check, fail, ok, warn

LIST_UPDATE_STATUS = Path("run") / "lists-update.json"
LIST_UPDATE_MAX_AGE = timedelta(days=8)


def check_lists(policy_path: Path, var: Path, now: datetime | None = None) -> list[Check]:
    """The policy loads, every list reads, an index builds and the current one is whole
    (its checksum matches, and its header is of these lists); the last list update worked."""
    now = now or datetime.now(UTC)
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        return [fail("lists", f"the policy does not load: {exc}", f"fix {policy_path}")]
    cats = [c.sources for c in policy.categories.values()]
    try:
        # Named by the lists' paths, sizes and times; its header must say so too (an
        # index of other lists under this name is damage).
        expected = Expected.of(cats)
        current = var / "index" / f"lists-{expected.fingerprint}.idx"
    except ListSourceError as exc:
        return [fail("lists", f"a list can't be read: {exc}", f"fix {policy_path}")]
    if current.exists():
        try:
            with ListIndex.open(current, expected) as index:
                entries = index.entry_count
            return [
                ok(
                    "lists",
                    f"{len(cats)} categories, {entries} entries; the index is current and whole",
                ),
                *_list_update_status(var, now),
            ]
        except IndexDamaged as exc:
            return [
                fail(
                    "lists",
                    f"{exc}: the gateway blocks everything while it serves a damaged index, "
                    "and rebuilds it as soon as it sees the damage",
                    "schoolgate status (has it rebuilt it?); if not, systemctl restart "
                    "schoolgate; then check the disk (dmesg, smartctl)",
                ),
                *_list_update_status(var, now),
            ]
        except ListSourceError:
            pass  # unreadable: build one aside, as for a missing one
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="schoolgate-doctor-") as tmp:
            with ListIndex.open(build_index(cats, Path(tmp))) as index:
                entries = index.entry_count
    except ListSourceError as exc:
        return [fail("lists", f"the lists don't build into an index: {exc}", f"fix {policy_path}")]
    seconds = time.monotonic() - started
    return [
        ok(
            "lists",
            f"{len(cats)} categories, {entries} entries; an index builds in {seconds:.1f} s",
        ),
        warn(
            "lists",
            f"no index for the current lists in {var / 'index'}: the gateway builds it "
            "when it starts or reloads",
        ),
        *_list_update_status(var, now),
    ]


def _list_update_status(var: Path, now: datetime) -> list[Check]:
    """What the last `schoolgate lists update` said, if one ever ran."""
    results: list[Check] = []
    status_path = var / LIST_UPDATE_STATUS
    if status_path.exists():
        try:
            status = json.loads(status_path.read_text())
            at = datetime.fromisoformat(status["at"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            results.append(warn("lists", f"can't read {status_path}: {exc}"))
            return results
        if not status.get("ok"):
            results.append(
                warn(
                    "lists",
                    f"the last list update ({at:%Y-%m-%d %H:%M}) failed: {status.get('message')}; "
                    "the lists before it are in use",
                    "schoolgate lists update (see its message); journalctl -u schoolgate-lists",
                )
            )
        elif now - at > LIST_UPDATE_MAX_AGE:
            results.append(
                warn(
                    "lists",
                    f"the lists were last updated on {at:%Y-%m-%d}",
                    "systemctl status schoolgate-lists.timer; schoolgate lists update",
                )
            )
        else:
            results.append(ok("lists", f"lists updated {at:%Y-%m-%d %H:%M}"))
    return results

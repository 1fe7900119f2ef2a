"""The doctor's check of the running gateway, from what it says of itself (ops/status.py)."""

from __future__ import annotations

from pathlib import Path

from proxy_addons.ops.doctor.findings import Check, fail, ok, warn
from proxy_addons.ops.status import StatusError, age, found_problems, is_running, read_status


def check_gateway(var: Path, status_url: str | None = None) -> Check:
    """What the running gateway says of itself: a failed reload, a damaged index, a status
    file it cannot write, lost access-log records (live /status first: ops/status.py).
    A status that is not a gateway's is a FAIL; a live pid that is not the gateway's
    process is "not running"."""
    try:
        found = read_status(var, status_url)
    except StatusError as exc:
        return fail(
            "gateway",
            f"the gateway's status cannot be read: {exc}",
            "if a gateway runs, touch the policy file (its reload writes the status again); "
            "if none does, delete the status file",
        )
    if found is None:
        return warn("gateway", "no status: the gateway has not run with this var folder")
    status = found.status
    running = is_running(found)
    if not running.running:
        written = found.written_at
        return warn(
            "gateway",
            f"not running: {running.why} (its last status, written {age(written)}, is in "
            f"{found.source})",
        )
    bad, look = found_problems(found)
    if bad:
        return fail(
            "gateway",
            "; ".join(line.replace("\n", " ") for line in bad),
            "schoolgate status; free space in the var folder (df -h) or fix what the "
            "message names; the gateway tries again by itself",
        )
    if look:
        return warn("gateway", "; ".join(look), "check the disk (df -h, dmesg, smartctl)")
    index = status.get("list_index") or {}
    return ok(
        "gateway",
        f"running ({running.why}); policy in force since {status.get('loaded_at')}; list "
        f"index verified at {index.get('verified_at')}",
    )

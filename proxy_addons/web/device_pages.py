"""The device inventory pages of the admin web app, for the IT provider.

The list of enrolled devices (compliance, last report, user, stale or revoked) and one
device's last report, each check with its result, reason and raw evidence, with its history
over a term (when it became non-compliant, for how long, failing what; a span the MDM
reported says so). Only the IT provider sees them (named in the policy's
`unblocks.it_provider` or `monitoring.technical`, or an account with the `it` role): they
name who uses which device, which the rest of the staff need not see.
The one thing changed here is the asset log (whom a device is allocated to, its asset tag,
where it is: devices/asset_log.py), audited with the old and new values and who changed
them. Revoking stays on the command line (`schoolgate devices revoke`), where it is audited
with the operator's name.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from proxy_addons.core.policy.model import Policy, Term
from proxy_addons.devices import asset_log, history, inventory, tunnels
from proxy_addons.record.device_term import CHECK_WORDS
from proxy_addons.record.term_report import current_term, find_term
from proxy_addons.web.context import actor, policy, problem, services
from proxy_addons.web.nav import needs

bp = Blueprint("device_pages", __name__)


def state_text(device: inventory.Device) -> str:
    if device.revoked:
        return "Revoked"
    if device.stale:
        return "Stale"
    return "Compliant" if device.compliant else "Not compliant"


TUNNEL_WORDS = {"up": "Up", "down": "Down", "off": "Not in use here"}
WHERE_WORDS = {"on_site": "on the school network", "off_site": "away from school", "unknown": "?"}


def evidence_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


NO_TERM_DAYS = 90  # the history shown when the policy names no terms


def length_text(seconds: float) -> str:
    """How long a span lasted, in the two largest units that matter ("3 days 4 hours")."""
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    parts = [(days, "day"), (hours, "hour")] if days else [(hours, "hour"), (mins, "minute")]
    words = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in parts if n]
    return " ".join(words) or "under a minute"


def history_window(current: Policy, now: datetime) -> tuple[str, datetime, datetime, Term | None]:
    """The period the history covers: `?term=` if named, the current term, or else the last
    NO_TERM_DAYS days; ValueError for a term the policy doesn't name."""
    tz = current.timezone
    asked = request.args.get("term", "").strip()
    term = find_term(current, asked) if asked else current_term(current, now.astimezone(tz).date())
    if term is None:
        return f"the last {NO_TERM_DAYS} days", now - timedelta(days=NO_TERM_DAYS), now, None
    start = datetime.combine(term.start, time(), tz)
    end = min(datetime.combine(term.end + timedelta(days=1), time(), tz), now)
    return f"{term.name} ({term.start:%-d %b %Y} to {term.end:%-d %b %Y})", start, end, term


@bp.get("/devices")
@needs("technical", refusal="The device inventory is for the IT provider only.")
def device_list() -> ResponseReturnValue:
    current = policy()
    found = inventory.list_devices(
        services().store, services().workflow.clock(), current.devices.stale_days
    )
    return render_template(
        "web_devices.html",
        devices=found,
        state_text=state_text,
        failing=inventory.failing,
        stale_days=current.devices.stale_days,
        not_compliant=sum(not d.compliant for d in found),
        from_mdm=sum(d.from_mdm for d in found),
    )


@bp.get("/devices/<device_id>")
@needs("technical", refusal="The device inventory is for the IT provider only.")
def device_detail(device_id: str) -> ResponseReturnValue:
    current = policy()
    found = inventory.get_device(
        services().store, device_id[:64], services().workflow.clock(), current.devices.stale_days
    )
    if found is None:
        return problem("There is no such device.", 404)
    now = services().workflow.clock()
    try:
        period, start, end, term = history_window(current, now)
    except ValueError as exc:
        return problem(str(exc), 404)
    return render_template(
        "web_device.html",
        d=found,
        spans=history.history(services().store, found.device_id, start, end),
        period=period,
        term=term,
        terms=current.terms,
        now=end,
        ended=end < now,
        length_text=length_text,
        tunnel=tunnels.binding_of(services().store, found.device_id),
        tunnels_offered=current.devices.tunnel is not None,
        state_text=state_text,
        evidence_text=evidence_text,
        check_words=CHECK_WORDS,  # what the governors' report calls each check
        stale_days=current.devices.stale_days,
        tunnel_words=TUNNEL_WORDS,
        where_words=WHERE_WORDS,
        limits=asset_log.LIMITS,
    )


@bp.post("/devices/<device_id>/allocation")
@needs("technical", refusal="The device inventory is for the IT provider only.")
def device_allocation(device_id: str) -> ResponseReturnValue:
    """Set whom the device is allocated to, its asset tag and where it is (an empty box
    clears that field)."""
    device_id = device_id[:64]
    now = services().workflow.clock()
    if inventory.get_device(services().store, device_id, now, policy().devices.stale_days) is None:
        return problem("There is no such device.", 404)
    back = url_for("device_pages.device_detail", device_id=device_id) + "#allocation"
    try:
        allocation = asset_log.Allocation(
            **{f: asset_log.clean(f, request.form.get(f)) for f in asset_log.FIELDS}
        )
    except ValueError as exc:
        flash(f"Nothing was changed: {str(exc).replace('_', ' ')}.", "error")
        return redirect(back, 303)
    try:
        changed = asset_log.set_allocation(
            services().store, device_id, allocation, actor().user, now
        )
    except KeyError:  # gone since: removed by the purge or the command line
        return problem("There is no such device.", 404)
    flash("The asset log is updated." if changed else "Nothing had changed.", "ok")
    return redirect(back, 303)


__all__ = ["bp", "state_text"]

"""The device inventory pages of the admin web app, for the IT provider.

Read-only: the list of enrolled devices (compliance, last report, user, stale or revoked)
and one device's last report, each check with its result, reason and raw evidence. Only
the IT provider sees them (named in the policy's `unblocks.it_provider` or
`monitoring.technical`, or an account with the `it` role): they name who uses which
device, which the rest of the staff need not see.
Revoking stays on the command line (`schoolgate devices revoke`), where it is audited with
the operator's name.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from proxy_addons.devices import inventory, tunnels
from proxy_addons.web.context import policy, problem, services
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
    return render_template(
        "web_device.html",
        d=found,
        tunnel=tunnels.binding_of(services().store, found.device_id),
        tunnels_offered=current.devices.tunnel is not None,
        state_text=state_text,
        evidence_text=evidence_text,
        stale_days=current.devices.stale_days,
        tunnel_words=TUNNEL_WORDS,
        where_words=WHERE_WORDS,
    )


__all__ = ["bp", "state_text"]

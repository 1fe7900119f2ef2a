"""The device inventory pages of the admin web app, for the IT provider.

Read-only: the list of enrolled devices (compliance, last report, user, stale or revoked)
and one device's last report, each check with its result, reason and raw evidence. Only
the IT provider sees them (named in the policy's `unblocks.it_provider`, or an account with
the `it` role): they name who uses which device, which the rest of the staff need not see.
Revoking stays on the command line (`schoolgate devices revoke`), where it is audited with
the operator's name.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, g, render_template
from flask.typing import ResponseReturnValue

from proxy_addons.devices import inventory
from proxy_addons.web.context import policy, problem, services, staff_only

bp = Blueprint("device_pages", __name__)


def may_see_devices(account: Any, is_it_provider: Callable[[str], bool]) -> bool:
    return account is not None and (is_it_provider(account.username) or "it" in account.roles)


def state_text(device: inventory.Device) -> str:
    if device.revoked:
        return "Revoked"
    if device.stale:
        return "Stale"
    return "Compliant" if device.compliant else "Not compliant"


def evidence_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def it_only(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Signed-in staff who are the IT provider; other staff are refused."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if not may_see_devices(g.account, services().workflow.is_it_provider):
            return problem("The device inventory is for the IT provider only.", 403)
        return view(*args, **kwargs)

    return staff_only(wrapped)


@bp.app_context_processor
def nav() -> dict[str, Any]:
    return {
        "can_see_devices": may_see_devices(g.get("account"), services().workflow.is_it_provider)
    }


@bp.get("/devices")
@it_only
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
@it_only
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
        state_text=state_text,
        evidence_text=evidence_text,
        stale_days=current.devices.stale_days,
    )


__all__ = ["bp", "may_see_devices", "state_text"]

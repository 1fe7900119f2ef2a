"""The device inventory pages of the admin web app, for the IT provider.

Read-only: the list of enrolled devices (compliance, last report, user, stale or revoked)
and one device's last report, each check with its result, reason and raw evidence. Only
the IT provider sees them (named in the policy's `unblocks.it_provider`, or an account with
the `it` role): they name who uses which device, which the rest of the staff need not see.
Revoking stays on the command line (`schoolgate devices revoke`), where it is audited with
the operator's name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, render_template
from flask.typing import ResponseReturnValue

from proxy_addons.core.policy.model import Policy
from proxy_addons.devices import registry as dv
from proxy_addons.store import Store

Guard = Callable[[Callable[..., ResponseReturnValue]], Callable[..., ResponseReturnValue]]
Problem = Callable[[str, int], ResponseReturnValue]


def may_see_devices(account: Any, is_it_provider: Callable[[str], bool]) -> bool:
    return account is not None and (is_it_provider(account.username) or "it" in account.roles)


def state_text(device: dv.Device) -> str:
    if device.revoked:
        return "Revoked"
    if device.stale:
        return "Stale"
    return "Compliant" if device.compliant else "Not compliant"


def evidence_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def register(
    app: Flask,
    store: Store,
    policy: Callable[[], Policy],
    is_it_provider: Callable[[str], bool],
    staff_only: Guard,
    problem: Problem,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Add /devices and /devices/<id> to the admin app (behind its sign-in)."""

    def it_only(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            if not may_see_devices(g.account, is_it_provider):
                return problem("The device inventory is for the IT provider only.", 403)
            return view(*args, **kwargs)

        wrapped.__name__ = view.__name__
        return staff_only(wrapped)

    @app.context_processor
    def nav() -> dict[str, Any]:
        return {"can_see_devices": may_see_devices(g.get("account"), is_it_provider)}

    @app.get("/devices")
    @it_only
    def device_list() -> ResponseReturnValue:
        current = policy()
        found = dv.list_devices(store, clock(), current.devices.stale_days)
        return render_template(
            "web_devices.html",
            devices=found,
            state_text=state_text,
            failing=dv.failing,
            stale_days=current.devices.stale_days,
            not_compliant=sum(not d.compliant for d in found),
        )

    @app.get("/devices/<device_id>")
    @it_only
    def device_detail(device_id: str) -> ResponseReturnValue:
        current = policy()
        found = dv.get_device(store, device_id[:64], clock(), current.devices.stale_days)
        if found is None:
            return problem("There is no such device.", 404)
        return render_template(
            "web_device.html",
            d=found,
            state_text=state_text,
            evidence_text=evidence_text,
            stale_days=current.devices.stale_days,
        )


__all__ = ["may_see_devices", "register", "state_text"]

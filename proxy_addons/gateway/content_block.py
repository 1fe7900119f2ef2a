"""What a page blocked for its content becomes: the block page, the notice that replaces a
held body in its own format, and the safeguarding alert.

Drawn from the content filter's `Plan` (its decision record, threshold and the body's kind)
and the policy in force; gateway/addons/content_filter.py decides when.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from mitmproxy import http
from mitmproxy.net import encoding

from proxy_addons.alerts.events import Audience, Event, local_time
from proxy_addons.alerts.request_events import person_fields
from proxy_addons.core.content.page_text import Kind
from proxy_addons.core.policy.model import Policy
from proxy_addons.gateway.content_plan import Plan
from proxy_addons.pages import blockpage

CONTENT_BLOCK = "content_block"  # alert kind


def block_html(policy: Policy, flow: http.HTTPFlow, plan: Plan) -> str:
    """The block page for a page blocked for its content (or because it could not be read)."""
    record = plan.record
    profile = policy.profiles.get(str(record.get("profile")))
    staff = bool(profile and profile.may_request_unblock)
    score = record.get("content_score")
    label = str(record.get("category_label"))
    reason = (
        f"its content scored {score} for {label.lower()}, over the limit of {plan.threshold}"
        if score is not None
        else "its content could not be checked"
    )
    if staff and record.get("entry"):
        # Staff may ask for it to be unblocked, so they see why; pupils are not shown
        # the harmful words again.
        reason += f" (it contains: {record['entry']})"
    scheme = "https" if flow.request.scheme == "https" else "http"
    audiences = (("me", "Only me (to check it first)"),) + tuple(
        (f"profile:{p.name}", p.label) for p in policy.profiles.values()
    )
    return blockpage.render_block_page(
        blockpage.BlockPageContext(
            school=policy.school,
            reference=str(record["reference"]),
            host=str(record.get("host") or flow.request.pretty_host),
            url=str(record.get("url") or flow.request.pretty_url),
            reason=reason,
            category_label=label,
            at=datetime.now(UTC),
            portal=f"{scheme}://{policy.portal_host}",
            staff=staff,
            audiences=audiences,
            **blockpage.help_for(policy, record.get("category")),
        )
    )


def block_response(policy: Policy, flow: http.HTTPFlow, plan: Plan) -> http.Response:
    """The block page as a 403, for a response nothing of which has left yet."""
    return http.Response.make(
        403,
        block_html(policy, flow, plan),
        {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Schoolgate-Reference": str(plan.record["reference"]),
        },
    )


def block_notice(policy: Callable[[], Policy], flow: http.HTTPFlow, plan: Plan) -> bytes:
    """The replacement for a held body, in its own format (its headers have left); the
    policy is read for the HTML block page only."""
    ref = str(plan.record["reference"])
    message = f"Blocked by the school's web filter: the content was not suitable (reference {ref})."
    if plan.kind == Kind.HTML:
        text = block_html(policy(), flow, plan)
    elif plan.kind == Kind.EVENTS:
        payload = json.dumps({"error": message, "schoolgate_reference": ref})
        text = f"event: error\ndata: {payload}\n\n"
    elif plan.kind == Kind.JSON:
        text = json.dumps({"error": message, "schoolgate_reference": ref})
    else:
        text = message + "\n"
    data = text.encode(plan.charset if plan.kind == Kind.HTML else "utf-8", "replace")
    if plan.content_encoding in ("", "identity"):
        return data
    return encoding.encode(data, plan.content_encoding)


def content_event(
    record: dict[str, Any],
    policy: Policy,
    phrases: Sequence[str],
    total: int,
    threshold: int,
    at: datetime,
) -> Event:
    """A safeguarding alert for a page blocked for its content: who, where, why (raised by
    gateway/alert_intake.py from the content filter's verdict)."""
    category = str(record.get("category") or "")
    fields = person_fields(record)
    fields["site"] = str(record.get("host") or "")
    page = str(record.get("url") or "").split("?", 1)[0].split("#", 1)[0]
    if page:
        fields["page"] = page
    fields["category"] = category.replace("_", " ")
    fields["phrase"] = ", ".join(phrases)
    fields["score"] = f"{total} (limit {threshold})"
    fields["reference"] = str(record.get("reference") or "")
    fields["time"] = local_time(policy.timezone, at)
    who = record.get("user") or record.get("ip") or "unknown"
    return Event(
        kind=CONTENT_BLOCK,
        severity=4 if total > 2 * threshold else 3,
        audience=Audience.SAFEGUARDING,
        summary=f"Page blocked for its content: {category.replace('_', ' ')}",
        fields=fields,
        fold_key=f"{CONTENT_BLOCK}|{who}|{category}",
        at=at,
        timezone=policy.timezone.key,
    )

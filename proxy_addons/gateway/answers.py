"""The gateway's own answers to a blocked request: the block page, a plain block, a 400.

Drawn from a verdict's decision and the policy in force (its school, portal and
profiles); with no policy, the page still blocks, with what it can say.
"""

from __future__ import annotations

from datetime import datetime

from mitmproxy import http

from proxy_addons.core.decide import Decision, Reason
from proxy_addons.core.policy.model import Policy
from proxy_addons.pages import blockpage

PLAIN_REASONS = {
    Reason.BARE_IP: "the web address is written as numbers",
    Reason.DEFAULT: "this website is not on the school's list of allowed websites",
    Reason.FRONTING: "the page tried to hide where it really goes",
    Reason.INVALID: "the web address is not written correctly",
    Reason.UNAVAILABLE: "the school's filter is not ready; please try again in a minute",
    Reason.CIRCUMVENTION: "it is a way round the school's filter",
    Reason.SAFE_SEARCH: "this search engine cannot be kept to safe search, so it is blocked",
}


def plain_reason(decision: Decision) -> str:
    if decision.reason is Reason.RULE:
        if decision.allowed_when:
            times = ", ".join(w.replace("_", " ") for w in decision.allowed_when)
            return f"it is not allowed at this time (it is allowed: {times})"
        if decision.category_label:
            return "the school does not allow this kind of website for you"
        return "the school has chosen to block this website"
    return PLAIN_REASONS.get(decision.reason, "the school's filter blocked it")


def block_page(
    policy: Policy | None, decision: Decision, reference: str, at: datetime
) -> http.Response:
    """The block page for `decision`, with what the school lets this person do next."""
    staff = False
    audiences: tuple[tuple[str, str], ...] = ()
    school = "your school"
    portal = "http://schoolgate.local"
    if policy is not None:
        scheme = "https" if (decision.url or "").startswith("https:") else "http"
        school, portal = policy.school, f"{scheme}://{policy.portal_host}"
        if decision.profile in policy.profiles:
            staff = policy.profiles[decision.profile].may_request_unblock
        audiences = (("me", "Only me (to check it first)"),) + tuple(
            (f"profile:{p.name}", p.label) for p in policy.profiles.values()
        )
    page = blockpage.render_block_page(
        blockpage.BlockPageContext(
            school=school,
            reference=reference,
            host=decision.host,
            url=decision.url or decision.host,
            reason=plain_reason(decision),
            category_label=decision.category_label,
            at=at,
            portal=portal,
            staff=staff,
            illegal=decision.reason is Reason.ILLEGAL,
            audiences=audiences,
            **blockpage.help_for(policy, decision.category),
        )
    )
    return http.Response.make(
        403,
        page,
        {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Schoolgate-Reference": reference,
        },
    )


def bad_request(reference: str) -> http.Response:
    """A request whose names can't be read: refused, as a server would (RFC 9112 3.2)."""
    return http.Response.make(
        400,
        f"Bad request: the web address or Host header is not valid (reference {reference}).\n",
        {"Content-Type": "text/plain; charset=utf-8", "X-Schoolgate-Reference": reference},
    )


def plain_block(reference: str) -> http.Response:
    return http.Response.make(
        403,
        f"Blocked by the school's web filter (reference {reference}).\n",
        {"Content-Type": "text/plain; charset=utf-8", "X-Schoolgate-Reference": reference},
    )

"""The block page and the gateway's own small pages, rendered from Jinja2 templates.

Pure rendering, no mitmproxy: the block-page add-on decides, this module only words it. Every
value is HTML-escaped (autoescape), the pages load nothing from elsewhere and need no
JavaScript, so they work on any device and cannot be turned against the pupil reading them.
A block page is served on the blocked site's own origin, so it holds no secret: its forms
carry no token and the portal asks for confirmation on its own origin (gateway/portal_forms.py).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import jinja2

from proxy_addons.core.policy.model import Policy

# No 0/O, 1/I/L (misread) and no vowels at all, so no code can spell a word a child
# would giggle at or be upset by. 28 symbols, 8 of them: about 3.8 * 10**11 codes.
REFERENCE_ALPHABET = "23456789BCDFGHJKMNPQRSTVWXYZ"
REFERENCE_PREFIX = "SG"
_GROUP = 4

# Long enough for a recognisable path, short enough for a phone held upright.
ADDRESS_LIMIT = 60

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("proxy_addons.pages", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class BlockPageContext:
    """What the block page may say about one blocked request."""

    school: str
    reference: str
    host: str
    url: str
    reason: str  # plain words: "Social networks", "not allowed at this time", ...
    category_label: str | None
    at: datetime
    portal: str  # base URL of the gateway's own pages, e.g. "http://schoolgate.local"
    staff: bool = False
    illegal: bool = False
    # For staff: whom an unblock could be for, as (value, label), e.g. ("profile:ks2", "KS2").
    audiences: tuple[tuple[str, str], ...] = ()
    # A sensitive category (monitoring.sensitive_categories, e.g. self-harm): a calm page
    # that points to help, naming the school's own trusted adults.
    sensitive: bool = False
    trusted_adults: tuple[str, ...] = ()


def help_for(policy: Policy | None, category: object) -> dict[str, Any]:
    """The BlockPageContext fields for a block in `category`: a sensitive category's page
    points to help (and shows no score, no "is this a mistake?", no unblock request)."""
    if policy is None or not isinstance(category, str):
        return {}
    if category.lower() not in policy.monitoring.sensitive_categories:
        return {}
    return {"sensitive": True, "trusted_adults": policy.monitoring.trusted_adults}


def new_reference(now: datetime, rng: random.Random | None = None) -> str:
    """A code to quote when asking for help, e.g. "SG-7K3Q-M2XD".

    Wholly random rather than built from `now`: a time part would make every code in a
    lesson start alike (easy to mix up when read aloud) and collide within a busy minute.
    The decision record keeps the time; `now` is taken so callers share one clock with it.
    Without `rng` the code comes from the OS's secure source, so it cannot be guessed.
    """
    del now  # see the docstring: deliberately not encoded in the code
    pick = rng.choice if rng is not None else secrets.choice
    chars = [pick(REFERENCE_ALPHABET) for _ in range(2 * _GROUP)]
    return f"{REFERENCE_PREFIX}-{''.join(chars[:_GROUP])}-{''.join(chars[_GROUP:])}"


def short_address(host: str, url: str, limit: int = ADDRESS_LIMIT) -> str:
    """`host/path` to show a person: no query (it may hold a search a child typed, which
    classmates could read over their shoulder) and a long path cut to fit."""
    try:
        path = urlsplit(url).path if "://" in url else ""
    except ValueError:  # e.g. a broken IPv6 literal: the host alone still says enough
        path = ""
    path = "" if path == "/" else path
    room = max(limit - len(host), 12)  # a very long host still leaves a hint of the path
    if len(path) > room:
        path = path[: room - 1] + "…"
    return host + path


def _spoken(reference: str) -> str:
    """The code spelt out for screen readers: "S G, 7 K 3 Q, M 2 X D"."""
    return ", ".join(" ".join(group) for group in reference.split("-"))


def _when(at: datetime) -> str:
    """ "14:05 on Tuesday 3 March 2026": a day number without a leading zero, portably."""
    return f"{at:%H:%M} on {at:%A} {at.day} {at:%B %Y}"


def render_block_page(ctx: BlockPageContext) -> str:
    """The page shown in place of a blocked one.

    The illegal tier gets a deliberately plain page (IWF good practice): only the school and
    the code, and the template is never handed the URL, so it cannot echo it. A sensitive
    category's page is not handed the URL, reason or score either: it only points to help.
    """
    if ctx.illegal or ctx.sensitive:
        return render_page(
            "denied.html" if ctx.illegal else "block_sensitive.html",
            school=ctx.school,
            reference=ctx.reference,
            reference_spoken=_spoken(ctx.reference),
            trusted_adults=ctx.trusted_adults,
        )
    portal = ctx.portal.rstrip("/")
    return render_page(
        "block.html",
        school=ctx.school,
        reference=ctx.reference,
        reference_spoken=_spoken(ctx.reference),
        address=short_address(ctx.host, ctx.url),
        url=ctx.url,
        reason=ctx.reason,
        category_label=ctx.category_label,
        at_iso=ctx.at.isoformat(timespec="seconds"),
        at_text=_when(ctx.at),
        report_action=f"{portal}/report",
        request_action=f"{portal}/unblock/request",
        report_page=f"{portal}/report-page",
        staff=ctx.staff,
        audiences=ctx.audiences,
    )


def render_page(name: str, **values: Any) -> str:
    """Render one of the gateway's pages (`report_thanks.html`, `portal_index.html`, ...)."""
    return _env.get_template(name).render(**values)

"""Which responses the content filter scores, against what, and scoring a buffered body.

A `Plan` is made from a response's headers (gateway/addons/content_filter.py) and carries
what the rest needs: the threshold and counted categories, the body's kind, charset and
Content-Encoding, the request's verdict and record and, once scored, the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy_addons.core.content.page_text import Decoder
from proxy_addons.core.content.scoring import ContentScanner
from proxy_addons.core.content.weighted_lists import Score, WeightedLists
from proxy_addons.core.policy.model import Profile
from proxy_addons.core.verdict import Verdict


@dataclass
class Plan:
    """What to do with one response's content, decided from its headers."""

    threshold: int
    categories: frozenset[str]  # counted; empty: all
    scope: str  # "profile" or "scan:<site category>"
    kind: str
    charset: str
    content_encoding: str
    verdict: Verdict  # the request's: the content filter's own is made from it
    record: dict[str, Any]  # the request's record, then the content verdict's (block page)
    outcome: str = "pending"  # scanned | blocked | unscanned
    score: Score | None = field(default=None, repr=False)


def plan_for(profile: Profile, site_categories: set[str]) -> tuple[int, frozenset[str], str] | None:
    """The threshold, counted categories and scope for a profile on a site; None: not scored.

    A `scan` site category applies its own threshold, or the profile's if that is lower.
    """
    cf = profile.content_filter
    best: tuple[int, frozenset[str], str] | None = None
    if cf.threshold is not None:
        best = (cf.threshold, cf.categories, "profile")
    for site, limit in cf.scan:
        if site in site_categories and (best is None or limit < best[0]):
            best = (limit, cf.categories, f"scan:{site}")
    return best


def score_buffered(lists: WeightedLists, plan: Plan, body: bytes, cap: int) -> tuple[Score, bool]:
    """Decode and score a buffered body, up to `cap` decoded bytes: (score, all of it read)."""
    scanner = ContentScanner(lists, plan.kind, plan.charset)
    if plan.content_encoding in ("", "identity"):
        if len(body) <= cap:
            return scanner.read(body), True
        return scanner.read(body[:cap]), False
    decoder = Decoder(plan.content_encoding)
    step = 1 << 16  # compressed input a slice at a time; decoding stops at the cap
    for start in range(0, len(body), step):
        scanner.feed(
            decoder.decompress(body[start : start + step], cap + 1 - scanner.scanned_bytes)
        )
        if scanner.scanned_bytes > cap or decoder.cut:
            return scanner.finish(), False
    return scanner.finish(), True

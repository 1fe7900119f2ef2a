"""The content-filter add-on: scores what decrypted pages say, and blocks those over a threshold.

Thin on purpose: the scoring is core/content/scoring.py (pure); this module decides which
responses are read, how, and what happens to them. Which ones and against what is
gateway/content_plan.py; a streamed body is held and scored by gateway/held_body.py; what a
block becomes (the page, the notice, the alert) is gateway/content_block.py. It runs after
the Filter allowed a request and after the alerting add-on's risk-phrase scan (which must see
the original page).

Which responses: allowed requests of a profile with `content_filter.threshold`, or on a site in
one of the profile's `content_filter.scan` categories (e.g. generative_ai: allowed, but every
answer scored, against that lower threshold). Only HTML, plain text, JSON and server-sent
events are read (`core.content.page_text.kind_of`); images, video, scripts, fonts and files
pass untouched. Compressed bodies (gzip, deflate, br, zstd) are decoded for reading; the client
still gets the bytes the site sent.

How, decided in `responseheaders` from the Content-Length:
- known and within `schoolgate_content_max_bytes` (and not streamed): mitmproxy buffers the
  body as usual, it is scored in `response`, and a page over the threshold is replaced by the
  block page (403). Nothing of it reached the client before the decision.
- anything else (larger, of unknown length such as generative-AI server-sent events, or
  streamed by mitmproxy's `stream_large_bodies`): the headers go on at once, without a
  Content-Length (the body may be replaced), but the body is held back and scored as it
  arrives (`HeldBody`), with a carry-over window so phrases split across chunks are found. At
  the end, or once the cap is read, the held head is released unchanged, or replaced by a
  block notice in the same format (the block page for HTML, an event for event streams, a
  JSON error, plain text), encoded as the headers said, and the rest dropped. The status
  already sent (usually 200) can't become 403: that is the honest limit of a streamed
  response. Past the cap the rest streams through unscanned (the head was judged), logged as
  such. A streamed answer therefore reaches the person when complete, not word by word.

Fail closed: a body that can't be read (a Content-Encoding that is not gzip, deflate, br or
zstd, or a stack of them; a corrupt one; a scan that fails) is blocked, never passed unread.
Memory is bounded: at most the cap is held per response, decoding stops at the cap (a small
compressed body can decode to gigabytes), and bodies nobody reads stream through mitmproxy
once over `stream_large_bodies`, which the add-on sets to the cap when the operator has not
set it (uploads too: bench/large_bodies_bench.py).

What it decides is a verdict on the flow (core/verdict.py: the request's, with a
`ContentFinding`; stage "response"): blocked by score, blocked unread, or unscanned past
the cap. It is handed to the recorder (`Services.record_late`) as it is reached, and the
recorder's sinks write it down as they do the Filter's: the access log (reason "content" or
"unscanned"), the alert intake (a safeguarding alert for a block by score). A page that was
only scanned is no new verdict: its request's stands.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from proxy_addons.core.content.page_text import Decoder, charset_of, kind_of
from proxy_addons.core.content.weighted_lists import Score, WeightedLists, load_weighted_lists
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.policy.runtime import LoadedPolicy
from proxy_addons.core.verdict import (
    CONTENT_BLOCKED,
    CONTENT_UNREADABLE,
    CONTENT_UNSCANNED,
    ContentFinding,
)
from proxy_addons.gateway import content_block
from proxy_addons.gateway.content_plan import Plan, plan_for, score_buffered
from proxy_addons.gateway.headers import header
from proxy_addons.gateway.held_body import HeldBody, Instead, body_may_stream
from proxy_addons.gateway.services import Services, verdict_of
from proxy_addons.pages import blockpage

logger = logging.getLogger(__name__)

CONTENT_KEY = "schoolgate_content"  # flow.metadata: what content filtering did (plain data)
_NO_BODY = frozenset({204, 304})
MIN_STREAM_BYTES = 65_536  # stream_large_bodies is never set below this


class ContentFiltering:
    """Scores decrypted HTML, text, JSON and event streams; blocks what is over a threshold."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.lists: WeightedLists | None = None
        self._lists_for: LoadedPolicy | None = None  # the policy load the lists were read for
        # Buffered responses waiting for `response`, by flow id (flow.metadata holds only
        # plain data: it is saved with flows).
        self._waiting: dict[str, Plan] = {}
        self._cap = 2_000_000  # schoolgate_content_max_bytes, read once per change
        self._stream_default: str | None = None  # the stream_large_bodies this add-on set

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_content_max_bytes",
            int,
            2_000_000,
            "How much of a response body (decoded bytes) content filtering holds and scores; "
            "the rest of a larger one streams through unscanned, and the access log says so. "
            "Also stream_large_bodies, unless that is set.",
        )

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_content_max_bytes" in updated:
            self._cap = ctx.options.schoolgate_content_max_bytes
        if updated & {"stream_large_bodies", "schoolgate_content_max_bytes"}:
            self._bound_bodies()
        loaded = self.services.loaded
        if loaded is not None:
            self._policy_loaded(loaded)

    def _bound_bodies(self) -> None:
        """Unless the operator chose a `stream_large_bodies`, stream every body over the cap:
        mitmproxy would otherwise hold a whole upload or download in memory."""
        current = ctx.options.stream_large_bodies
        if current and current != self._stream_default:
            return  # the operator's own setting
        wanted = str(max(self._cap, MIN_STREAM_BYTES))
        self._stream_default = wanted
        if current != wanted:
            ctx.options.update(stream_large_bodies=wanted)

    # -- lists -------------------------------------------------------------------------------

    def _current(self) -> LoadedPolicy | None:
        loaded = self.services.loaded
        if loaded is not None and loaded is not self._lists_for:
            self._policy_loaded(loaded)
        return loaded

    def _policy_loaded(self, loaded: LoadedPolicy) -> None:
        """Read the lists again at each policy load: an edited list file is a reload too."""
        if loaded is self._lists_for:
            return
        self._lists_for = loaded
        paths = loaded.policy.content_lists
        try:
            self.lists = load_weighted_lists(paths) if paths else None
        except Exception as exc:  # checked by the loader already; keep the ones we had
            logger.error("Weighted phrase lists not loaded; keeping the previous ones: %s", exc)

    # -- hooks -------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """A request already answered (a block page) whose body may pass stream_large_bodies:
        mitmproxy can't both answer it and stream the body (it stalls, or crashes the
        connection at each megabyte). The body goes nowhere: the connection is closed."""
        if flow.response is not None and body_may_stream(flow.request):
            logger.info("Upload to a blocked address closed unread (%s)", flow.request.host)
            flow.kill()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        plan = self._plan(flow)
        if plan is None:
            return  # not read: buffered up to stream_large_bodies, streamed past it
        response = flow.response
        assert response is not None
        flow.metadata[CONTENT_KEY] = {"outcome": "pending", "threshold": plan.threshold}
        if not Decoder.readable(plan.content_encoding):
            self.refuse(flow, plan, f"content encoding {plan.content_encoding!r} can't be read")
            self._answer_instead(flow, plan)
            return
        length = header(response.headers, b"content-length")
        if length.isdigit() and int(length) <= self._cap and not response.stream:
            self._waiting[flow.id] = plan
            return  # buffered by mitmproxy; scored in `response`
        # Held and scored as it arrives; it may be replaced, so no length is promised.
        if "content-length" in response.headers:
            del response.headers["content-length"]
            if flow.request.http_version == "HTTP/1.1" and response.http_version != "HTTP/1.0":
                response.headers["transfer-encoding"] = "chunked"  # else: until the close
        response.stream = HeldBody(self, flow, plan, self._cap)

    def response(self, flow: http.HTTPFlow) -> None:
        plan = self._waiting.pop(flow.id, None)
        response = flow.response
        if plan is None or plan.outcome != "pending" or response is None:
            return
        lists = self.lists
        body = response.raw_content
        if lists is None or body is None:
            return
        cap = self._cap
        try:
            # On the event loop: a 100 KB page costs a few milliseconds of CPU, and a thread
            # would only add GIL hand-overs (measured slower in bench/content_filter_bench.py).
            score, whole = score_buffered(lists, plan, body, cap)
        except Exception as exc:  # an unreadable body is not passed unread
            self.refuse(flow, plan, f"body could not be read: {exc}")
        else:
            self.decide(flow, plan, score)
            if not whole and plan.outcome != "blocked":
                self.unscanned(flow, plan, f"decoded body over the {cap} cap: the rest unscanned")
        if plan.outcome == "blocked":
            flow.response = self._block_response(flow, plan)

    def error(self, flow: http.HTTPFlow) -> None:
        self._waiting.pop(flow.id, None)  # the body never came

    # -- deciding ----------------------------------------------------------------------------

    def _plan(self, flow: http.HTTPFlow) -> Plan | None:
        verdict = verdict_of(flow)
        record = verdict.record if verdict is not None else None
        response = flow.response
        if (
            verdict is None
            or not record
            or response is None
            or record.get("stage") != "request"
            or record.get("action") != "allow"
            or record.get("reason") == "portal"
            or flow.request.method == "HEAD"
            or response.status_code < 200
            or response.status_code in _NO_BODY
        ):
            return None
        content_type = header(response.headers, b"content-type")
        kind = kind_of(content_type)
        if kind is None:
            return None  # binary and other types: never read
        loaded = self._current()
        if loaded is None or self.lists is None:
            return None
        policy = loaded.policy
        profile = policy.profiles.get(str(record.get("profile")))
        if profile is None:
            return None
        cf = profile.content_filter
        sites: set[str] = set()
        if cf.scan:
            host = str(record.get("host") or "")
            sites = {m.category for m in loaded.index.match_host(host)}
        chosen = plan_for(profile, sites)
        if chosen is None:
            return None
        threshold, categories, scope = chosen
        return Plan(
            threshold=threshold,
            categories=categories,
            scope=scope,
            kind=kind,
            charset=charset_of(content_type),
            content_encoding=header(response.headers, b"content-encoding").strip().lower(),
            verdict=verdict,
            record=dict(record),
        )

    def decide(self, flow: http.HTTPFlow, plan: Plan, score: Score) -> None:
        plan.score = score
        category = score.over(plan.threshold, plan.categories)
        if category is None:
            plan.outcome = "scanned"
            flow.metadata[CONTENT_KEY] = {"outcome": "scanned", "scores": dict(score.totals)}
            return
        plan.outcome = "blocked"
        total = score.totals[category]
        phrases = score.top(category)
        flow.metadata[CONTENT_KEY] = {
            "outcome": "blocked",
            "category": category,
            "score": total,
            "threshold": plan.threshold,
        }
        finding = ContentFinding(
            CONTENT_BLOCKED,
            rule=f"content score {total} over {plan.threshold} ({plan.verdict.decision.profile} "
            f"{plan.scope.replace('scan:', 'scan of ')})",
            category=category,
            category_label=category.replace("_", " ").capitalize(),
            list_source=", ".join(p.name for p in (self.lists.sources if self.lists else ())),
            entry=", ".join(phrases),
            score=total,
            threshold=plan.threshold,
            phrases=tuple(phrases),
        )
        logger.info(
            "Content blocked: %s scored %d for %s (threshold %d, %s)",
            plan.verdict.host,
            total,
            category,
            plan.threshold,
            plan.scope,
        )
        self._record(flow, plan, finding, blockpage.new_reference(datetime.now(UTC)))

    def unscanned(self, flow: http.HTTPFlow, plan: Plan, why: str) -> None:
        plan.outcome = "unscanned"
        flow.metadata[CONTENT_KEY] = {"outcome": "unscanned", "why": why}
        finding = ContentFinding(CONTENT_UNSCANNED, rule=f"content not scanned: {why}")
        self._record(flow, plan, finding, plan.verdict.reference)

    def refuse(self, flow: http.HTTPFlow, plan: Plan, why: str) -> None:
        """Blocked because it could not be read: fail closed (no alert: nobody's doing)."""
        logger.warning("Content blocked unread: %s: %s", flow.request.pretty_host, why)
        plan.outcome = "blocked"
        flow.metadata[CONTENT_KEY] = {"outcome": "blocked", "why": why}
        finding = ContentFinding(
            CONTENT_UNREADABLE,
            rule=f"content could not be checked: {why}",
            category="unreadable",
            category_label="Content that could not be checked",
        )
        self._record(flow, plan, finding, blockpage.new_reference(datetime.now(UTC)))

    def _record(
        self, flow: http.HTTPFlow, plan: Plan, finding: ContentFinding, reference: str | None
    ) -> None:
        """The content verdict on the flow, to the recorder (its sinks log and alert)."""
        verdict = replace(plan.verdict, stage="response", reference=reference, content=finding)
        plan.record = verdict.record  # the block page's and notice's (read, never changed)
        self.services.record_late(flow, verdict)

    def _answer_instead(self, flow: http.HTTPFlow, plan: Plan) -> None:
        """Before any of it has gone: the block page (403) instead of the site's body."""
        response = flow.response
        assert response is not None
        page = self._block_response(flow, plan)
        response.status_code, response.reason = 403, "Forbidden"
        response.headers = page.headers
        response.stream = Instead(page.raw_content or b"")

    def _policy(self) -> Policy:
        return self.services.require_policy()

    # -- what a block becomes ---------------------------------------------------------------

    def block_notice(self, flow: http.HTTPFlow, plan: Plan) -> bytes:
        """The replacement for a held body (HeldBody asks for it)."""
        return content_block.block_notice(self._policy, flow, plan)

    def _block_response(self, flow: http.HTTPFlow, plan: Plan) -> http.Response:
        return content_block.block_response(self._policy(), flow, plan)

"""The content-filter add-on: scores what decrypted pages say, and blocks those over a threshold.

Thin on purpose: the scoring is `content_scoring.py` (pure); this module decides which
responses are read, how, and what happens to them. It runs after the Filter allowed a request
and after the alerting add-on's risk-phrase scan (which must see the original page).

Which responses: allowed requests of a profile with `content_filter.threshold`, or on a site in
one of the profile's `content_filter.scan` categories (e.g. generative_ai: allowed, but every
answer scored, against that lower threshold). Only HTML, plain text, JSON and server-sent
events are read (`content_scoring.kind_of`); images, video, scripts, fonts and files pass
untouched. Compressed bodies (gzip, deflate, br, zstd) are decoded for reading; the client
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

A block is logged (access log record, stage "response", reason "content") and raised as a
safeguarding alert through the outbox, as the Filter's blocks are.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.net import encoding

from proxy_addons.alerts.events import Audience, Event, local_time
from proxy_addons.checks.probes import PROBE_MARK
from proxy_addons.core.content.page_text import Decoder, Kind, charset_of, kind_of
from proxy_addons.core.content.scoring import ContentScanner
from proxy_addons.core.content.weighted_lists import Score, WeightedLists, load_weighted_lists
from proxy_addons.core.policy.model import Policy, Profile
from proxy_addons.core.policy.runtime import LoadedPolicy
from proxy_addons.gateway.headers import header
from proxy_addons.gateway.services import Services, verdict_of
from proxy_addons.pages import blockpage
from proxy_addons.record.access_records import build

logger = logging.getLogger(__name__)

CONTENT_KEY = "schoolgate_content"  # flow.metadata: what content filtering did (plain data)
CONTENT_BLOCK = "content_block"  # alert kind
_NO_BODY = frozenset({204, 304})
MIN_STREAM_BYTES = 65_536  # stream_large_bodies is never set below this


@dataclass
class Plan:
    """What to do with one response's content, decided from its headers."""

    threshold: int
    categories: frozenset[str]  # counted; empty: all
    scope: str  # "profile" or "scan:<site category>"
    kind: str
    charset: str
    content_encoding: str
    record: dict[str, Any]
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
        if flow.response is not None and _body_may_stream(flow.request):
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
            score, whole = _score_raw(lists, plan, body, cap)
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
            not record
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
        record = dict(plan.record)
        record.update(
            action="block",
            reason="content",
            category=category,
            category_label=category.replace("_", " ").capitalize(),
            rule=f"content score {total} over {plan.threshold} ({record.get('profile')} "
            f"{plan.scope.replace('scan:', 'scan of ')})",
            list_source=", ".join(p.name for p in (self.lists.sources if self.lists else ())),
            entry=", ".join(phrases),
            stage="response",
            reference=blockpage.new_reference(datetime.now(UTC)),
            content_score=total,
        )
        plan.record = record
        logger.info(
            "Content blocked: %s scored %d for %s (threshold %d, %s)",
            record.get("host"),
            total,
            category,
            plan.threshold,
            plan.scope,
        )
        self._log(flow, record)
        if record.get("identified_by") == "check" or record.get(PROBE_MARK):
            return  # a termly check's own test page is no one's doing (check_marker.py)
        self.services.raise_alert(content_event(record, self._policy(), phrases, total, plan))

    def unscanned(self, flow: http.HTTPFlow, plan: Plan, why: str) -> None:
        plan.outcome = "unscanned"
        flow.metadata[CONTENT_KEY] = {"outcome": "unscanned", "why": why}
        record = dict(plan.record)
        record.update(reason="unscanned", rule=f"content not scanned: {why}", stage="response")
        self._log(flow, record)

    def refuse(self, flow: http.HTTPFlow, plan: Plan, why: str) -> None:
        """Blocked because it could not be read: fail closed (no alert: nobody's doing)."""
        logger.warning("Content blocked unread: %s: %s", flow.request.pretty_host, why)
        plan.outcome = "blocked"
        flow.metadata[CONTENT_KEY] = {"outcome": "blocked", "why": why}
        record = dict(plan.record)
        record.update(
            action="block",
            reason="content",
            category="unreadable",
            category_label="Content that could not be checked",
            rule=f"content could not be checked: {why}",
            stage="response",
            reference=blockpage.new_reference(datetime.now(UTC)),
            content_score=None,
        )
        plan.record = record
        self._log(flow, record)

    def _answer_instead(self, flow: http.HTTPFlow, plan: Plan) -> None:
        """Before any of it has gone: the block page (403) instead of the site's body."""
        response = flow.response
        assert response is not None
        page = self._block_response(flow, plan)
        response.status_code, response.reason = 403, "Forbidden"
        response.headers = page.headers
        response.stream = _Instead(page.raw_content or b"")

    def _log(self, flow: http.HTTPFlow, record: dict[str, Any]) -> None:
        writer = self.services.access_writer
        if writer is None:
            return
        auth = flow.metadata.get("proxyauth")
        peer = flow.client_conn.peername
        writer.submit(
            build(
                record,
                datetime.now(UTC),
                method=flow.request.method,
                user=str(auth[0]) if auth else None,
                ip=str(peer[0]) if peer else None,
                url=flow.request.pretty_url,
            )
        )

    def _policy(self) -> Policy:
        return self.services.require_policy()

    # -- the block page ----------------------------------------------------------------------

    def block_html(self, flow: http.HTTPFlow, plan: Plan) -> str:
        policy = self._policy()
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
            )
        )

    def _block_response(self, flow: http.HTTPFlow, plan: Plan) -> http.Response:
        return http.Response.make(
            403,
            self.block_html(flow, plan),
            {
                "Content-Type": "text/html; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Schoolgate-Reference": str(plan.record["reference"]),
            },
        )

    def block_notice(self, flow: http.HTTPFlow, plan: Plan) -> bytes:
        """The replacement for a held body, in its own format (its headers have left)."""
        ref = str(plan.record["reference"])
        message = (
            f"Blocked by the school's web filter: the content was not suitable (reference {ref})."
        )
        if plan.kind == Kind.HTML:
            text = self.block_html(flow, plan)
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


def _score_raw(lists: WeightedLists, plan: Plan, body: bytes, cap: int) -> tuple[Score, bool]:
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


class HeldBody:
    """mitmproxy's stream callable for a body that is not buffered: hold, score, then release.

    Called with each chunk as it arrives and with b"" at the end (mitmproxy's contract); what
    it returns is sent. While holding it returns an empty list, never b"": mitmproxy would
    send an empty chunk, which in HTTP/1.1 chunked encoding ends the body. It holds at most
    `cap` bytes (raw and decoded); then the head is judged, and the rest passes or is dropped.
    """

    def __init__(self, addon: ContentFiltering, flow: http.HTTPFlow, plan: Plan, cap: int) -> None:
        self.addon = addon
        self.flow = flow
        self.plan = plan
        self.cap = cap
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.decoder = Decoder(plan.content_encoding)
        lists = addon.lists
        assert lists is not None
        self.scanner = ContentScanner(lists, plan.kind, plan.charset)
        self.mode = "hold"  # hold | pass | drop

    def __call__(self, chunk: bytes) -> list[bytes]:
        try:
            return self._step(chunk)
        except Exception as exc:  # unreadable: blocked, never passed unread
            if self.mode != "hold":
                logger.exception("Content filter: a released body failed")
                return [] if self.mode == "drop" else _some(chunk)
            self.addon.refuse(self.flow, self.plan, f"body could not be read: {exc}")
            return self._drop()

    def _step(self, chunk: bytes) -> list[bytes]:
        if self.mode == "pass":
            return _some(chunk)
        if self.mode == "drop":
            return []
        if chunk:
            self.held.append(chunk)
            self.held_bytes += len(chunk)
            room = self.cap + 1 - self.scanner.scanned_bytes
            self.scanner.feed(self.decoder.decompress(chunk, room))
            over = self.scanner.scanned_bytes > self.cap or self.held_bytes > self.cap
            if not over and not self.decoder.cut:
                return []
            # The cap is read: decide on the head; the rest passes unscanned or is dropped.
            self.addon.decide(self.flow, self.plan, self.scanner.finish())
            if self.plan.outcome == "blocked":
                return self._drop()
            self.addon.unscanned(
                self.flow, self.plan, f"streamed body over the {self.cap} cap: the rest unscanned"
            )
            return self._release()
        # The end of the body: decide, then release or replace.
        self.addon.decide(self.flow, self.plan, self.scanner.finish())
        if self.plan.outcome == "blocked":
            return self._drop()
        return self._release()

    def _drop(self) -> list[bytes]:
        self.mode = "drop"
        self.held.clear()
        return [self.addon.block_notice(self.flow, self.plan)]

    def _release(self) -> list[bytes]:
        self.mode = "pass"
        out = b"".join(self.held)
        self.held.clear()
        return _some(out)


class _Instead:
    """A stream callable that sends `body` in place of whatever the site sends."""

    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = body

    def __call__(self, chunk: bytes) -> list[bytes]:
        body, self.body = self.body, None
        return _some(body or b"")


def _body_may_stream(request: http.Request) -> bool:
    """Over stream_large_bodies already, or of a length nobody said (chunked; HTTP/2 and 3
    uploads without a Content-Length), so it may be."""
    if request.stream or "transfer-encoding" in request.headers:
        return True
    return (
        request.http_version in ("HTTP/2.0", "HTTP/3")
        and "content-length" not in request.headers
        and request.method in ("POST", "PUT", "PATCH")
    )


def _some(data: bytes) -> list[bytes]:
    return [data] if data else []


def content_event(
    record: dict[str, Any], policy: Policy, phrases: list[str], total: int, plan: Plan
) -> Event:
    """A safeguarding alert for a page blocked for its content: who, where, why."""
    at = datetime.now(UTC)
    category = str(record.get("category") or "")
    fields = {"user": str(record.get("user") or "not signed in")}
    if record.get("ip"):
        fields["device"] = str(record["ip"])
    fields["profile"] = str(record.get("profile") or "unknown")
    fields["site"] = str(record.get("host") or "")
    page = str(record.get("url") or "").split("?", 1)[0].split("#", 1)[0]
    if page:
        fields["page"] = page
    fields["category"] = category.replace("_", " ")
    fields["phrase"] = ", ".join(phrases)
    fields["score"] = f"{total} (limit {plan.threshold})"
    fields["reference"] = str(record.get("reference") or "")
    fields["time"] = local_time(policy.timezone, at)
    who = record.get("user") or record.get("ip") or "unknown"
    return Event(
        kind=CONTENT_BLOCK,
        severity=4 if total > 2 * plan.threshold else 3,
        audience=Audience.SAFEGUARDING,
        summary=f"Page blocked for its content: {category.replace('_', ' ')}",
        fields=fields,
        fold_key=f"{CONTENT_BLOCK}|{who}|{category}",
        at=at,
        timezone=policy.timezone.key,
    )

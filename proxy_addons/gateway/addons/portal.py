"""The gateway's own small site, served by the proxy at the policy's portal host.

Block pages post here: a pupil's "this is a mistake" report (kept in the
store's `reports` table for the IT provider and the DSL) and a member of
staff's request for access (an unblock request in the audited workflow). The school's
CA certificate is offered at `/ca.pem` so devices can be set up to trust it.

Who is asking comes from the proxy, out of band (portal_identity.py): its sign-in and the
peer address, never a header. A block page is on the blocked site's own origin, so it carries
no token and what it posts is only shown back, on the portal, for the person to confirm; the
confirmation's own post acts, once (portal_forms.py). Every other form post needs the token
of a portal page too; one without is refused.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, abort, redirect, request, send_file
from flask.typing import ResponseReturnValue
from mitmproxy import ctx, http
from mitmproxy.addons import asgiapp

from proxy_addons.checks import page as check_page
from proxy_addons.checks.probes import ProbeBook
from proxy_addons.core.unblocks import AudienceKind, Scope
from proxy_addons.gateway import ca_pages, portal_forms, portal_identity, portal_reports
from proxy_addons.gateway.portal_identity import FORM_FIELD, current_tokens, environ_who, who_of
from proxy_addons.gateway.services import Services
from proxy_addons.pages import blockpage
from proxy_addons.web.unblock_forms import parse_minutes
from proxy_addons.workflow import user_reports
from proxy_addons.workflow.unblocks import Actor, WorkflowError

logger = logging.getLogger(__name__)

MAX_TEXT = 2000
MAX_URL = 2048
# Posted from block pages, so confirmed on the portal before they act (see the docstring).
CONFIRMED_HERE = frozenset({"/report", "/unblock/request"})
# "Report this page": what the reporter may choose (workflow/user_reports.REASONS).
PAGE_REASONS = ("upsetting", "should_block")
SCOPE_TEXT = {
    Scope.URL: "Only this page",
    Scope.PREFIX: "This page and the pages under it",
    Scope.DOMAIN: "The whole website",
}
DURATION_TEXT = {None: "The rest of this lesson", 60: "1 hour", 1440: "1 day", 10080: "1 week"}
# Every portal page: never framed (a confirmation under another site's decoy), nothing loaded
# from elsewhere, forms only to the portal. The check page sets its own (it runs script).
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # a confirmation holds a token: never kept for later
}


def _clip(value: str | None, limit: int = MAX_TEXT) -> str:
    return (value or "").strip()[:limit]


def _duration_text(minutes: int | None) -> str:
    if minutes in DURATION_TEXT:
        return DURATION_TEXT[minutes]
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def _address(url: str) -> str:
    """The page a form is about, as the block page showed it (no query)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    return blockpage.short_address(host, url) if host else url[: blockpage.ADDRESS_LIMIT]


def create_app(gateway: Services, portal: Portal) -> Flask:
    app = Flask("schoolgate-portal")
    school, ca_path = portal.school, portal.ca_path

    def who() -> tuple[str | None, str | None]:
        # Handed in by Portal.request from the connection, never read from a header.
        found = environ_who(request.environ)
        return found.user, found.ip

    def form_token() -> str:
        """A token for the form on this page, which posts back to this same path."""
        tokens = current_tokens()
        return tokens.mint(environ_who(request.environ), request.path) if tokens else ""

    def sent_from_portal() -> bool:
        """This post is a form the portal itself showed this person: their token for this
        form, and the browser says it came from a portal page."""
        tokens, asker = current_tokens(), environ_who(request.environ)
        return (
            tokens is not None
            and tokens.check(request.form.get(FORM_FIELD), asker, request.path)
            and portal_forms.from_portal(
                request.headers.getlist("Origin"), request.headers.getlist("Referer"), portal.host
            )
        )

    def refused_form() -> ResponseReturnValue:
        logger.warning("portal: %s refused from %s: not a portal form", request.path, who()[1])
        page = blockpage.render_page("report_thanks.html", school=school(), kind="form_refused")
        return page, 403

    @app.before_request
    def form_token_needed() -> ResponseReturnValue | None:
        """Any other form post must be a portal page's own, for this very person (CSRF)."""
        if request.method != "POST" or request.is_json or request.path in CONFIRMED_HERE:
            return None  # JSON needs a CORS preflight the portal never grants (checks/page.py)
        return None if sent_from_portal() else refused_form()

    @app.after_request
    def headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def confirm_first(
        kind: str, fields: dict[str, str], **shown: str
    ) -> ResponseReturnValue | None:
        """None when this post may act now (and its token is spent); otherwise the page that
        shows `fields` back on the portal, with a token, for the person to send themselves."""
        token = request.form.get(FORM_FIELD)
        if not sent_from_portal():
            if token:  # a token, but not from a portal page, or not theirs: worth a look
                logger.warning("portal: %s from %s shown back to confirm", request.path, who()[1])
            page = blockpage.render_page(
                "portal_confirm.html",
                school=school(),
                kind=kind,
                action=request.path,
                values=fields,
                hidden=[*fields.items(), (FORM_FIELD, form_token())],
                address=_address(fields["url"]),
                **shown,
            )
            return page, 200
        store = gateway.store
        if store is None:
            abort(503)
        if not portal_forms.spend(store, str(token), datetime.now(UTC)):
            workflow = gateway.workflow
            page = blockpage.render_page(
                "report_thanks.html",
                school=school(),
                kind="already_sent",
                requests=(
                    f"{workflow.policy().unblocks.web_url}/unblocks"
                    if workflow and kind == "access_request"
                    else None
                ),
            )
            return page, 409
        return None

    @app.get("/")
    def index() -> str:
        return blockpage.render_page("portal_index.html", school=school())

    @app.get("/ca.pem")
    def ca() -> Response:
        path = ca_path()
        if not path.exists():
            abort(404)
        return send_file(path, mimetype="application/x-x509-ca-cert", download_name="school-ca.pem")

    def file_report(kind: str, reason: str, fields: dict[str, str]) -> ResponseReturnValue:
        """File a report the person confirmed (its token already spent): who sent it is the
        gateway's knowledge, never the form's."""
        store, loaded = gateway.store, gateway.loaded
        if store is None or loaded is None:
            abort(503)
        policy, now = loaded.policy, datetime.now(UTC)
        user, ip = who()
        user, profile = portal_reports.reporter(gateway, user, ip)
        if portal_reports.too_many(store, user, ip, now):
            portal_forms.release(store, str(request.form.get(FORM_FIELD)))
            logger.warning("portal: too many reports from %s", ip)
            page = blockpage.render_page(
                "report_thanks.html", school=school(), kind=portal_reports.TOO_MANY
            )
            return page, 429
        report = user_reports.NewReport(
            kind=kind,
            reason=reason,
            reference=fields.get("ref", ""),
            url=fields["url"],
            text=fields["message"],
            username=user,
            ip=ip,
            device_id=portal_reports.device_at(store, ip, now, policy.devices.identity_minutes),
            profile=profile,
        )
        with portal_forms.giving_back(store, request.form.get(FORM_FIELD)):
            sent = portal_reports.send(gateway, store, policy, report, now)
        return blockpage.render_page(
            "report_thanks.html",
            school=school(),
            kind=kind,
            audience=sent.audience,
            people=portal_reports.in_words(sent.people),
            emailed=sent.emailed,
            trusted_adults=policy.monitoring.trusted_adults,
        )

    @app.post("/report")
    def report() -> ResponseReturnValue:
        """A block page's "Is this a mistake?": shown back to confirm, then filed for IT."""
        if gateway.store is None:
            abort(503)
        fields = {
            "ref": _clip(request.form.get("ref"), 32),
            "url": _clip(request.form.get("url"), MAX_URL),
            "message": _clip(request.form.get("message")),
        }
        waiting = confirm_first("report", fields)
        if waiting is not None:
            return waiting
        return file_report("report", "mistake", fields)

    @app.get("/report-page")
    def report_page_form() -> str:
        """ "Report this page": for a page that got through and should not have."""
        return blockpage.render_page(
            "portal_report_page.html",
            school=school(),
            url=_clip(request.args.get("url"), MAX_URL),
            token=form_token(),
            field=FORM_FIELD,
            error=None,
            values={},
        )

    @app.post("/report-page")
    def report_page() -> ResponseReturnValue:
        """Sent from the portal's own page (its token checked before any view): filed once."""
        store = gateway.store
        if store is None:
            abort(503)
        fields = {
            "url": _clip(request.form.get("url"), MAX_URL),
            "message": _clip(request.form.get("message")),
        }
        reason = request.form.get("what") or ""
        if reason not in PAGE_REASONS:
            page = blockpage.render_page(
                "portal_report_page.html",
                school=school(),
                url=fields["url"],
                token=form_token(),
                field=FORM_FIELD,
                error="Choose what is wrong with the page.",
                values=fields,
            )
            return page, 400
        if not portal_forms.spend(store, str(request.form.get(FORM_FIELD)), datetime.now(UTC)):
            page = blockpage.render_page("report_thanks.html", school=school(), kind="already_sent")
            return page, 409
        return file_report("page_report", reason, fields)

    def request_refused(message: str) -> ResponseReturnValue:
        page = blockpage.render_page(
            "report_thanks.html", school=school(), kind="access_request_refused", message=message
        )
        return page, 400

    @app.post("/unblock/request")
    def unblock_request() -> ResponseReturnValue:
        user, ip = who()
        workflow, store = gateway.workflow, gateway.store
        if workflow is None or store is None:
            abort(503)
        policy = workflow.policy()
        form = request.form
        choice = form.get("audience") or "me"
        profile = choice.removeprefix("profile:") if choice.startswith("profile:") else None
        fields = {
            "ref": _clip(form.get("ref"), 32),
            "url": _clip(form.get("url"), MAX_URL),
            "scope": form.get("scope") or Scope.PREFIX.value,
            "audience": choice,
            "minutes": (form.get("minutes") or "").strip(),
            "reason": _clip(form.get("reason")),
        }
        if not user:
            # Not signed in to the proxy: sign in to the web app (unblocks.web_url, over
            # HTTPS), whose form opens with what was chosen here, kept through its sign-in.
            return redirect(web_app_request(policy.unblocks.web_url, fields), code=303)
        if not workflow.is_staff(user.lower()):
            return "Only staff can ask for a page to be unblocked.", 403
        # Checked before the confirmation page, so it never offers what can't be sent.
        if choice != "me" and profile not in policy.profiles:
            return request_refused("Choose who the page should open for.")
        try:
            scope = Scope(fields["scope"])
        except ValueError:
            return request_refused("Choose what should open: the page, or the whole website.")
        try:
            minutes = parse_minutes(fields["minutes"], policy)
        except WorkflowError as exc:
            return request_refused(str(exc))
        waiting = confirm_first(
            "access_request",
            fields,
            scope_text=SCOPE_TEXT[scope],
            audience_text=(
                "Only me (to check it first)" if profile is None else policy.profiles[profile].label
            ),
            duration_text=_duration_text(minutes),
        )
        if waiting is not None:
            return waiting
        kind, people = (
            (AudienceKind.USER, [user]) if profile is None else (AudienceKind.PROFILE, [profile])
        )
        try:
            with portal_forms.giving_back(store, request.form.get(FORM_FIELD)):
                unblock = workflow.request(
                    Actor(user, ip),
                    target=fields["url"],
                    scope=scope,
                    audience_kind=kind,
                    audience=people,
                    minutes=minutes,
                    reason=fields["reason"],
                )
        except (WorkflowError, ValueError) as exc:
            return request_refused(str(exc))
        return blockpage.render_page(
            "report_thanks.html", school=school(), kind="access_request", unblock_id=unblock.id
        )

    check_page.wire(app, gateway, who, school, form_token)  # /checks
    ca_pages.wire(app, ca_path, school)  # /ca (how to install it) and /ca.cer
    return app


class Portal(asgiapp.ASGIApp):
    """Serves the portal app on the policy's portal host (http and, decrypted, https)."""

    name = "schoolgate_portal"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.probes: ProbeBook = services.probes  # fed by check_witness.CheckWitness
        self.app = portal_identity.WsgiWithWho(create_app(services, self))
        super().__init__(self.app, "schoolgate.local", None)  # http and https

    def configure(self, updated: set[str]) -> None:
        loaded = self.services.loaded
        if loaded is not None:
            self.host = loaded.policy.portal_host

    async def request(self, flow: http.HTTPFlow) -> None:
        loaded = self.services.loaded
        if loaded is not None:
            self.host = loaded.policy.portal_host
        if not self.should_serve(flow):
            return
        dropped = portal_identity.drop_identity_headers(flow.request.headers)
        if dropped:  # the app never reads them; gone so nothing later can mistake them
            logger.warning("portal: dropped %s sent by %s", ", ".join(dropped), who_of(flow).ip)
        await portal_identity.serve(self.app, flow, who_of(flow))

    def school(self) -> str:
        loaded = self.services.loaded
        return loaded.policy.school if loaded else "your school"

    def ca_path(self) -> Path:
        return Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem"


def web_app_request(web_url: str, fields: dict[str, str]) -> str:
    """The web app's new-request form, filled with the block page's choices: "me" is an
    unblock for the teacher alone (the web app fills in who signs in), "profile:X" one for
    a profile."""
    choice = fields["audience"]
    kind, audience = (
        ("profile", choice.removeprefix("profile:")) if choice != "me" else ("user", "")
    )
    query = {
        "url": fields["url"],
        "scope": fields["scope"],
        "audience_kind": kind,
        "audience": audience,
        "minutes": fields["minutes"],
        "reason": fields["reason"],
    }
    return f"{web_url}/unblocks/new?{urlencode({k: v for k, v in query.items() if v})}"

"""The gateway's own small site, served by the proxy at the policy's portal host.

Block pages post here: a pupil's "this is a mistake" report (kept in the
store's `reports` table for the IT provider and the DSL) and a member of
staff's request for access (an unblock request in the audited workflow). The school's
CA certificate is offered at `/ca.pem` so devices can be set up to trust it.

Who is asking comes from the proxy, out of band (portal_identity.py): its sign-in and the
peer address, never a header. Every form post needs the token the gateway wrote into the
page for that same person (block pages are filled in by `response`); one without is refused.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, abort, redirect, request, send_file
from flask.typing import ResponseReturnValue
from mitmproxy import ctx, http
from mitmproxy.addons import asgiapp

from proxy_addons import blockpage, ca_pages, check_page, portal_identity
from proxy_addons.check_probes import ProbeBook
from proxy_addons.filtering import METADATA_KEY, Filter
from proxy_addons.portal_identity import FORM_FIELD, current_tokens, environ_who, who_of
from proxy_addons.store.schema import reports
from proxy_addons.unblock_workflow import Actor, WorkflowError
from proxy_addons.unblocks import AudienceKind, Scope
from proxy_addons.webapp import parse_minutes

logger = logging.getLogger(__name__)

MAX_TEXT = 2000


def _clip(value: str | None, limit: int = MAX_TEXT) -> str:
    return (value or "").strip()[:limit]


def create_app(gateway: Filter, portal: Portal) -> Flask:
    app = Flask("schoolgate-portal")
    school, ca_path = portal.school, portal.ca_path

    def who() -> tuple[str | None, str | None]:
        # Handed in by Portal.request from the connection, never read from a header.
        found = environ_who(request.environ)
        return found.user, found.ip

    def form_token() -> str:
        tokens = current_tokens()
        return tokens.mint(environ_who(request.environ)) if tokens else blockpage.FORM_TOKEN_SLOT

    @app.before_request
    def form_token_needed() -> ResponseReturnValue | None:
        """A form post must carry the token minted for this very person (CSRF)."""
        if request.method != "POST" or request.is_json:
            return None  # JSON needs a CORS preflight the portal never grants (check_page.py)
        tokens, asker = current_tokens(), environ_who(request.environ)
        if tokens is not None and tokens.check(request.form.get(FORM_FIELD), asker):
            return None
        logger.warning("portal: %s refused from %s: no valid form token", request.path, asker.ip)
        page = blockpage.render_page("report_thanks.html", school=school(), kind="form_refused")
        return page, 403

    @app.get("/")
    def index() -> str:
        return blockpage.render_page("portal_index.html", school=school())

    @app.get("/ca.pem")
    def ca() -> Response:
        path = ca_path()
        if not path.exists():
            abort(404)
        return send_file(path, mimetype="application/x-x509-ca-cert", download_name="school-ca.pem")

    def _save(kind: str) -> str:
        user, ip = who()
        store = gateway.store
        if store is None:
            abort(503)
        record = {
            "kind": kind,
            "at": datetime.now(UTC),
            "reference": _clip(request.form.get("ref"), 32),
            "url": _clip(request.form.get("url"), 2048),
            "text": _clip(request.form.get("message")),
            "username": user,
            "ip": ip,
            "profile": gateway.profile_for(user, ip),
        }
        with store.begin() as conn:
            conn.execute(reports.insert().values(**record))
        logger.info("Schoolgate %s received (reference %s)", kind, record["reference"])
        return blockpage.render_page("report_thanks.html", school=school(), kind=kind)

    @app.post("/report")
    def report() -> str | tuple[str, int]:
        return _save("report")

    @app.post("/unblock/request")
    def unblock_request() -> ResponseReturnValue:
        user, ip = who()
        workflow = gateway.workflow
        if workflow is None:
            abort(503)
        url = _clip(request.form.get("url"), 2048)
        if not user:
            # Not signed in to the proxy: sign in to the web app, which has the same form.
            web = workflow.policy().unblocks.web_url
            query = urlencode({"url": url, "reason": _clip(request.form.get("reason"))})
            return redirect(f"{web}/unblocks/new?{query}", code=303)
        if not workflow.is_staff(user.lower()):
            return "Only staff can ask for a page to be unblocked.", 403
        choice = request.form.get("audience", "me")
        kind, people = (
            (AudienceKind.PROFILE, [choice.split(":", 1)[1]])
            if choice.startswith("profile:")
            else (AudienceKind.USER, [user])
        )
        try:
            unblock = workflow.request(
                Actor(user, ip),
                target=url,
                scope=Scope(request.form.get("scope", "prefix")),
                audience_kind=kind,
                audience=people,
                minutes=parse_minutes(request.form.get("minutes"), workflow.policy()),
                reason=_clip(request.form.get("reason")),
            )
        except (WorkflowError, ValueError) as exc:
            return blockpage.render_page(
                "report_thanks.html",
                school=school(),
                kind="access_request_refused",
                message=str(exc),
            ), 400
        return blockpage.render_page(
            "report_thanks.html", school=school(), kind="access_request", unblock_id=unblock.id
        )

    check_page.wire(app, gateway, portal.probes, who, school, form_token)  # /checks
    ca_pages.wire(app, ca_path, school)  # /ca (how to install it) and /ca.cer
    return app


class Portal(asgiapp.ASGIApp):
    """Serves the portal app on the policy's portal host (http and, decrypted, https)."""

    name = "schoolgate_portal"

    def __init__(self, gateway: Filter, probes: ProbeBook | None = None) -> None:
        self.gateway = gateway
        self.probes = probes or ProbeBook()  # fed by check_witness.CheckWitness
        self.app = portal_identity.WsgiWithWho(create_app(gateway, self))
        super().__init__(self.app, "schoolgate.local", None)  # http and https

    def configure(self, updated: set[str]) -> None:
        loaded = self.gateway.runtime.current if self.gateway.runtime else None
        if loaded is not None:
            self.host = loaded.policy.portal_host

    async def request(self, flow: http.HTTPFlow) -> None:
        loaded = self.gateway.runtime.current if self.gateway.runtime else None
        if loaded is not None:
            self.host = loaded.policy.portal_host
        if not self.should_serve(flow):
            return
        dropped = portal_identity.drop_identity_headers(flow.request.headers)
        if dropped:  # the app never reads them; gone so nothing later can mistake them
            logger.warning("portal: dropped %s sent by %s", ", ".join(dropped), who_of(flow).ip)
        await portal_identity.serve(self.app, flow, who_of(flow))

    def response(self, flow: http.HTTPFlow) -> None:
        """Write the CSRF token into a block page the gateway made for this request."""
        response = flow.response
        record = flow.metadata.get(METADATA_KEY)
        reference = response.headers.get("X-Schoolgate-Reference") if response else None
        if response is None or not reference or not isinstance(record, dict):
            return
        if record.get("reference") != reference or not record.get("action") == "block":
            return  # not the Filter's own page for this flow: never write a token elsewhere
        slot = blockpage.FORM_TOKEN_SLOT.encode()
        page = response.content
        if page and slot in page:
            response.content = page.replace(slot, portal_identity.page_token(flow).encode())

    def school(self) -> str:
        loaded = self.gateway.runtime.current if self.gateway.runtime else None
        return loaded.policy.school if loaded else "your school"

    def ca_path(self) -> Path:
        return Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem"

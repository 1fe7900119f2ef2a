"""The gateway's own small site, served by the proxy at the policy's portal host.

Block pages post here: a pupil's "this is a mistake" report (kept in the
store's `reports` table for the IT provider and the DSL) and a member of
staff's request for access (an unblock request in the audited workflow). The school's
CA certificate is offered at `/ca.pem` so devices can be set up to trust it.
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

from proxy_addons import blockpage, ca_pages, check_page
from proxy_addons.check_probes import ProbeBook
from proxy_addons.filtering import Filter
from proxy_addons.store.schema import reports
from proxy_addons.unblock_workflow import Actor, WorkflowError
from proxy_addons.unblocks import AudienceKind, Scope

logger = logging.getLogger(__name__)

MAX_TEXT = 2000


def _clip(value: str | None, limit: int = MAX_TEXT) -> str:
    return (value or "").strip()[:limit]


def create_app(gateway: Filter, portal: Portal) -> Flask:
    app = Flask("schoolgate-portal")
    school, ca_path = portal.school, portal.ca_path

    def who() -> tuple[str | None, str | None]:
        # Set by Portal.request from the connection; clients' own copies are removed.
        return request.headers.get("X-Schoolgate-User"), request.headers.get("X-Schoolgate-Ip")

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
        minutes = request.form.get("minutes") or None
        try:
            unblock = workflow.request(
                Actor(user, ip),
                target=url,
                scope=Scope(request.form.get("scope", "prefix")),
                audience_kind=kind,
                audience=people,
                minutes=int(minutes) if minutes else None,
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

    check_page.wire(app, gateway, portal.probes, who, school)  # /checks: the browser check
    ca_pages.wire(app, ca_path, school)  # /ca (how to install it) and /ca.cer
    return app


class Portal(asgiapp.WSGIApp):
    """Serves the portal app on the policy's portal host (http and, decrypted, https)."""

    name = "schoolgate_portal"

    def __init__(self, gateway: Filter, probes: ProbeBook | None = None) -> None:
        self.gateway = gateway
        self.probes = probes or ProbeBook()  # fed by check_witness.CheckWitness
        super().__init__(create_app(gateway, self), "schoolgate.local", None)  # http and https

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
        # Identity travels in the WSGI environ via request headers the client can't set.
        for name in ("X-Schoolgate-User", "X-Schoolgate-Ip"):
            flow.request.headers.pop(name, None)
        auth = flow.metadata.get("proxyauth")
        if auth:
            flow.request.headers["X-Schoolgate-User"] = str(auth[0])
        if flow.client_conn.peername:
            flow.request.headers["X-Schoolgate-Ip"] = str(flow.client_conn.peername[0])
        await super().request(flow)

    def school(self) -> str:
        loaded = self.gateway.runtime.current if self.gateway.runtime else None
        return loaded.policy.school if loaded else "your school"

    def ca_path(self) -> Path:
        return Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem"

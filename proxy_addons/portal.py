"""The gateway's own small site, served by the proxy at the policy's portal host.

Block pages post here: a pupil's "this is a mistake" report and a member of
staff's request for access. Both are kept in `var/reports.jsonl` for the IT
provider and the DSL (the audited unblock workflow builds on this). The school's
CA certificate is offered at `/ca.pem` so devices can be set up to trust it.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, request, send_file
from mitmproxy import ctx, http
from mitmproxy.addons import asgiapp

from proxy_addons import blockpage
from proxy_addons.filtering import Filter

logger = logging.getLogger(__name__)

MAX_TEXT = 2000


def _clip(value: str | None, limit: int = MAX_TEXT) -> str:
    return (value or "").strip()[:limit]


class ReportBook:
    """Append-only JSON lines of reports and access requests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def add(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def create_app(gateway: Filter, portal: Portal) -> Flask:
    app = Flask("schoolgate-portal")
    school, reports, ca_path = portal.school, portal.reports, portal.ca_path

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

    def _save(kind: str, need_reason: bool) -> str | tuple[str, int]:
        user, ip = who()
        reason = _clip(request.form.get("reason") or request.form.get("message"))
        if need_reason and not reason:
            return "Please say why the class needs this page.", 400
        record = {
            "kind": kind,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "reference": _clip(request.form.get("ref"), 32),
            "url": _clip(request.form.get("url"), 2048),
            "text": reason,
            "user": user,
            "ip": ip,
            "profile": gateway.profile_for(user, ip),
        }
        reports().add(record)
        logger.info("Schoolgate %s received (reference %s)", kind, record["reference"])
        return blockpage.render_page("report_thanks.html", school=school(), kind=kind)

    @app.post("/report")
    def report() -> str | tuple[str, int]:
        return _save("report", need_reason=False)

    @app.post("/unblock/request")
    def unblock_request() -> str | tuple[str, int]:
        user, ip = who()
        loaded = gateway.runtime.current if gateway.runtime else None
        if loaded is None:
            abort(503)
        profile = loaded.policy.profiles[gateway.profile_for(user, ip)]
        if not profile.may_request_unblock:
            return "Only staff can ask for a page to be unblocked.", 403
        return _save("access_request", need_reason=True)

    return app


class Portal(asgiapp.WSGIApp):
    """Serves the portal app on the policy's portal host (http and, decrypted, https)."""

    name = "schoolgate_portal"

    def __init__(self, gateway: Filter) -> None:
        self.gateway = gateway
        self.book: ReportBook | None = None
        super().__init__(create_app(gateway, self), "schoolgate.local", None)  # http and https

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_var" in updated or self.book is None:
            self.book = ReportBook(Path(ctx.options.schoolgate_var) / "reports.jsonl")
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

    def reports(self) -> ReportBook:
        assert self.book is not None
        return self.book

    def ca_path(self) -> Path:
        return Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem"

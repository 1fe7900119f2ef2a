"""The admin web app for temporary educational unblocks: staff ask, a DSL or deputy decides.

A thin layer over `UnblockWorkflow`, which holds every rule (four eyes, who may decide, how
long): this module signs people in, shows the requests and turns form posts into workflow
calls. What the workflow refuses comes back to the person as its own sentence with a 400,
and nothing changes. The pages reuse the block page's look and need no JavaScript.

Sessions are kept in the store (`web_sessions`): the cookie (Secure, HttpOnly, SameSite=Lax,
signed) carries only a random session id, looked up on every request, for eight hours from
sign-in. Signing out deletes it on the server, so a copy of the cookie stops working too.
Each request re-reads the account, so disabling it or changing its password ends its sessions.
Every form carries a CSRF token (Flask-WTF).
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import logging
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import jinja2
from flask import (
    Flask,
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.wrappers import Response as WerkzeugResponse

from proxy_addons.core.policy.model import Policy
from proxy_addons.core.unblocks import AudienceKind, Scope, Status, Unblock
from proxy_addons.store import Store
from proxy_addons.workflow import sessions as web_sessions
from proxy_addons.workflow.accounts import Account, check_password, get_account, normalise_username
from proxy_addons.workflow.throttle import FailureCounter, address_key
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow, WorkflowError

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parents[1] / "pages" / "templates"
SESSION_LIFETIME = timedelta(hours=8)
RECENT = 50  # finished unblocks shown under "Recent"
MAX_TEXT = 2000
MAX_URL = 2048
SECRET_FILE = "web-secret"

_LIVE = (Status.PENDING, Status.AWAITING_IT, Status.ACTIVE)
_STATUS_TEXT = {
    Status.PENDING: "Waiting for a DSL or deputy",
    Status.AWAITING_IT: "Approved, waiting for IT",
    Status.ACTIVE: "Active",
    Status.REJECTED: "Rejected",
    Status.REVOKED: "Revoked",
    Status.EXPIRED: "Expired",
}
_AUDIENCE_TEXT = {
    AudienceKind.USER: "User",
    AudienceKind.USERS: "Users",
    AudienceKind.PROFILE: "Profile",
    AudienceKind.DEVICE: "Device",
}
_SCOPE_TEXT = {
    Scope.URL: "this page only",
    Scope.PREFIX: "this page and the pages below it",
    Scope.DOMAIN: "the whole site",
}

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


class LoginThrottle:
    """Slows password guessing without locking the real user out.

    Per 15 minutes: 5 tries at one user name from one client, 20 from one client at any
    names (one password tried on many accounts), where a client is its IPv4 address or its
    IPv6 /64 (throttle.address_key: a host can use any address in its /64). And 10 tries at
    one account from anywhere, so spreading guesses over many addresses gains nothing; a
    browser that account has signed in on before (a signed cookie) is not held back by
    others' failures, so the real user still gets in while someone else guesses.
    """

    def __init__(self, window: float = 15 * 60, clock: Callable[[], float] = time.monotonic):
        self.by_name_here = FailureCounter(5, window, clock=clock)
        self.by_client = FailureCounter(20, window, clock=clock)
        self.by_account = FailureCounter(10, window, clock=clock)

    def refusal(self, user: str, address: str | None, known_browser: bool) -> str | None:
        """Why this attempt is not even checked, in words for the person; None if it may be."""
        client = address_key(address)
        if self.by_name_here.blocked((user, client)) or self.by_client.blocked(client):
            return "Too many failed sign-ins. Wait a few minutes and try again."
        if not known_browser and self.by_account.blocked(user):
            return (
                "Too many failed sign-ins to this account from other computers. Sign in on a "
                "computer you have signed in on before, or wait 15 minutes and try again. "
                "If this keeps happening, tell the IT provider."
            )
        return None

    def failed(self, user: str, address: str | None) -> None:
        client = address_key(address)
        self.by_name_here.failed((user, client))
        self.by_client.failed(client)
        self.by_account.failed(user)

    def succeeded(self, user: str, address: str | None) -> None:
        # Only this client's count for this name: the others count what someone else tried.
        self.by_name_here.succeeded((user, address_key(address)))


class KnownBrowsers:
    """A signed cookie saying "this account signed in on this browser", for LoginThrottle."""

    LIFETIME = timedelta(days=120)

    def __init__(self, secret_key: bytes, secure_cookies: bool) -> None:
        self._signer = URLSafeTimedSerializer(secret_key, salt="schoolgate-known-browser")
        self.cookie = "__Host-schoolgate-known" if secure_cookies else "schoolgate-known"
        self.secure = secure_cookies

    def knows(self, user: str) -> bool:
        value = request.cookies.get(self.cookie)
        if not value or len(value) > 500:
            return False
        try:
            found = self._signer.loads(value, max_age=int(self.LIFETIME.total_seconds()))
        except BadData:
            return False
        return bool(found == user)

    def remember(self, response: WerkzeugResponse, user: str) -> None:
        response.set_cookie(
            self.cookie,
            self._signer.dumps(user),
            max_age=int(self.LIFETIME.total_seconds()),
            secure=self.secure,
            httponly=True,
            samesite="Lax",
            path="/",
        )


def create_app(
    workflow: UnblockWorkflow,
    store: Store,
    *,
    secret_key: bytes,
    secure_cookies: bool = True,
) -> Flask:
    """The web app; `secure_cookies=False` only for tests on plain http over loopback."""
    if len(secret_key) < 16:
        raise ValueError("the web app's secret key must be at least 16 bytes")
    app = Flask("schoolgate-web", template_folder=str(TEMPLATES), static_folder=None)
    app.config.update(
        SECRET_KEY=secret_key,
        # "__Host-": the browser only keeps it from HTTPS, for this host, for every path.
        SESSION_COOKIE_NAME="__Host-schoolgate" if secure_cookies else "schoolgate",
        SESSION_COOKIE_SECURE=secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        WTF_CSRF_TIME_LIMIT=int(SESSION_LIFETIME.total_seconds()),
        # The strict check wants a Referer on HTTPS posts, but base.html asks browsers to
        # send none (block pages must not leak addresses). The token and SameSite=Lax suffice.
        WTF_CSRF_SSL_STRICT=False,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.jinja_env.undefined = jinja2.StrictUndefined  # a missing value is a bug
    throttle = LoginThrottle()
    browsers = KnownBrowsers(secret_key, secure_cookies)

    def policy() -> Policy:
        return workflow.policy()

    def page(template: str, status: int = 200, **values: Any) -> ResponseReturnValue:
        return render_template(template, **values), status

    def problem(message: str, status: int) -> ResponseReturnValue:
        return page("web_problem.html", status, message=message, code=status)

    def actor() -> Actor:
        return Actor(g.account.username, request.remote_addr)

    @app.context_processor
    def common() -> dict[str, Any]:
        return {
            "school": policy().school,
            "me": g.get("account"),
            "status_text": lambda u: _status_text(u, workflow.clock()),
            "audience_text": _audience_text,
            "window_text": lambda u: _window_text(policy(), u.starts_at, u.ends_at),
            "scope_text": _SCOPE_TEXT,
            "when_text": lambda at: _when_text(policy(), at) if at else "",
        }

    @app.before_request
    def load_account() -> None:
        """The signed-in account: its session must be live in the store (not signed out,
        not expired), and the account is re-read so disabling it or a new password ends it."""
        g.account = None
        if "sid" not in session:
            return
        user = web_sessions.user_of(store, session.get("sid"), workflow.clock())
        account = get_account(store, user) if user else None
        if account is None or account.disabled or session.get("stamp") != account.password_stamp:
            session.clear()
            return
        g.account = account

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    def staff_only(view: View) -> View:
        """Pages for signed-in staff only; anyone else is sent to sign in or refused."""

        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            account: Account | None = g.account
            if account is None:
                if request.method == "GET":
                    return redirect(url_for("login", next=_here()))
                flash("Your session has ended: please sign in again.", "error")
                return redirect(url_for("login"), 303)
            if not workflow.is_staff(account.username):
                return problem("This site is for school staff only.", 403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    # -- signing in and out ------------------------------------------------------------

    @app.get("/")
    def home() -> ResponseReturnValue:
        return redirect(url_for("unblock_list"))

    @app.route("/login", methods=["GET", "POST"])
    def login() -> ResponseReturnValue:
        next_page = _safe_next(request.values.get("next"))
        if request.method == "GET":
            return page("web_login.html", next=next_page, username="", error=None)
        username = normalise_username(request.form.get("username", ""))[:200]
        password = request.form.get("password", "")
        address = request.remote_addr or "unknown"
        # An unknown name may be a password typed into the wrong box: never logged.
        logged = username if get_account(store, username) is not None else "an unknown name"
        refused = throttle.refusal(username, address, browsers.knows(username))
        if refused:
            logger.warning("sign-in refused for %s from %s: too many failures", logged, address)
            return page("web_login.html", 429, next=next_page, username=username, error=refused)
        account = check_password(store, username, password)
        if account is None:
            throttle.failed(username, address)
            logger.warning("failed sign-in for %s from %s", logged, address)
            message = "That user name and password don't match an account."
            return page("web_login.html", 401, next=next_page, username=username, error=message)
        if not workflow.is_staff(account.username):
            logger.warning("sign-in refused for %s from %s: not staff", account.username, address)
            message = "This site is for school staff only."
            return page("web_login.html", 403, next=next_page, username=username, error=message)
        throttle.succeeded(username, address)
        session.clear()  # a new session (and CSRF token): nothing set before sign-in survives
        session.permanent = True
        session["sid"] = web_sessions.start(
            store, account.username, workflow.clock(), SESSION_LIFETIME
        )
        session["stamp"] = account.password_stamp
        logger.info("%s signed in from %s", account.username, address)
        response = redirect(next_page or url_for("unblock_list"), 303)
        browsers.remember(response, account.username)
        return response

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        account: Account | None = g.account
        if account is not None:
            logger.info("%s signed out", account.username)
        web_sessions.end(store, session.get("sid"))  # a copy of the cookie no longer works
        session.clear()
        flash("You have signed out.", "ok")
        return redirect(url_for("login"), 303)

    # -- unblocks ------------------------------------------------------------------------

    @app.get("/unblocks")
    @staff_only
    def unblock_list() -> ResponseReturnValue:
        now = workflow.clock()
        everything = workflow.list()  # newest first
        waiting = [
            u for u in reversed(everything) if u.status in (Status.PENDING, Status.AWAITING_IT)
        ]
        active = sorted(
            (u for u in everything if u.status is Status.ACTIVE and u.ends_at > now),
            key=lambda u: u.ends_at,
        )
        shown = {u.id for u in (*waiting, *active)}
        recent = [u for u in everything if u.id not in shown][:RECENT]
        return page("web_list.html", waiting=waiting, active=active, recent=recent)

    def detail_page(
        unblock_id: str, status: int = 200, error: str | None = None
    ) -> ResponseReturnValue:
        try:
            unblock = workflow.get(unblock_id)
            row = workflow.details(unblock_id)
        except WorkflowError as exc:
            return problem(str(exc), 404)
        me = g.account.username
        decider, it = workflow.is_decider(me), workflow.is_it_provider(me)
        own = unblock.requested_by == me
        live = unblock.status in _LIVE
        pending = unblock.status is Status.PENDING
        decide_note = None
        if pending and decider and own:
            decide_note = (
                "You asked for this unblock, so you can't approve or reject it: "
                "another DSL or deputy must decide (four eyes)."
            )
        elif pending and not decider:
            decide_note = "A DSL or deputy named in the policy decides this request."
        extend_note = None
        if live and decider and own:
            extend_note = "You can't extend your own unblock: ask another DSL or deputy."
        suggested_end = max(unblock.ends_at, workflow.clock()) + timedelta(hours=1)
        return page(
            "web_detail.html",
            status,
            u=unblock,
            row=row,
            error=error,
            can_decide=pending and decider and not own,
            decide_note=decide_note,
            can_confirm=it and unblock.status is Status.AWAITING_IT,
            can_revoke=live and (decider or it or own),
            can_extend=live and decider and not own,
            extend_note=extend_note,
            suggested_end=_input_value(policy(), suggested_end),
        )

    @app.get("/unblocks/<unblock_id>")
    @staff_only
    def unblock_detail(unblock_id: str) -> ResponseReturnValue:
        return detail_page(unblock_id)

    @app.post("/unblocks/<unblock_id>/<action>")
    @staff_only
    def unblock_action(unblock_id: str, action: str) -> ResponseReturnValue:
        form = request.form
        who = actor()
        try:
            if action == "approve":
                done = workflow.approve(who, unblock_id, _clip(form.get("comment")))
                message = f"Approved: {done.id} is now {_STATUS_TEXT[done.status].lower()}."
            elif action == "reject":
                workflow.reject(who, unblock_id, _clip(form.get("comment")))
                message = "Rejected. The requester will be told."
            elif action == "confirm":
                workflow.confirm(who, unblock_id)
                message = "Confirmed: the unblock is active."
            elif action == "revoke":
                workflow.revoke(who, unblock_id, _clip(form.get("reason")))
                message = "Revoked: the page is blocked again."
            elif action == "extend":
                until = parse_when(form.get("until"), policy(), workflow.clock())
                if until is None:
                    raise WorkflowError("Give the new end time.")
                done = workflow.extend(who, unblock_id, until, _clip(form.get("reason")))
                message = f"Extended until {_when_text(policy(), done.ends_at)}."
            else:
                return problem("There is no such action.", 404)
        except WorkflowError as exc:
            return detail_page(unblock_id, 400, error=str(exc))
        flash(message, "ok")
        return redirect(url_for("unblock_detail", unblock_id=unblock_id), 303)

    @app.route("/unblocks/new", methods=["GET", "POST"])
    @staff_only
    def unblock_new() -> ResponseReturnValue:
        current = policy()
        profiles = sorted(current.profiles)
        if request.method == "GET":
            form = dict.fromkeys(_NEW_FIELDS, "")
            form.update(
                url=_clip(request.args.get("url"), MAX_URL), scope="", audience_kind="users"
            )
            return page("web_new.html", form=form, profiles=profiles)
        form = {
            name: _clip(request.form.get(name), MAX_URL if name == "url" else MAX_TEXT)
            for name in _NEW_FIELDS
        }
        try:
            unblock = workflow.request(actor(), **_request_values(form, current, workflow.clock()))
        except WorkflowError as exc:
            flash(str(exc), "error")
            return page("web_new.html", 400, form=form, profiles=profiles)
        flash(f"Sent: {unblock.id} is waiting for a DSL or deputy to decide.", "ok")
        return redirect(url_for("unblock_detail", unblock_id=unblock.id), 303)

    # -- errors ----------------------------------------------------------------------------

    @app.errorhandler(CSRFError)
    def csrf_failed(exc: CSRFError) -> ResponseReturnValue:
        logger.warning("CSRF check failed from %s: %s", request.remote_addr, exc.description)
        return problem(
            "This form had expired or did not come from this site. "
            "Go back, reload the page and try again.",
            400,
        )

    @app.errorhandler(404)
    def not_found(exc: Exception) -> ResponseReturnValue:
        return problem("There is no such page.", 404)

    @app.errorhandler(405)
    def wrong_method(exc: Exception) -> ResponseReturnValue:
        return problem("That page can't be used like that.", 405)

    @app.errorhandler(413)
    def too_big(exc: Exception) -> ResponseReturnValue:
        return problem("That form was far too long.", 413)

    # The IT provider's device inventory (read-only pages; proxy_addons/web/devices.py).
    from proxy_addons.web import devices as device_pages

    device_pages.register(
        app, store, policy, workflow.is_it_provider, staff_only, problem, workflow.clock
    )

    # After load_account, so a page refusing a form still knows who is signed in.
    CSRFProtect(app)
    return app


# -- form handling ---------------------------------------------------------------------------

_NEW_FIELDS = ("url", "scope", "audience_kind", "audience", "minutes", "until", "reason")


def _request_values(form: dict[str, str], policy: Policy, now: datetime) -> dict[str, Any]:
    """Keyword arguments for `UnblockWorkflow.request` from the new-request form."""
    try:
        scope = Scope(form["scope"]) if form["scope"] else None
    except ValueError:
        raise WorkflowError(
            "Choose what to unblock: the page, the pages below it, or the site."
        ) from None
    try:
        kind = AudienceKind(form["audience_kind"])
    except ValueError:
        raise WorkflowError("Choose who the unblock is for.") from None
    minutes = parse_minutes(form["minutes"], policy)
    until = parse_when(form["until"], policy, now)
    if minutes is not None and until is not None:
        raise WorkflowError("Give either a number of minutes or an end time, not both.")
    return {
        "target": form["url"],
        "scope": scope,
        "audience_kind": kind,
        "audience": split_names(form["audience"]),
        "reason": form["reason"],
        "minutes": minutes,
        "until": until,
    }


def parse_minutes(text: str | None, policy: Policy) -> int | None:
    """How long an unblock should last, as typed: a whole number of minutes up to the policy's
    `max_days` (a huge one would overflow the end time's sum); None when not given."""
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdecimal() or not text.isascii():
        raise WorkflowError("Give the number of minutes as a whole number, e.g. 45.")
    longest = policy.unblocks.max_days * 24 * 60
    if len(text.lstrip("0")) > len(str(longest)) or int(text) > longest:
        raise WorkflowError(f"An unblock can last at most {policy.unblocks.max_days} days.")
    return int(text)


def split_names(text: str) -> list[str]:
    """Names typed one per line, or separated by commas or spaces."""
    return [part for part in re.split(r"[\s,;]+", text) if part]


def parse_when(text: str | None, policy: Policy, now: datetime) -> datetime | None:
    """An end time typed in school time: "2026-03-03T15:00" (a date-time input) or "15:00"."""
    text = (text or "").strip()
    if not text:
        return None
    local_now = now.astimezone(policy.timezone)
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}", text):
            when = datetime.combine(local_now.date(), clock_time.fromisoformat(text.zfill(5)))
        else:
            when = datetime.fromisoformat(text)
    except ValueError:
        raise WorkflowError(
            f"'{text[:40]}' is not a time: write it like {local_now:%Y-%m-%d} 15:00."
        ) from None
    if abs(when.year - local_now.year) > 1:  # also keeps time zone sums from overflowing
        raise WorkflowError("That end time is too far from today.")
    return when if when.tzinfo else when.replace(tzinfo=policy.timezone)


def _clip(value: str | None, limit: int = MAX_TEXT) -> str:
    return (value or "").strip()[:limit]


def _here() -> str:
    return request.full_path.rstrip("?")


def _safe_next(value: str | None) -> str | None:
    """Only a path on this site: "//host" or "/\\host" would send people elsewhere."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in value):
        return None
    return value


# -- wording -------------------------------------------------------------------------------


def _status_text(unblock: Unblock, now: datetime) -> str:
    if unblock.status is Status.ACTIVE and unblock.ends_at <= now:
        return "Ended"
    return _STATUS_TEXT[unblock.status]


def _audience_text(unblock: Unblock) -> str:
    return f"{_AUDIENCE_TEXT[unblock.audience_kind]}: {', '.join(unblock.audience)}"


def _when_text(policy: Policy, at: datetime) -> str:
    local = at.astimezone(policy.timezone)
    return f"{local:%H:%M} on {local:%a} {local.day} {local:%b %Y}"


def _window_text(policy: Policy, start: datetime, end: datetime) -> str:
    """ "09:05 to 10:00 on Tue 3 Mar 2026", in school time."""
    a, b = start.astimezone(policy.timezone), end.astimezone(policy.timezone)
    if a.date() == b.date():
        return f"{a:%H:%M} to {b:%H:%M} on {b:%a} {b.day} {b:%b %Y}"
    return f"{a:%H:%M} on {a:%a} {a.day} {a:%b} to {_when_text(policy, end)}"


def _input_value(policy: Policy, at: datetime) -> str:
    """The value a datetime-local input shows, in school time."""
    return at.astimezone(policy.timezone).strftime("%Y-%m-%dT%H:%M")


# -- running it --------------------------------------------------------------------------------


def read_secret_key(var_dir: Path) -> bytes:
    """The session-signing key in `var/web-secret`, made (readable by us only) if missing."""
    path = var_dir / SECRET_FILE
    var_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            logger.warning("%s can be read by others: chmod 600 it", path)
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise ValueError(
                f"{path} is too short to be a secret key: delete it to make a new one"
            ) from None
        return key
    key = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    logger.info("made a new web app secret key in %s", path)
    return key


class PolicyFile:
    """The policy, re-read when one of its files changes; a broken edit keeps the last good one."""

    def __init__(self, path: Path, check_every: float = 5.0) -> None:
        from proxy_addons.core.policy.load import load_policy

        self._load = load_policy
        self.path = path
        self.check_every = check_every
        self.current = load_policy(path)
        self._stamp = self._mtimes()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _mtimes(self) -> tuple[float, ...]:
        files = self.current.files or (self.path,)
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in files)

    def __call__(self) -> Policy:
        if time.monotonic() - self._checked < self.check_every:
            return self.current
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._mtimes()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.current = self._load(self.path)
                    logger.info("policy reloaded from %s", self.path)
                except Exception as exc:  # keep serving with the last good policy
                    logger.error("policy %s not reloaded: %s", self.path, exc)
        return self.current


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_web(args: argparse.Namespace) -> int:
    """`schoolgate web`: serve the admin web app until interrupted.

    Reads args.policy, args.var, args.host, args.port, and when present args.dsn, args.cert
    and args.key (serve HTTPS directly) and args.trusted_proxies (hops of X-Forwarded-* to
    believe, behind an HTTPS reverse proxy). Cookies are always Secure: the browser must reach
    the app over HTTPS (or on its own loopback address).
    """
    from werkzeug.middleware.proxy_fix import ProxyFix
    from werkzeug.serving import make_server

    from proxy_addons.core.policy.load import PolicyError
    from proxy_addons.store import store_url

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    var = Path(args.var)
    try:
        policy = PolicyFile(Path(args.policy))
    except (PolicyError, OSError) as exc:
        print(f"schoolgate web cannot start: {exc}", flush=True)
        return 1
    store = Store.open(store_url(var, getattr(args, "dsn", None)))
    workflow = UnblockWorkflow(store, policy)
    app = create_app(workflow, store, secret_key=read_secret_key(var))
    # The device API shares this process and its HTTPS server (see device_api.py).
    from proxy_addons.devices.api import create_device_api, mount

    app.wsgi_app = mount(  # type: ignore[method-assign,assignment]
        app.wsgi_app, create_device_api(store, policy).wsgi_app
    )
    # Admin pages only for the policy's management networks (network_access.py).
    from proxy_addons.core.network_access import management_only

    app.wsgi_app = management_only(  # type: ignore[method-assign,assignment]
        app.wsgi_app, lambda: policy().network.management_networks
    )
    proxies = int(getattr(args, "trusted_proxies", 0) or 0)
    if proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )
    cert, key = getattr(args, "cert", None), getattr(args, "key", None)
    tls = (str(cert), str(key)) if cert and key else None
    if tls is None and not proxies and not _is_loopback(args.host):
        logger.warning(
            "serving plain HTTP on %s: sessions only work over HTTPS; give a certificate "
            "or put an HTTPS reverse proxy in front",
            args.host,
        )
    server = make_server(args.host, int(args.port), app, threaded=True, ssl_context=tls)
    scheme = "https" if tls else "http"
    print(f"Schoolgate web app on {scheme}://{args.host}:{args.port}", flush=True)
    # systemd stops services with SIGTERM: leave through `finally` so the store closes cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.dispose()
    return 0


__all__ = [
    "KnownBrowsers",
    "LoginThrottle",
    "PolicyFile",
    "create_app",
    "parse_minutes",
    "parse_when",
    "read_secret_key",
    "run_web",
    "split_names",
]

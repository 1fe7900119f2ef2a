"""This device's network path to a URL, as its browser would take it, and one try over it.

Where the proxy comes from, in the order browsers use:
1. `--pac` (a URL or file) or, if none is given, the system's automatic configuration
   script: Windows (Internet Options), macOS (network preferences), GNOME (gsettings);
2. proxies set by hand: environment variables (http_proxy, https_proxy, no_proxy) and,
   on Windows and macOS, the system settings (`urllib.request.getproxies`), and GNOME's;
3. otherwise direct (transparent interception catches it, if the school uses that).
A PAC script is run with pypac (its JavaScript engine is only loaded when one is in use).

`fetch` talks HTTP itself (http.client) so that it sees what a browser sees, including the
body of a refused CONNECT, which carries the gateway's block reference and which urllib
throws away. Redirects are followed as a browser would, each hop over its own route.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from pypac.os_settings import autoconfig_url_from_preferences, autoconfig_url_from_registry
from pypac.parser import PACFile

from agent.check_suite import Observation, observe_error, observe_response

logger = logging.getLogger(__name__)

BODY_LIMIT = 200_000
MAX_REDIRECTS = 10
PAC_LIMIT = 1_000_000


@dataclass(frozen=True)
class Route:
    proxy: str | None  # "http://host:port" (maybe with user:password@), or None: direct
    unsupported: str | None = None  # e.g. a SOCKS proxy, which the agent can't use

    def describe(self) -> str:
        if self.unsupported:
            return self.unsupported
        return f"via {_without_password(self.proxy)}" if self.proxy else "direct"


class ProxyFinder:
    """Chooses the route for each URL; `source` says where the setting came from."""

    def __init__(
        self,
        pac: str | None = None,
        direct: bool = False,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self._pac: Callable[[str, str], str] | None = None
        self._manual: dict[str, str] = {}
        if direct:
            self.source = "direct (--direct)"
            return
        pac = pac or system_pac_url()
        if pac:
            self._pac = _load_pac(pac)
            self.source = f"PAC {pac}"
            return
        self._manual = _manual_proxies(self.environ)
        self.source = "proxy settings" if self._manual else "direct (no proxy set)"

    def route(self, url: str) -> Route:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if self._pac is not None:
            return _pac_route(self._pac(url, host))
        proxy = self._manual.get(parts.scheme)
        if not proxy or _bypassed(host, self._manual.get("no", "")):
            return Route(None)
        return Route(proxy if "://" in proxy else f"http://{proxy}")


def _manual_proxies(environ: dict[str, str]) -> dict[str, str]:
    """Environment variables first (as urllib and curl), then the system's own settings."""
    found: dict[str, str] = {}
    for name in ("http", "https", "no"):
        value = environ.get(f"{name}_proxy") or environ.get(f"{name.upper()}_PROXY")
        if value:
            found[name] = value
    if found.keys() - {"no"}:
        return found
    system: dict[str, str] = {}
    if sys.platform == "win32":
        system = urllib.request.getproxies_registry()
    elif sys.platform == "darwin":
        system = urllib.request.getproxies_macosx_sysconf()
    else:
        system = _gnome_manual()
    return {k: v for k, v in system.items() if v}


def _bypassed(host: str, no_proxy: str) -> bool:
    host = host.lower().rstrip(".")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.lstrip("*").lstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def _pac_route(value: str) -> Route:
    """The first choice of a FindProxyForURL answer ("PROXY a:1; DIRECT")."""
    first = (value or "DIRECT").split(";")[0].strip()
    kind, _, where = first.partition(" ")
    kind = kind.upper()
    if kind == "DIRECT" or not where.strip():
        return Route(None)
    if kind in ("PROXY", "HTTP"):
        return Route(f"http://{where.strip()}")
    if kind == "HTTPS":
        return Route(None, f"an HTTPS proxy ({where.strip()}), which the agent can't use")
    return Route(None, f"a {kind} proxy ({where.strip()}), which the agent can't use")


def _load_pac(where: str) -> Callable[[str, str], str]:
    """The PAC script's FindProxyForURL, from a URL (fetched directly) or a file."""
    if urlsplit(where).scheme in ("http", "https"):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via proxy
        with opener.open(where, timeout=15) as answer:
            text = answer.read(PAC_LIMIT).decode("utf-8", "replace")
    else:
        path = unquote(urlsplit(where).path) if where.startswith("file:") else where
        text = Path(path).read_text(errors="replace")[:PAC_LIMIT]
    pac = PACFile(text)
    return lambda url, host: str(pac.find_proxy_for_url(url, host))


def system_pac_url() -> str | None:
    """The automatic configuration script the system names, if any."""
    try:
        if sys.platform == "win32":
            return autoconfig_url_from_registry() or None
        if sys.platform == "darwin":
            return autoconfig_url_from_preferences() or None
    except Exception as exc:  # unreadable settings: carry on as if none
        logger.warning("could not read the system's proxy settings: %s", exc)
        return None
    if _gsettings("org.gnome.system.proxy", "mode") == "auto":
        return _gsettings("org.gnome.system.proxy", "autoconfig-url") or None
    return None


def _gnome_manual() -> dict[str, str]:
    if _gsettings("org.gnome.system.proxy", "mode") != "manual":
        return {}
    found = {}
    for scheme in ("http", "https"):
        host = _gsettings(f"org.gnome.system.proxy.{scheme}", "host")
        port = _gsettings(f"org.gnome.system.proxy.{scheme}", "port")
        if host and port and port != "0":
            found[scheme] = f"http://{host}:{port}"
    return found


def _gsettings(schema: str, key: str) -> str | None:
    if sys.platform != "linux" or shutil.which("gsettings") is None:
        return None
    try:
        done = subprocess.run(
            ["gsettings", "get", schema, key], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().strip("'") if done.returncode == 0 else None


# -- one try ------------------------------------------------------------------------------------


class TunnelRefused(OSError):
    """The proxy answered CONNECT with something other than 200 (kept whole, body included)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"CONNECT refused: {status}")
        self.status, self.headers, self.body = status, headers, body


def fetch(
    url: str,
    finder: ProxyFinder,
    context: ssl.SSLContext,
    timeout: float = 15.0,
    agent: str = "schoolgate-agent",
) -> tuple[Observation, str]:
    """Try `url` as the browser would; the shared Observation and the route taken."""
    route = finder.route(url)
    for _ in range(MAX_REDIRECTS + 1):
        route = finder.route(url)
        if route.unsupported:
            error = f"the device's proxy setting names {route.unsupported}"
            return Observation(None, False, None, None, error, error), route.describe()
        try:
            status, headers, body = _get(url, route, context, timeout, agent)
        except TunnelRefused as refused:
            if refused.status == 407:
                return _sign_in_needed(), route.describe()
            seen = observe_response(url, refused.status, refused.headers, refused.body)
            return _prefixed(seen, "CONNECT refused with "), route.describe()
        except TimeoutError:
            return observe_error(f"timed out after {timeout:g} s"), route.describe()
        except ssl.SSLCertVerificationError as exc:
            why = exc.verify_message or exc.reason or exc
            return observe_error(f"TLS: certificate verify failed: {why}"), route.describe()
        except ssl.SSLError as exc:
            return observe_error(f"TLS: {exc}"), route.describe()
        except socket.gaierror as exc:
            return observe_error(f"DNS: {exc}"), route.describe()
        except (OSError, http.client.HTTPException) as exc:
            return observe_error(f"{type(exc).__name__}: {exc}"), route.describe()
        if status == 407:
            return _sign_in_needed(), route.describe()
        location = _header(headers, "location")
        if status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        return observe_response(url, status, headers, body), route.describe()
    error = f"more than {MAX_REDIRECTS} redirects"
    return Observation(None, False, None, None, error, error), route.describe()


def _sign_in_needed() -> Observation:
    """Proxy sign-in asked for: the browser would ask its user; the agent can't judge."""
    error = (
        "the proxy asked for sign-in (407): give it in the proxy setting, "
        "e.g. https_proxy=http://user:password@gateway:8080"
    )
    return Observation(407, False, None, None, error, error)


def _get(
    url: str, route: Route, context: ssl.SSLContext, timeout: float, agent: str
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    authority = host if parts.port is None else f"{host}:{port}"
    headers = {
        "Host": authority,
        "User-Agent": agent,
        "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    conn: http.client.HTTPConnection
    if route.proxy is None:
        conn = (
            http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
            if https
            else http.client.HTTPConnection(host, port, timeout=timeout)
        )
        target = path
    else:
        proxy = urlsplit(route.proxy)
        proxy_host, proxy_port = proxy.hostname or "", proxy.port or 8080
        auth = _proxy_auth(proxy.username, proxy.password)
        if https:
            sock = _tunnel(proxy_host, proxy_port, host, port, auth, timeout)
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
            conn.sock = context.wrap_socket(sock, server_hostname=host)
            target = path
        else:
            conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
            target = f"http://{authority}{path}"
            if auth:
                headers["Proxy-Authorization"] = auth
    try:
        conn.request("GET", target, headers=headers)
        answer = conn.getresponse()
        body = answer.read(BODY_LIMIT)
        return answer.status, dict(answer.getheaders()), body
    finally:
        conn.close()


def _tunnel(
    proxy_host: str, proxy_port: int, host: str, port: int, auth: str | None, timeout: float
) -> socket.socket:
    """CONNECT through the proxy; TunnelRefused with the proxy's whole answer if refused."""
    sock = socket.create_connection((proxy_host, proxy_port), timeout=timeout)
    try:
        name = host if ":" in host else host.encode("idna").decode("ascii")
        target = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if auth:
            lines.append(f"Proxy-Authorization: {auth}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        answer = http.client.HTTPResponse(sock, method="CONNECT")
        answer.begin()
        if answer.status != 200:
            body = answer.read(BODY_LIMIT) if answer.length or answer.chunked else b""
            raise TunnelRefused(answer.status, dict(answer.getheaders()), body)
        return sock
    except BaseException:
        sock.close()
        raise


def _proxy_auth(user: str | None, password: str | None) -> str | None:
    if not user:
        return None
    raw = f"{unquote(user)}:{unquote(password or '')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _prefixed(seen: Observation, prefix: str) -> Observation:
    return Observation(
        seen.status,
        seen.blocked,
        seen.block_reference,
        seen.safe_search,
        seen.error,
        prefix + seen.evidence,
    )


def _without_password(proxy: str | None) -> str:
    parts = urlsplit(proxy or "")
    if parts.password is None:
        return proxy or ""
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


__all__ = ["ProxyFinder", "Route", "TunnelRefused", "fetch", "system_pac_url"]

"""Serves the PAC file (`/proxy.pac`) and WPAD's `/wpad.dat` from the gateway itself.

Browsers fetch these without a proxy: WPAD asks http://wpad.<domain>/wpad.dat,
which DNS or DHCP option 252 points at the gateway, so the request arrives
directly on the listening port in origin form (mitmproxy takes the host from
the Host header). They are answered for the portal host, for any `wpad` or
`wpad.*` host, and for a request addressed to the gateway's own address and
port; through the proxy as well as directly. This add-on runs before the
filter: the answer is the gateway's own, and forwarding a request for
wpad.<domain> would send it back to the gateway.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from proxy_addons.core import pac
from proxy_addons.gateway.services import Services

logger = logging.getLogger(__name__)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _sign_in_prompt(flow: http.HTTPFlow) -> bool:
    """mitmproxy's proxyauth (which runs first) asked for a sign-in. Devices fetch the PAC
    file before they know of any proxy, so it is served without one: it holds no secret."""
    response = flow.response
    return (
        response is not None
        and response.status_code in (401, 407)
        and ("Proxy-Authenticate" in response.headers or "WWW-Authenticate" in response.headers)
        and "proxyauth" not in flow.metadata
    )


class AutoConfig:
    """PAC and WPAD for explicit-proxy devices (docs/network.md)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def _wanted(self, flow: http.HTTPFlow, portal_host: str, proxy: str | None) -> bool:
        request = flow.request
        if request.method not in ("GET", "HEAD") or request.path.split("?")[0] not in pac.PATHS:
            return False
        # The destination the gateway would connect to, not the Host header: a request
        # for another site that only says `Host: wpad` is not the gateway's own.
        host = request.host.lower().rstrip(".")
        if request.pretty_host.lower().rstrip(".") != host:
            return False
        if host in (portal_host, "wpad") or host.startswith("wpad."):
            return True
        if (
            proxy
            and host == pac.proxy_host(proxy)
            and request.port == int(proxy.rpartition(":")[2])
        ):
            return True
        sock = flow.client_conn.sockname
        return bool(sock) and host in (str(sock[0]), "localhost") and request.port == sock[1]

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and not _sign_in_prompt(flow):
            return
        loaded = self.services.loaded
        if loaded is None:
            return  # no policy yet: the filter refuses everything anyway
        policy = loaded.policy
        if not self._wanted(flow, policy.portal_host, policy.proxy_address):
            return
        proxy = policy.proxy_address
        if proxy is None:
            sock = flow.client_conn.sockname
            proxy = _address(str(sock[0]), int(sock[1]))
        body = pac.build(policy, proxy).encode()
        head = flow.request.method == "HEAD"
        flow.response = http.Response.make(
            200,
            b"" if head else body,
            {
                "Content-Type": pac.CONTENT_TYPE,
                "Cache-Control": "max-age=300",  # a policy change reaches devices soon
            },
        )
        if head:
            flow.response.headers["Content-Length"] = str(len(body))
        flow.metadata["schoolgate_autoconfig"] = flow.request.path

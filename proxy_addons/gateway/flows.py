"""What a flow or client connection says of who asks and where it goes.

Read by the Filter before it decides: the proxy sign-in, the names a request claims (Host,
request-line authority, SNI, CONNECT target), whether the destination is the one the
client's packets went to, and the site a TLS server name belongs to. Reading only: nothing
here decides, and a name that can't be read is a HostError (refused, never guessed).
"""

from __future__ import annotations

import re

from mitmproxy import connection, http
from mitmproxy.proxy.mode_specs import RegularMode, ReverseMode, Socks5Mode, UpstreamMode

from proxy_addons.core.hosts import Host, HostError, canonical_host, valid_authority
from proxy_addons.core.names import registrable_domain

_FOLDED = re.compile(rb"[\r\n\x00]")


def proxyauth_user(flow: http.HTTPFlow) -> str | None:
    """Who signed in to the proxy (mitmproxy's proxyauth), if anyone."""
    auth = flow.metadata.get("proxyauth")
    return str(auth[0]) if auth else None  # never keep the password


def claimed_names(flow: http.HTTPFlow, connect_host: str | None) -> tuple[Host, ...]:
    """The names the client wrote: Host header, request-line authority or `:authority`,
    SNI and CONNECT target. A Host header that is repeated or not a valid host[:port] is a
    HostError (the request is refused, never decided on a guess)."""
    req = flow.request
    hosts = []
    for name, value in req.headers.fields:
        if _FOLDED.search(name) or _FOLDED.search(value):
            # An obs-fold line or a stray CR/LF/NUL: a server may read a header mitmproxy
            # didn't (RFC 9112 5.2 lets a proxy refuse it).
            raise HostError("a folded or broken header line")
        if name.lower() == b"host":
            hosts.append(value)
    if len(hosts) > 1:
        raise HostError("more than one Host header")
    claimed = [valid_authority(v.decode("utf-8", "surrogateescape"))[0] for v in hosts]
    if req.authority:  # absolute-form inside a tunnel, or HTTP/2's :authority
        claimed.append(valid_authority(req.authority)[0])
    sni = flow.client_conn.sni if req.scheme == "https" else None
    if sni:
        claimed.append(canonical_host(sni))
    if connect_host:
        claimed.append(canonical_host(connect_host))
    return tuple(claimed)


def from_network(client: connection.Client) -> bool:
    """Is the destination the one the client's packets went to (transparent, WireGuard,
    local capture), rather than one the client named (explicit proxy, SOCKS, reverse)?"""
    mode = client.proxy_mode
    return not isinstance(mode, (RegularMode, UpstreamMode, Socks5Mode, ReverseMode))


def site_of(name: str | None) -> str:
    """The registrable domain of a server name; "" for none, or one that can't be read."""
    try:
        return registrable_domain(canonical_host(name).name) if name else ""
    except HostError:
        return ""

"""mitmdump test script: send every upstream connection to the test's local servers.

This stands in for DNS only (the tests must not reach the internet): the
request, its Host header and its SNI are left exactly as the client sent them.
Options: local_upstream_http and local_upstream_https, each "127.0.0.1:PORT", and
local_upstream_hosts, "NAME=127.0.0.1:PORT,...": a stand-in of its own for each NAME
(e.g. a search engine's enforced endpoint), whatever the port.
"""

from __future__ import annotations

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy.server_hooks import ServerConnectionHookData


class LocalUpstream:
    def load(self, loader: Loader) -> None:
        loader.add_option("local_upstream_http", str, "", "HOST:PORT for port-80 upstreams")
        loader.add_option("local_upstream_https", str, "", "HOST:PORT for port-443 upstreams")
        loader.add_option("local_upstream_hosts", str, "", "NAME=HOST:PORT,... by host name")

    def server_connect(self, data: ServerConnectionHookData) -> None:
        if data.server.address is None:
            return
        name, port = data.server.address[0], data.server.address[1]
        by_name = dict(
            item.split("=", 1) for item in ctx.options.local_upstream_hosts.split(",") if item
        )
        target = by_name.get(name) or (
            ctx.options.local_upstream_https if port == 443 else ctx.options.local_upstream_http
        )
        if target:
            host, _, target_port = target.rpartition(":")
            data.server.address = (host, int(target_port))


addons = [LocalUpstream()]

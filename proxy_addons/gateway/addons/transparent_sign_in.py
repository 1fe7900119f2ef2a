"""No proxy sign-in for transparent clients: they cannot give one.

With `authentication:` in the policy, mitmproxy's proxyauth asks every request
for credentials; a transparent client doesn't know there is a proxy, so each site
would answer with the proxy's own 401 password prompt. Connections in a mode that
isn't an HTTP proxy are marked as signed in with no user (an empty, falsy record),
so the filter identifies them by device report and network, as in a gateway
without sign-in (docs/network.md). The explicit proxy still asks (407).
"""

from __future__ import annotations

from mitmproxy import connection, ctx
from mitmproxy.proxy import mode_specs

NO_SIGN_IN: tuple[str, ...] = ()  # flow.metadata["proxyauth"] for these: falsy, no user


class TransparentSignIn:
    """Exempts transparent (non-proxy mode) connections from mitmproxy's proxyauth."""

    def client_connected(self, client: connection.Client) -> None:
        if isinstance(client.proxy_mode, (mode_specs.RegularMode, mode_specs.UpstreamMode)):
            return  # a real HTTP proxy client: proxyauth asks it (407)
        proxyauth = ctx.master.addons.get("proxyauth")
        if proxyauth is not None:  # marked even without sign-in: the policy may turn it on later
            proxyauth.authenticated[client] = NO_SIGN_IN

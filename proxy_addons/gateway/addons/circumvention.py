"""The circumvention add-on: closes tunnels through the gateway.

The ways round the filter that a name, a path or a media type shows (a DoH resolver by
address, the Firefox canary domain, iCloud Private Relay, a Tor name, DoH on any host)
are part of the core's one pipeline (`core.pipeline.settle`), so the Filter's verdict
already carries them. What is left is what only the bytes show: a connection whose first
bytes are neither TLS nor HTTP (SSH, OpenVPN, SOCKS ...) is closed, and its verdict, a
block under the category "circumvention" with reason "circumvention", replaces the
connection's, so the access log, the circumvention alert (technical, pseudonymous) and
the metrics that follow see it. A profile's `allow_circumvention` names the kinds it may
use (never for learners).
"""

from __future__ import annotations

import logging

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import commands, events, layer, layers

from proxy_addons.core import circumvention as cv
from proxy_addons.core.decide import Decision, Identity, Reason, resolve_profile
from proxy_addons.core.pipeline import tunnel_verdict
from proxy_addons.core.policy.model import Action
from proxy_addons.gateway.refuse_layer import RefuseLayer
from proxy_addons.gateway.services import Services, client_ip
from proxy_addons.pages import blockpage

logger = logging.getLogger(__name__)


class CloseLayer(RefuseLayer):
    """Closes a refused connection that is not TLS (a TLS alert would mean nothing to it).

    A RefuseLayer, so the add-ons after this one treat it as the refusal it is.
    """

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            yield commands.CloseConnection(self.context.client)


class Circumvention:
    """Closes the tunnels the gateway recognises from their first bytes."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_refuse_tunnels",
            bool,
            True,
            "Close connections whose first bytes are neither TLS nor HTTP (SSH, OpenVPN, "
            "SOCKS and other tunnels through the proxy).",
        )

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """Close a tunnel: a connection whose first bytes are neither TLS nor HTTP."""
        if nextlayer.context.client.transport_protocol != "tcp":
            return
        if not ctx.options.schoolgate_refuse_tunnels:
            return
        data = nextlayer.data_client()
        if not data or isinstance(nextlayer.layer, layers.HttpLayer | RefuseLayer):
            return  # HTTP (every request is decided, junk refused), or refused already
        kind = cv.sniff(data)
        if kind is None:
            nextlayer.layer = None  # too few bytes to tell: wait for more
            return
        if not cv.is_tunnel(kind):
            return
        client = nextlayer.context.client
        state = self.services.connection(client)
        base = state.verdict or state.connect
        decision = base.decision if base is not None else self._fresh(nextlayer)
        profile = self.services.profile(decision.profile)
        allowed = profile.allow_circumvention if profile is not None else frozenset()
        at = self.services.clock()
        blocked = tunnel_verdict(decision, kind, allowed, lambda: blockpage.new_reference(at))
        if blocked is None:
            return
        state.verdict = blocked
        nextlayer.layer = CloseLayer(nextlayer.context)
        logger.info(
            "Closed a %s tunnel to %s (reference %s)", kind, blocked.host, blocked.reference
        )

    def _fresh(self, nextlayer: layer.NextLayer) -> Decision:
        """Who is behind a connection no earlier stage decided (transparent mode)."""
        ip = client_ip(nextlayer.context.client)
        server = nextlayer.context.server.address
        host = str(server[0]) if server else ""
        policy = self.services.policy
        if policy is None:
            return Decision(Action.ALLOW, Reason.DEFAULT, "unknown", "none", host, ip=ip)
        identities = self.services.device_identities
        user = identities.user_at(ip) if identities is not None else None
        identity = Identity(user, self.services.groups_of(user), ip)
        profile, via = resolve_profile(policy, identity)
        return Decision(Action.ALLOW, Reason.DEFAULT, profile.name, via, host, user=user, ip=ip)

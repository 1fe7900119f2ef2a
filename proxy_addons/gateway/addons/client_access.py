"""The client-access add-on: the proxy serves only the school's client networks.

The firewall (deploy/nftables) should already keep everyone else out; this is the
second lock, so a missing or wrong firewall never makes the gateway an open proxy.
It runs first: a refused connection never reaches the filter or the logs.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import connection

from proxy_addons.core.network_access import address_in
from proxy_addons.core.policy.model import Network
from proxy_addons.gateway.services import Services

logger = logging.getLogger(__name__)

REPORT_EVERY_SECONDS = 60.0  # a scan must not flood the log


class ClientAccess:
    """Refuses connections from outside the policy's `network.client_networks`."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.refused = 0  # since the last log line
        self._reported = 0.0

    def client_connected(self, client: connection.Client) -> None:
        ip = str(client.peername[0]) if client.peername else None
        if address_in(self._networks().client_networks, ip):
            return
        client.error = "not a client network of this school"
        self.refused += 1
        now = time.monotonic()
        if now - self._reported >= REPORT_EVERY_SECONDS:
            logger.warning(
                "Refused %d connection(s) from outside the school's client networks (latest %s).",
                self.refused,
                ip,
            )
            self.refused, self._reported = 0, now

    def _networks(self) -> Network:
        """The policy's networks; before one is in force, the defaults (private addresses)."""
        loaded = self.services.loaded
        return loaded.policy.network if loaded else Network()

"""The lifecycle add-on: opens the gateway's services from its options, and starts and
stops their background jobs. First in the chain, so every add-on after it finds the
policy and the store open when its own `configure` runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from proxy_addons.core.policy.runtime import PolicyLoadError
from proxy_addons.gateway.services import Services

logger = logging.getLogger(__name__)


class Lifecycle:
    def __init__(self, services: Services) -> None:
        self.services = services

    def load(self, loader: Loader) -> None:
        loader.add_option("schoolgate_policy", str, "", "The school's policy file (YAML).")
        loader.add_option(
            "schoolgate_var", str, "var", "Folder for the gateway's state: index, status, reports."
        )
        loader.add_option(
            "schoolgate_dsn",
            str,
            "",
            "PostgreSQL DSN for a store shared by several gateways; empty: SQLite under var.",
        )
        loader.add_option(
            "schoolgate_untrusted_seconds",
            int,
            3600,
            "How long a device that rejected the school's CA for a site is treated as not "
            "trusting it there (ca_trust.py).",
        )

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_untrusted_seconds" in updated:
            self.services.ca_trust.seconds = ctx.options.schoolgate_untrusted_seconds
        if not updated & {"schoolgate_policy", "schoolgate_var"}:
            return
        if not ctx.options.schoolgate_policy:
            # Nothing to enforce yet: every hook blocks until a policy is set.
            logger.warning("schoolgate_policy is not set: blocking everything until it is.")
            return
        var = Path(ctx.options.schoolgate_var)
        try:
            loaded = self.services.open(
                Path(ctx.options.schoolgate_policy), var, ctx.options.schoolgate_dsn
            )
        except PolicyLoadError as exc:
            raise exceptions.OptionsError(f"Schoolgate cannot start: {exc}") from exc
        except Exception as exc:
            raise exceptions.OptionsError(f"Schoolgate cannot open its store: {exc}") from exc
        auth = loaded.policy.authentication
        wanted = f"@{auth.htpasswd}" if auth.htpasswd else auth.ldap
        if wanted and ctx.options.proxyauth != wanted:
            ctx.options.update(proxyauth=wanted)

    def running(self) -> None:
        self.services.start()

    def done(self) -> None:
        self.services.stop()

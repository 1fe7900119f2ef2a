"""The lifecycle add-on: opens the gateway's services from its options, and starts and
stops their background jobs. First in the chain, so every add-on after it finds the
policy and the store open when its own `configure` runs.

It also keeps mitmproxy's `proxyauth` (proxy sign-in) to the policy's `authentication:`,
at start and at every reload: turned on by an edit, sign-in starts without a restart;
taken out of the policy, the sign-in this add-on set is turned off (one set on mitmdump's
command line is left alone). A reload comes on the policy watcher's thread, so the option
is changed on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from proxy_addons.core.policy.model import Policy
from proxy_addons.core.policy.runtime import LoadedPolicy, PolicyLoadError
from proxy_addons.gateway.services import Services

logger = logging.getLogger(__name__)


class Lifecycle:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sign_in_set = ""  # the proxyauth value this add-on set from the policy
        services.on_reload.append(self._reloaded)

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
        self._follow_sign_in(loaded.policy)

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.services.start()

    def _reloaded(self, loaded: LoadedPolicy) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._follow_sign_in, loaded.policy)

    def _follow_sign_in(self, policy: Policy) -> None:
        """Set proxyauth from `authentication:`; clear it only if this add-on set it."""
        auth = policy.authentication
        wanted = f"@{auth.htpasswd}" if auth.htpasswd else (auth.ldap or "")
        current = ctx.options.proxyauth
        if wanted and current != wanted:
            ctx.options.update(proxyauth=wanted)
            logger.info("Proxy sign-in is on (%s)", "htpasswd" if auth.htpasswd else "LDAP")
        elif not wanted and current and current == self._sign_in_set:
            ctx.options.update(proxyauth="")
            logger.warning("Proxy sign-in is off: the policy no longer asks for it")
        self._sign_in_set = wanted

    def done(self) -> None:
        self.services.stop()

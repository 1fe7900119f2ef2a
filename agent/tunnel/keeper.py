"""Keeping the tunnel as the place calls for: one `tick` per round of the agent's `run` loop.

Each tick: refresh the gateway's config when it is an hour old, find where the device is
(agent/tunnel/location.py), want the tunnel off site (and on site when the policy says
so), write the WireGuard file and bring the tunnel up or down, load or remove the
fail-closed rules, and say what happened as a report's TunnelState. How long the tunnel
has been in its state (`since`) is kept in the state folder across restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from agent.client import write_private
from agent.report import TunnelState, TunnelUp, Where
from agent.tunnel.config import TunnelConfig
from agent.tunnel.drivers import HANDSHAKE_FRESH_SECONDS, Driver
from agent.tunnel.files import Status, TunnelFiles
from agent.tunnel.firewall import Firewall, Openings
from agent.tunnel.location import Bypass, Place
from agent.tunnel.wgconf import join_endpoint, passthrough, split_endpoint

logger = logging.getLogger(__name__)

REFRESH = timedelta(hours=1)
FIRST_HANDSHAKE_WAIT = 0.5, 12  # a tunnel just brought up: look this often, this many times
RESTART_AFTER = timedelta(minutes=5)  # down this long: restart it (the endpoint may have moved)


@dataclass
class Parts:
    """What a Keeper works with; tests give fakes for all but `files`."""

    files: TunnelFiles
    driver: Driver
    firewall: Firewall
    locate: Callable[[Bypass | None, bool], Place]  # (bypass, tunnel up) -> place
    resolve: Callable[[str], str | None]  # a name -> one address, None when it doesn't
    probe_target: Callable[[], tuple[str, int] | None]  # the gateway's device API address
    fetch: Callable[[], TunnelConfig | None] | None  # ask the gateway (None: it has no tunnels)
    clock: Callable[[], datetime]
    sleep: Callable[[float], None] = time.sleep  # waiting for a new tunnel's first handshake


class Keeper:
    def __init__(self, parts: Parts) -> None:
        self.p = parts
        self._last_restart: datetime | None = None
        self._none_until: datetime | None = None
        self._not_fetched: str | None = None  # why this round's refresh failed, if it did

    @property
    def conf_path(self) -> Path:
        return self.p.files.state_dir / f"{self.p.driver.interface}.conf"

    # -- the config --------------------------------------------------------------------

    def config(self, refresh: bool = False) -> TunnelConfig | None:
        """The saved config, fetched again when an hour old (or asked); kept if that fails.

        A gateway that offers no tunnels is asked again only after REFRESH, not every round."""
        saved = self.p.files.config()
        now = self.p.clock()
        stale = saved is None or saved[1] is None or now - saved[1] >= REFRESH
        quiet = self._none_until is not None and now < self._none_until
        if self.p.fetch is not None and (refresh or (stale and not quiet)):
            try:
                fresh = self.p.fetch()
            except Exception as exc:  # unreachable, refused, a bad answer: keep what we have
                self._not_fetched = str(exc)  # said at the round's end, unless the retry works
            else:
                self._not_fetched = None
                if fresh is None:
                    if self._none_until is None:
                        logger.info("the gateway offers no tunnels: none kept here")
                    self._none_until = now + REFRESH
                    self.p.files.forget_config()
                    return None
                self._none_until = None
                self.p.files.save_config(fresh, now)
                return fresh
        return saved[0] if saved else None

    # -- one round ---------------------------------------------------------------------

    def tick(self, force: TunnelUp | None = None, refresh: bool = False) -> TunnelState | None:
        """Bring the tunnel where it should be; None when this device has no tunnel.

        `force` ("up" or "off") is the IT provider's `tunnel up|down` by hand."""
        config = self.config(refresh)
        if config is None:
            self._stand_down()
            return None
        previous = self.p.files.status()
        present = self.p.driver.present()
        place = self.p.locate(self.p.driver.bypass(), present)
        if place.where == "unknown" and present and not self._fresh(self.p.driver.last_handshake()):
            # Can't look round a tunnel that isn't working: take it down and look directly.
            self.p.driver.down(self.conf_path)
            present = False
            place = self.p.locate(self.p.driver.bypass(), False)
        where = self._settled(place.where, previous)
        wanted = where == "off_site" or (where == "on_site" and config.on_site)
        if force is not None:
            wanted = force == "up"
        endpoint_ip, reason = None, place.reason
        why_not, started = None, False
        if wanted:
            started_before = self._last_restart
            endpoint_ip, why_not = self._up(config, where, present, previous)
            started = self._last_restart is not started_before
        else:
            if present:
                self._checked(self.p.driver.down(self.conf_path), "down")
            endpoint_ip = previous.endpoint_ip if previous else None
        # The rules first: a new endpoint (back at school, a moved address) must be let
        # through before the tunnel's first handshake is waited for.
        closed = self._fail_closed(config, where, endpoint_ip)
        state: TunnelUp = "off"
        handshake = None
        if wanted:
            handshake = self.p.driver.last_handshake()
            if why_not is None and started:
                handshake = self._first_handshake(handshake)
            state = "up" if why_not is None and self._fresh(handshake) else "down"
            if why_not:
                reason = why_not
            elif state == "down":
                reason = "no handshake with the gateway in the last 3 minutes"
        if self._not_fetched is not None:
            fetched = self._fetch_again(config, state)
            if fetched != config:  # e.g. fail closed turned on meanwhile
                config, closed = fetched, self._fail_closed(fetched, where, endpoint_ip)
        since = self._since(state, previous)
        self.p.files.save_status(Status(state, place.where, since, endpoint_ip))
        return TunnelState(
            state=state,
            where=place.where,
            since=since,
            last_handshake=handshake,
            fail_closed=closed,
            reason=reason[:500],
        )

    def _fetch_again(self, config: TunnelConfig, state: TunnelUp) -> TunnelConfig:
        """Off site the gateway is reachable only through the tunnel, so a refresh tried
        before it came up (every start at home) is tried again through it; only a second
        failure, or none possible, is worth a warning."""
        if state == "up":
            config = self.config(refresh=True) or config
        if self._not_fetched is not None:
            logger.warning("tunnel config not refreshed: %s", self._not_fetched)
            self._not_fetched = None
        return config

    def _first_handshake(self, handshake: datetime | None) -> datetime | None:
        """A tunnel just brought up greets the gateway at once (its keepalive): give that a
        few seconds, so the round reports it up rather than down until the next round."""
        every, times = FIRST_HANDSHAKE_WAIT
        for _ in range(times):
            if self._fresh(handshake):
                break
            self.p.sleep(every)
            handshake = self.p.driver.last_handshake()
        return handshake

    def _settled(self, seen: Where, previous: Status | None) -> Where:
        """Where to act as if: what was seen, else the last place known, else off site (a
        device that can't find its school is treated as away from it)."""
        if seen != "unknown":
            return seen
        if previous is not None and previous.where in ("on_site", "off_site"):
            return "on_site" if previous.where == "on_site" else "off_site"
        return "off_site"

    def _fresh(self, handshake: datetime | None) -> bool:
        if handshake is None:
            return False
        return self.p.clock() - handshake <= timedelta(seconds=HANDSHAKE_FRESH_SECONDS)

    def _since(self, state: TunnelUp, previous: Status | None) -> datetime:
        if previous is not None and previous.state == state:
            return previous.since
        return self.p.clock()

    def _up(
        self, config: TunnelConfig, where: Where, present: bool, previous: Status | None
    ) -> tuple[str | None, str | None]:
        """Write the file and bring the tunnel up; (endpoint address, why not or None)."""
        onsite = where == "on_site" and config.onsite_endpoint
        endpoint = config.onsite_endpoint if onsite and config.onsite_endpoint else config.endpoint
        host, port = split_endpoint(endpoint)
        address = self.p.resolve(host) or (previous.endpoint_ip if previous else None)
        if address is None:
            return None, f"the gateway's endpoint {host} doesn't resolve"
        key = self.p.files.private_key()
        text = self.p.driver.render(config, key, join_endpoint(address, port), config.fail_closed)
        changed = _read(self.conf_path) != text
        if changed:
            write_private(self.conf_path, text.encode())
        restart = self._needs_restart(previous)
        if present and (changed or restart):
            self._checked(self.p.driver.down(self.conf_path), "down")
            present = False
        if not present:
            self._last_restart = self.p.clock()
            done = self.p.driver.up(self.conf_path)
            if not done.ok:
                return address, f"the tunnel didn't come up: {done.stderr.strip()[-200:]}"
        return address, None

    def _needs_restart(self, previous: Status | None) -> bool:
        now = self.p.clock()
        if previous is None or previous.state != "down" or now - previous.since < RESTART_AFTER:
            return False
        return self._last_restart is None or now - self._last_restart >= RESTART_AFTER

    def _fail_closed(self, config: TunnelConfig, where: Where, endpoint_ip: str | None) -> bool:
        """Rules on off site when the policy asks; off otherwise. True when they hold."""
        if not config.fail_closed or where == "on_site":
            self._checked_text(self.p.firewall.open(), "removing the fail-closed rules")
            return False
        port = split_endpoint(config.endpoint)[1]
        openings = Openings(
            interface=self.p.driver.interface,
            endpoint=(endpoint_ip, port) if endpoint_ip else None,
            probe=self.p.probe_target(),
            passthrough=tuple(passthrough(config)),
        )
        return self._checked_text(self.p.firewall.close(openings), "failing closed")

    def _stand_down(self) -> None:
        """No tunnel offered (any more): nothing up, nothing blocked. A device that never had
        a tunnel has nothing to undo, and no commands are run for it."""
        if self.p.files.status() is None:
            return
        self.p.files.forget_status()
        if self.p.driver.present():
            self._checked(self.p.driver.down(self.conf_path), "down")
        self._checked_text(self.p.firewall.open(), "removing the fail-closed rules")

    def _checked(self, done: object, what: str) -> None:
        ok = getattr(done, "ok", True)
        if not ok:
            logger.warning("tunnel %s: %s", what, str(getattr(done, "stderr", "")).strip()[:200])

    def _checked_text(self, why_not: str | None, what: str) -> bool:
        if why_not:
            logger.error("%s: %s", what, why_not)
        return why_not is None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


__all__ = ["REFRESH", "Keeper", "Parts"]

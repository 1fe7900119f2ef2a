"""What the gateway's add-ons share, built once: the services.

The policy in force, the store, the unblock workflow and the unblocks in force, device
identities, the directory (LDAP groups), the termly checks' identity, which devices trust
the school's CA, which names an address is known by, the browser check's probes, the
per-connection state, and the background jobs. `chain.py` makes one `Services` and hands
it to the add-ons that need it; add-ons never take each other. The `Lifecycle` add-on
(first in the chain) opens it from the options and starts and stops its jobs.

Background jobs all run as `core.periodic.Periodic`s, started in `start` and stopped in
`stop`, whoever asked for them (`add_job`).
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mitmproxy import http
from mitmproxy.connection import Client

from proxy_addons.alerts.events import Event
from proxy_addons.checks.announced import WindowBook
from proxy_addons.checks.identity import CheckIdentity
from proxy_addons.checks.probes import ProbeBook
from proxy_addons.checks.schedule import CheckReminders
from proxy_addons.core.decide import Identity, resolve_profile
from proxy_addons.core.periodic import Every, Periodic
from proxy_addons.core.policy.model import Audience, Policy, Profile
from proxy_addons.core.policy.runtime import LoadedPolicy, PolicyRuntime
from proxy_addons.core.unblocks import Unblock
from proxy_addons.core.verdict import Verdict
from proxy_addons.devices.identity import REFRESH_SECONDS as IDENTITY_SECONDS
from proxy_addons.devices.identity import DeviceAt, DeviceIdentities
from proxy_addons.devices.watch import StaleSweep
from proxy_addons.gateway.alert_intake import AlertIntake
from proxy_addons.gateway.ca_trust import CaTrust
from proxy_addons.gateway.directory_groups import DirectoryGroups
from proxy_addons.gateway.known_names import KnownNames
from proxy_addons.record import metrics
from proxy_addons.record.access_sink import AccessLogSink
from proxy_addons.record.access_writer import AccessWriter
from proxy_addons.record.daily_totals import totals_job
from proxy_addons.store import Store, store_url
from proxy_addons.workflow import audit, retention, reviews
from proxy_addons.workflow.alert_escalation import EscalationSweep
from proxy_addons.workflow.policy_changes import Change
from proxy_addons.workflow.policy_outside import outside_edit_events, record_outside_edits
from proxy_addons.workflow.unblock_watch import POLL_SECONDS as UNBLOCK_SECONDS
from proxy_addons.workflow.unblock_watch import UnblockWatch
from proxy_addons.workflow.unblocks import UnblockWorkflow

logger = logging.getLogger(__name__)

VERDICT_KEY = "schoolgate"  # flow.metadata: the request's or CONNECT's Verdict


class NoPolicy(RuntimeError):
    """No policy has loaded yet: every request is blocked."""


@dataclass(slots=True)
class ConnectionState:
    """What the gateway knows of one client connection, across its hooks."""

    user: str | None = None  # who signed in at CONNECT
    connect_host: str | None = None  # the CONNECT target, canonical
    check_as: str | None = None  # a gateway check run's profile (checks/identity.py)
    tls_site: str = ""  # the site the TLS hello was decided for (ca_trust.py)
    only_http: bool | None = None  # not allowed whole: only HTTP may pass (each request decided)
    connect: Verdict | None = None  # the CONNECT's verdict (explicit proxy)
    verdict: Verdict | None = None  # the connection-level verdict (TLS, raw TCP, tunnel)
    steer_to: str | None = None  # safe search: connect here instead (host-only engines)
    looked_at: Verdict | None = None  # the verdict the check marker last looked at


class Services:
    """The gateway's shared services; see the module docstring."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self.runtime: PolicyRuntime | None = None
        self.store: Store | None = None
        self.workflow: UnblockWorkflow | None = None
        self.unblock_watch: UnblockWatch | None = None
        self.device_identities: DeviceIdentities | None = None
        self.check_identity = CheckIdentity()  # termly checks run from the gateway itself
        self.ca_trust = CaTrust()  # devices that refuse the school's CA, per site
        self.known_names = KnownNames()  # transparent mode: which names an address has
        self.probes = ProbeBook()  # the browser check page's armed probes
        self.windows = WindowBook(lambda: self.store)  # agents' announced check runs
        # Set by the add-ons that own them: the access log's writer, the way to raise an alert.
        self.access_writer: AccessWriter | None = None
        self.raise_alert: Callable[[Event], bool] = _not_raised
        # Set by the recorder: hands on a verdict reached after the request's (the content
        # filter's, while the page's body streams), as it is reached.
        self.record_late: Callable[[http.HTTPFlow, Verdict], None] = _not_recorded
        # Two of the recorder's sinks (recorder.py), fed by the add-ons above.
        self.access_log = AccessLogSink(lambda: self.access_writer, self.device_at)
        self.alert_intake = AlertIntake(
            lambda: self.policy, lambda event: self.raise_alert(event), self.device_at
        )
        # Told after every policy reload that took (and the audit record), or that failed.
        self.on_reload: list[Callable[[LoadedPolicy], None]] = []
        self.on_reload_error: list[Callable[[str], None]] = []
        self._directory: tuple[str, DirectoryGroups] | None = None  # (ldap spec, lookups)
        self._connections: weakref.WeakKeyDictionary[Client, ConnectionState] = (
            weakref.WeakKeyDictionary()
        )
        self._own_jobs: list[Periodic] = []  # made by `open`, for the store it opened
        self._jobs: list[Periodic] = []  # asked for by add-ons, for as long as they run
        self._started = False

    # -- the policy in force -------------------------------------------------------------

    @property
    def loaded(self) -> LoadedPolicy | None:
        """The policy in force and its index, or None before one has loaded."""
        runtime = self.runtime
        return runtime.current if runtime is not None else None

    @property
    def policy(self) -> Policy | None:
        loaded = self.loaded
        return loaded.policy if loaded is not None else None

    def require(self) -> LoadedPolicy:
        """The policy in force; NoPolicy (every request blocked) if there is none yet."""
        loaded = self.loaded
        if loaded is None:
            raise NoPolicy("no policy is in force")
        return loaded

    def require_policy(self) -> Policy:
        return self.require().policy

    def profile(self, name: object) -> Profile | None:
        policy = self.policy
        return policy.profiles.get(str(name)) if policy is not None else None

    def unblocks(self) -> tuple[Unblock, ...]:
        return self.unblock_watch.current if self.unblock_watch is not None else ()

    # -- opening, starting, stopping -----------------------------------------------------

    def open(self, policy_file: Path, var: Path, dsn: str) -> LoadedPolicy:
        """Load the policy and open the store (raising if either fails, keeping what was
        there), then build what depends on them in place of what did."""
        runtime = PolicyRuntime(policy_file, var, count_index_damage=metrics.list_index_damaged)
        runtime.start()
        store = Store.open(store_url(var, dsn))
        if self.runtime is not None:
            self.runtime.stop_watching()
        for job in self._own_jobs:
            job.stop()
        self.runtime, self.store = runtime, store
        self.workflow = UnblockWorkflow(store, self.require_policy)
        runtime.on_reload, runtime.on_error = self._reloaded, self._reload_failed
        if runtime.current is not None:  # edits made while the gateway was down
            self._outside_edits(runtime.current.policy)
        self.unblock_watch = UnblockWatch(self.workflow)
        self.unblock_watch.refresh()  # also records expiries missed while the gateway was down
        self.device_identities = DeviceIdentities(store, self.require_policy)
        self.device_identities.refresh()
        self.check_identity.configure(var)
        self._own_jobs = [
            Every(
                "unblock-watch",
                UNBLOCK_SECONDS,
                self.unblock_watch.refresh,  # keep the last list; windows still end on time
                "Could not read unblocks from the store",
            ),
            Every(
                "device-identities",
                IDENTITY_SECONDS,
                self.device_identities.refresh,  # keep the last map; it only ever names users
                "Could not read device reports from the store",
            ),
            StaleSweep(store, self.require_policy),  # alerts on silent devices
            CheckReminders(store, self.require_policy),  # a term's filtering check is due
            Every(
                "check-windows",
                self.windows.refresh_seconds,
                self.windows.refresh,
                "Check windows not read",
                at_start=True,
            ),
            totals_job(store, self.require_policy, self.clock),  # each day, for years
            reviews.reminder_job(store, self.require_policy, self.clock),  # the annual review
            # Serious alerts nobody acknowledged go to the deputies, then the headteacher.
            EscalationSweep(lambda: store, lambda: self.policy, self.clock),
            Every(
                "retention-purge",
                retention.DAY_SECONDS,
                lambda: retention.purge(store, self.require_policy(), self.clock()),
                "Retention purge failed",  # each table's own failure is logged and counted
                at_start=True,
            ),
        ]
        if self._started:
            runtime.watch()
            for job in self._own_jobs:
                job.start()
        loaded = self.require()
        logger.info(
            "Schoolgate policy for %s in force: %d profiles, %d list entries.",
            loaded.policy.school,
            len(loaded.policy.profiles),
            loaded.index.entry_count,
        )
        return loaded

    def add_job(self, job: Periodic) -> None:
        """Run `job` while the gateway runs (started now if it is running already)."""
        self._jobs.append(job)
        if self._started:
            job.start()

    def start(self) -> None:
        """The gateway is running: watch the policy files and start every job."""
        self._started = True
        if self.runtime is not None:
            self.runtime.watch()
        for job in self._own_jobs + self._jobs:
            job.start()

    def stop(self) -> None:
        self._started = False
        if self.runtime is not None:
            self.runtime.stop_watching()
        for job in self._own_jobs + self._jobs:
            job.stop()

    # -- policy changes ------------------------------------------------------------------

    def _reloaded(self, loaded: LoadedPolicy) -> None:
        """Every policy change goes into the audit trail, with the files' fingerprints;
        the workflow reads the new policy's channels itself."""
        try:
            if self.store is not None and self.workflow is not None:
                detail = {str(p): _sha256(p) for p in loaded.policy.files if p.is_file()}
                with self.store.begin() as conn:
                    audit.append(
                        conn,
                        actor="schoolgate",
                        action="policy.changed",
                        subject=loaded.policy.school[:200],
                        detail=detail,
                    )
                self._outside_edits(loaded.policy)
        finally:
            _tell_all(self.on_reload, loaded)

    def _outside_edits(self, policy: Policy) -> None:
        """An edit no approved change explains is recorded, and the DSL and IT told."""
        if self.store is None or self.runtime is None:
            return

        def tell(change: Change) -> None:
            for event in outside_edit_events(change, policy):
                self.raise_alert(event)

        try:
            record_outside_edits(self.store, policy, self.runtime.var_dir, tell)
        except Exception:
            logger.exception("Comparing the policy files with the last applied ones failed")

    def _reload_failed(self, message: str) -> None:
        _tell_all(self.on_reload_error, message)

    # -- who is asking -------------------------------------------------------------------

    def identity(self, user: str | None, ip: str | None, check_as: str | None = None) -> Identity:
        """Proxy sign-in first; otherwise the user a fresh device report puts at this IP,
        unless the directory puts that user in a staff profile (devices/identity.py may_name)."""
        if user or self.device_identities is None:
            return Identity(user, self.groups_of(user), ip, check_as)
        reported = self.device_identities.user_at(ip)
        groups = self.groups_of(reported)
        if reported and groups:
            profile, via = resolve_profile(self.require_policy(), Identity(reported, groups))
            if via == "group" and profile.audience is Audience.STAFF:
                reported, groups = None, ()  # a device's word never makes staff
        return Identity(reported, groups, ip, check_as)

    def groups_of(self, user: str | None) -> tuple[str, ...]:
        """A signed-in user's directory groups, for `identities.groups` (LDAP sign-in only).

        The lookup is set up on first use after a policy load, and again when the policy's
        `authentication.ldap` changes; its per-user cache keeps LDAP off most requests.
        """
        policy = self.policy
        spec = policy.authentication.ldap if policy is not None else None
        if not user or not spec:
            return ()
        if self._directory is None or self._directory[0] != spec:
            if self._directory is not None:
                self._directory[1].close()
            self._directory = (spec, DirectoryGroups(spec))
        return self._directory[1].groups_of(user)

    def device_at(self, ip: str | None) -> DeviceAt | None:
        """The enrolled device a fresh agent report puts at `ip`, for the access log."""
        identities = self.device_identities
        return identities.device_at(ip) if identities is not None else None

    def profile_for(self, user: str | None, ip: str | None) -> str:
        """The profile a user or device is in (for the portal's pages)."""
        return resolve_profile(self.require_policy(), self.identity(user, ip))[0].name

    # -- per connection ------------------------------------------------------------------

    def connection(self, client: Client) -> ConnectionState:
        """The state of `client`'s connection, made on first use; gone with the connection."""
        state = self._connections.get(client)
        if state is None:
            state = self._connections[client] = ConnectionState()
        return state

    def peek(self, client: Client) -> ConnectionState | None:
        """The state of `client`'s connection if any hook has made it."""
        return self._connections.get(client)


def _not_raised(event: Event) -> bool:
    logger.error("Alert %s not raised: no alerting add-on", event.kind)
    return False


def _not_recorded(flow: http.HTTPFlow, verdict: Verdict) -> None:
    logger.error("A %s verdict on %s not recorded: no recorder", verdict.stage, verdict.host)


def _tell_all[T](listeners: list[Callable[[T], None]], value: T) -> None:
    for listener in listeners:
        try:
            listener(value)
        except Exception:
            logger.exception("A policy reload listener failed")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verdict_of(flow: http.HTTPFlow) -> Verdict | None:
    """The verdict on this request or CONNECT (the Filter's, as later add-ons changed it)."""
    found = flow.metadata.get(VERDICT_KEY)
    return found if isinstance(found, Verdict) else None


def client_ip(client: Client) -> str | None:
    peer = client.peername
    return str(peer[0]) if peer else None

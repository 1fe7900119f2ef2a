"""The validated policy: typed, immutable, trusted by everything inside the gateway.

Built only by `load_policy` (core/policy/load.py), which checks every field at the edge.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.checks.thresholds import Thresholds
from proxy_addons.core.lists.layout import CategorySources
from proxy_addons.core.policy.change_rules import ChangeRules
from proxy_addons.core.policy.illegal_feed import IllegalFeed
from proxy_addons.core.policy.yaml_reader import Where
from proxy_addons.core.url_keys import illegal_key


class Action(enum.Enum):
    ALLOW = "allow"
    BLOCK = "block"


class Audience(enum.Enum):
    """Who a profile is for; sets safe defaults (learners: bare IPs blocked)."""

    LEARNER = "learner"
    STAFF = "staff"
    GUEST = "guest"


class Decrypt(enum.Enum):
    DECRYPT = "decrypt"
    HOST_ONLY = "host_only"


class SafeSearch(enum.Enum):
    """How hard search engines are held to their safe modes (docs/policy.md, safe_search)."""

    STRICT = "strict"
    MODERATE = "moderate"
    OFF = "off"


class UntrustedClients(enum.Enum):
    """What to do for devices that don't trust the school's CA."""

    HOST_ONLY = "host_only"  # decide by host name, pass allowed traffic through
    REFUSE = "refuse"  # refuse what would need decrypting


@dataclass(frozen=True)
class Term:
    name: str
    start: date
    end: date  # inclusive


@dataclass(frozen=True)
class Closure:
    """Days inside a term the school is shut (half term, INSET days)."""

    name: str
    start: date
    end: date  # inclusive


@dataclass(frozen=True)
class TimeRange:
    start: time
    end: time  # exclusive; 24:00 is written as time.max


@dataclass(frozen=True)
class Schedule:
    name: str
    days: frozenset[int]  # 0 = Monday
    times: tuple[TimeRange, ...]  # empty = all day
    term: str  # "school_days" | "holidays" | "any"
    where: Where


@dataclass(frozen=True)
class Rule:
    action: Action
    profile: str  # the profile that wrote it (may be a parent of the one in force)
    index: int  # position within that profile's rules, 1-based
    where: Where
    name: str | None = None
    categories: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()  # canonical host names (and IP literals)
    urls: tuple[str, ...] = ()  # canonical host/path prefixes
    bare_ip: bool = False
    when: tuple[str, ...] = ()  # schedule names; empty = always

    @property
    def label(self) -> str:
        title = f" '{self.name}'" if self.name else ""
        return f"{self.profile} rule {self.index}{title} ({self.where})"


@dataclass(frozen=True)
class ContentFilter:
    """A profile's real-time content filtering (docs/content-filtering.md).

    A page is blocked when one of `categories` (empty: every weighted-list category) scores
    more than `threshold` (None: pages are not scored), or, on a site in one of the `scan`
    site categories (e.g. generative_ai), more than that category's own threshold.
    """

    threshold: int | None = None
    categories: frozenset[str] = frozenset()
    scan: tuple[tuple[str, int], ...] = ()  # (site category, threshold), always scanned


@dataclass(frozen=True)
class Profile:
    name: str
    label: str
    audience: Audience
    rules: tuple[Rule, ...]  # own rules first, then inherited ones
    default: Action
    bare_ip: Action
    may_request_unblock: bool
    extends: str | None
    where: Where
    # Safe search on Google, Bing, DuckDuckGo and YouTube (proxy_addons/core/safe_search.py).
    safe_search: SafeSearch = SafeSearch.STRICT
    # Ways round the filter this profile may use (circumvention.KINDS); never for learners.
    allow_circumvention: frozenset[str] = frozenset()
    # Real-time content filtering of decrypted pages (gateway/addons/content_filter.py).
    content_filter: ContentFilter = field(default_factory=ContentFilter)


@dataclass(frozen=True)
class Category:
    name: str
    label: str  # shown on the block page
    sources: CategorySources
    where: Where


@dataclass(frozen=True)
class IllegalTier:
    """Provider-supplied IWF/CTIRU-style lists that nothing can override."""

    exact: dict[str, str]  # canonical host/path?query entry -> its list file
    prefixes: tuple[tuple[str, str], ...]  # (canonical host/path prefix, its list file)
    hosts: frozenset[str]  # every host named by an entry: these must be decrypted
    sources: tuple[Path, ...]
    # Hashed entries (core/illegal_hashes.py) from hashed feeds: SHA-256 hex -> its list file.
    hashed: dict[str, str] = field(default_factory=dict)
    feeds: tuple[IllegalFeed, ...] = ()  # illegal.feeds: fetched by `schoolgate lists update`
    feed_digests: dict[str, str] = field(default_factory=dict)  # feed name -> SHA-256 loaded
    # What requests are matched against (decision._illegal_hit): each entry's case-folded
    # match key (url_keys.match_key). exact_keys: key -> entry. prefix_keys: (key, entry,
    # list file, whether it ends at a path boundary: a folder entry "a/b/" covers a/b,
    # a/b/... and a/b?..., a plain prefix "a/b" covers every key that starts with a/b).
    exact_keys: dict[str, str] = field(init=False, repr=False, compare=False)
    prefix_keys: tuple[tuple[str, str, str, bool], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        exact = {illegal_key(e): e for e in self.exact}
        prefixes = tuple(
            (illegal_key(p), p, source, p.endswith("/")) for p, source in self.prefixes
        )
        object.__setattr__(self, "exact_keys", exact)
        object.__setattr__(self, "prefix_keys", prefixes)


@dataclass(frozen=True)
class Decryption:
    default: Decrypt
    host_only_categories: frozenset[str]
    host_only_domains: frozenset[str]
    untrusted_clients: UntrustedClients
    where: Where


@dataclass(frozen=True)
class Identities:
    users: dict[str, str]  # user name (lower case) -> profile
    groups: tuple[tuple[str, str], ...]  # directory group (lower case) -> profile, in order
    networks: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]
    default_profile: str


@dataclass(frozen=True)
class Authentication:
    htpasswd: Path | None
    ldap: str | None  # mitmproxy proxyauth "ldap[s]:..." spec
    # The admin app's accounts holding these roles must sign in with a second factor (TOTP).
    require_2fa_for: frozenset[str] = frozenset()


@dataclass(frozen=True)
class UnblockRules:
    """Who may decide temporary unblocks, for how long, and who is told."""

    deciders: frozenset[str]  # DSL and deputies (user names, lower case)
    it_provider: frozenset[str]  # told of every decision; confirms where required
    require_it_confirmation: bool
    max_days: int
    lessons: tuple[TimeRange, ...]  # the default window is the rest of the current lesson
    web_url: str  # the admin web app, linked from notifications


@dataclass(frozen=True)
class EmailChannel:
    host: str
    port: int
    starttls: bool
    username: str | None
    password_file: Path | None
    sender: str


@dataclass(frozen=True)
class WebhookChannel:
    url: str
    secret_file: Path
    # Which alerts it gets: "safeguarding", "technical" or "all" (a webhook at the IT
    # provider's must not receive pupils' search text: say "technical").
    audience: str = "all"


@dataclass(frozen=True)
class SyslogChannel:
    host: str
    port: int
    protocol: str  # udp | tcp (octet-counted)


@dataclass(frozen=True)
class Notifications:
    email: EmailChannel | None
    webhook: WebhookChannel | None
    contacts: dict[str, str]  # user name -> email address
    # Chat incoming-webhook URLs are credentials, so the policy names files holding them.
    teams_url_file: Path | None = None
    slack_url_file: Path | None = None
    syslog: SyslogChannel | None = None  # technical alerts for a SIEM


@dataclass(frozen=True)
class Monitoring:
    """What is logged and watched, and for how long it is kept."""

    retention_days: int  # access log records older than this are purged
    scan_page_text: frozenset[str]  # profiles whose decrypted pages are matched for risk
    phrase_libraries: tuple[Path, ...]  # YAML phrase libraries (risk detection)
    high_risk_categories: frozenset[str]  # a block in one of these raises an alert
    repeat_count: int  # this many blocks by one user ...
    repeat_minutes: int  # ... within this many minutes is an alert of its own
    fold_minutes: int  # repeats of one alert within this window fold into one, with a count
    safeguarding: frozenset[str]  # who gets safeguarding alerts (DSL and deputies)
    technical: frozenset[str]  # who gets technical alerts (the IT provider)
    # Issue 16: who an unacknowledged alert escalates to, and where concerns about staff go.
    deputies: frozenset[str] = frozenset()  # first escalation (deputy DSLs)
    headteacher: frozenset[str] = frozenset()  # second escalation; concerns about staff
    chair_of_governors: frozenset[str] = frozenset()  # concerns about the headteacher
    staff_profiles: frozenset[str] = frozenset()  # whose users are staff (default: audience staff)
    escalate_after_minutes: int = 15  # severity 4-5 safeguarding alerts nobody acknowledged
    school_hours: tuple[TimeRange, ...] = ()  # on school days; escalation clocks run in these
    review_every_months: int = 12  # the annual filtering and monitoring review
    # Block pages for these categories point to help instead of "is this a mistake?".
    sensitive_categories: frozenset[str] = frozenset()
    trusted_adults: tuple[str, ...] = ()  # named on those pages ("Mrs Patel, library office")


@dataclass(frozen=True)
class Retention:
    """How long each table holding personal data is kept, in days (`retention:`); the access
    log's own is `monitoring.retention_days`. Purged by the gateway's daily job."""

    alerts_days: int = 1095
    incidents_days: int = 2555
    reports_days: int = 365
    unblocks_days: int = 730
    check_records_days: int = 2190
    seen_devices_days: int = 90
    web_sessions_days: int = 30
    device_reports_days: int = 400  # a school year and a term: a device's history
    daily_totals_days: int = 3650  # no personal data: kept for the governors' trends


@dataclass(frozen=True)
class Tunnel:
    """Per-device WireGuard tunnels (`devices.tunnel:`, docs/offsite.md): school devices
    reach the gateway through a tunnel whose address WireGuard binds to the device's key."""

    pool: ipaddress.IPv4Network  # tunnel addresses; the first is the gateway's own
    endpoint: str  # host:port the devices reach the gateway at from outside the school
    interface: str = "schoolgate-wg"
    listen_port: int = 51820
    # Where devices reach it on the school network (tunnel on site too); None: `endpoint`.
    onsite_endpoint: str | None = None
    on_site: bool = False  # enrolled devices use their tunnel on site too: identity by key
    fail_closed: bool = False  # off site with the tunnel down, the device's web is blocked
    down_alert_minutes: int = 60  # a device off site this long without it: technical alert
    dns: tuple[str, ...] = ()  # resolvers devices use through the tunnel (default: school's)
    # Destinations left out of the tunnel (video-call media, say): reached directly.
    passthrough: tuple[ipaddress.IPv4Network, ...] = ()
    key_file: Path | None = None  # the gateway's private key; None: <var>/wireguard/gateway.key

    @property
    def gateway_address(self) -> ipaddress.IPv4Address:
        """The gateway's own address inside the tunnels (the pool's first)."""
        return self.pool.network_address + 1


@dataclass(frozen=True)
class Devices:
    """Enrolled school devices: how they join, and when a silent one stops counting."""

    enrolment_secret_file: Path | None = None  # a secret: named by file, read when used
    stale_days: int = 7  # no report for this many days is itself non-compliant
    identity_minutes: int = 30  # a report's user and addresses are believed this long
    eol_file: Path | None = None  # the OS end-of-life table (policies/os-eol.yaml), if any
    # The school's DNS resolvers; DNS elsewhere is circumvention (empty: not judged)
    school_resolvers: frozenset[str] = frozenset()
    # Reverse proxies the device API is reached through: their X-Forwarded-For is believed.
    trusted_relays: tuple[IPNetwork, ...] = ()
    tunnel: Tunnel | None = None  # per-device WireGuard tunnels; None: not offered
    thresholds: Thresholds = field(default_factory=Thresholds)  # what devices are judged by
    usb_storage_allowed: frozenset[str] = frozenset()  # ids, hostnames, asset tags (casefolded)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Until a school names its own networks: private addresses, never the internet
# (the gateway's own loopback is always served).
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10")
)


@dataclass(frozen=True)
class Network:
    """Who the gateway serves (`network:`): it is never an open proxy (docs/network.md)."""

    client_networks: tuple[IPNetwork, ...] = PRIVATE_NETWORKS  # may use the proxy
    management_networks: tuple[IPNetwork, ...] = PRIVATE_NETWORKS  # may use the admin app
    # Staff's own networks: the admin app answers them too, so the DSL approves from her
    # laptop; what each person sees there is still their account's role (workflow/roles.py).
    staff_networks: tuple[IPNetwork, ...] = ()

    @property
    def admin_networks(self) -> tuple[IPNetwork, ...]:
        """Where the admin app's pages answer: the management and the staff networks."""
        return (*self.management_networks, *self.staff_networks)


@dataclass(frozen=True)
class Checks:
    """Termly effectiveness checks (`checks:`, docs/checks.md): the suite and its reminders."""

    suite: Path | None = None  # the test suite (policies/checks/termly.yaml)
    remind: frozenset[str] = frozenset()  # user names reminded when a term's check is due
    due_after_days: int = 14  # a term's check is due this many days after the term starts
    profiles: frozenset[str] = frozenset()  # profiles each term's check must cover; empty: all


@dataclass(frozen=True)
class Policy:
    path: Path
    school: str
    timezone: ZoneInfo
    portal_host: str
    terms: tuple[Term, ...]
    closures: tuple[Closure, ...]
    schedules: dict[str, Schedule]
    categories: dict[str, Category]
    illegal: IllegalTier
    profiles: dict[str, Profile]
    identities: Identities
    authentication: Authentication
    decryption: Decryption
    unblocks: UnblockRules
    notifications: Notifications
    monitoring: Monitoring
    devices: Devices = field(default_factory=Devices)
    # content_filter.lists: the weighted phrase lists pages are scored with
    content_lists: tuple[Path, ...] = ()
    network: Network = field(default_factory=Network)  # client/management networks
    checks: Checks = field(default_factory=Checks)  # termly effectiveness checks
    retention: Retention = field(default_factory=Retention)  # personal data, by table
    changes: ChangeRules = field(default_factory=ChangeRules)  # who approves filtering changes
    # school.proxy_address, "host:port" that devices use (PAC/WPAD); None: the address asked
    proxy_address: str | None = None
    files: tuple[Path, ...] = field(default=())  # every file the policy was built from
    # Per-policy memo for the decision path (network -> profile, schedules this minute).
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

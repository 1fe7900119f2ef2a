"""A signed-in user's directory groups, so `identities.groups` can place them in a profile.

mitmproxy's proxyauth checks an LDAP user's password but says nothing about their
groups. This looks them up with the same `authentication.ldap` spec (and service
account), caches them per user, and on any directory trouble answers "no groups":
the user then falls to the network or default profile, never to more access.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn
from mitmproxy import exceptions
from mitmproxy.addons.proxyauth import Ldap

logger = logging.getLogger(__name__)

_RDN_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2}|.)", re.DOTALL)


class DirectoryGroups:
    """Group CNs and DNs (lower case) of proxy sign-in users, from LDAP or Active Directory.

    Groups come from the user's `memberOf` (Active Directory; OpenLDAP's memberof
    overlay) or, when that is empty, from groups naming the user in `member`,
    `uniqueMember` or `memberUid`. Nested groups are not expanded.
    """

    def __init__(
        self,
        spec: str,
        *,
        ttl: float = 300.0,
        failure_ttl: float = 15.0,
        max_users: int = 10_000,
        timeout: int = 5,
        group_base: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            use_ssl, host, port, bind_dn, password, subtree, key = Ldap.parse_spec(spec)
        except exceptions.OptionsError:
            # mitmproxy's message repeats the spec, password and all.
            raise ValueError("authentication.ldap is not a valid proxyauth LDAP spec") from None
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.max_users = max_users
        self._host, self._port, self._use_ssl = host, port, use_ssl
        self._bind_dn = bind_dn
        self._password = password
        self._timeout = timeout
        self._user_base = subtree
        self._user_key = key
        # The spec's subtree is usually the people OU; groups live beside it.
        self._group_base = group_base or _naming_context(subtree)
        self._conn: ldap3.Connection | None = None
        self._conn_lock = threading.Lock()  # ldap3's SYNC connections aren't thread-safe
        self._cache: OrderedDict[str, tuple[float, tuple[str, ...]]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._clock = clock

    def __repr__(self) -> str:  # never show the password
        return f"DirectoryGroups({self._host}:{self._port}, {self._user_base!r})"

    def groups_of(self, username: str) -> tuple[str, ...]:
        """The user's groups, each as its CN and its DN, lower case; () if none or unknown."""
        if not username:
            return ()
        cached = self._cached(username)
        if cached is not None:
            return cached
        with self._conn_lock:
            cached = self._cached(username)  # another thread may have just looked
            if cached is not None:
                return cached
            try:
                groups, ttl = self._lookup(username), self.ttl
            except (LDAPException, OSError) as exc:
                logger.warning(
                    "No directory groups for %r: LDAP %s failed (%s: %s); "
                    "they get their network or default profile for now.",
                    username,
                    self._host,
                    type(exc).__name__,
                    exc,
                )
                self._drop_connection()
                groups, ttl = (), self.failure_ttl
        self._remember(username, groups, ttl)
        return groups

    def close(self) -> None:
        with self._conn_lock:
            self._drop_connection()

    # -- helpers -------------------------------------------------------------

    def _lookup(self, username: str) -> tuple[str, ...]:
        """One attempt; a connection that went stale since last use gets one fresh retry."""
        reused = self._conn is not None
        try:
            return self._search_groups(self._connection(), username)
        except LDAPException:
            if not reused:
                raise
            self._drop_connection()
            return self._search_groups(self._connection(), username)

    def _search_groups(self, conn: ldap3.Connection, username: str) -> tuple[str, ...]:
        users = _entries(
            conn,
            self._user_base,
            f"({self._user_key}={escape_filter_chars(username)})",
            ["memberOf"],
        )
        if not users:
            return ()
        user = users[0]  # the entry mitmproxy's proxyauth checked the password against
        dns = _values(user, "memberOf")
        if not dns:
            member = escape_filter_chars(user["dn"])
            uid = escape_filter_chars(username)
            search = f"(|(member={member})(uniqueMember={member})(memberUid={uid}))"
            dns = [e["dn"] for e in _entries(conn, self._group_base, search, ldap3.NO_ATTRIBUTES)]
        return _names(dns)

    def _connection(self) -> ldap3.Connection:
        if self._conn is None:
            # A new Server too: ldap3 marks a failed address unusable for a while.
            server = ldap3.Server(
                self._host,
                port=self._port,
                use_ssl=self._use_ssl,
                get_info=ldap3.NONE,
                connect_timeout=self._timeout,
            )
            self._conn = ldap3.Connection(
                server,
                self._bind_dn,
                self._password,
                auto_bind=ldap3.AUTO_BIND_NO_TLS,
                receive_timeout=self._timeout,
                raise_exceptions=True,
                auto_referrals=False,
                read_only=True,
            )
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.unbind()
            except LDAPException:
                pass

    def _cached(self, username: str) -> tuple[str, ...] | None:
        with self._cache_lock:
            hit = self._cache.get(username)
            if hit is None:
                return None
            if hit[0] <= self._clock():
                del self._cache[username]
                return None
            self._cache.move_to_end(username)
            return hit[1]

    def _remember(self, username: str, groups: tuple[str, ...], ttl: float) -> None:
        with self._cache_lock:
            self._cache[username] = (self._clock() + ttl, groups)
            self._cache.move_to_end(username)
            while len(self._cache) > self.max_users:
                self._cache.popitem(last=False)


def _entries(
    conn: ldap3.Connection, base: str, search_filter: str, attributes: Any
) -> list[dict[str, Any]]:
    conn.search(base, search_filter, ldap3.SUBTREE, attributes=attributes)
    return [r for r in conn.response or [] if r.get("type") == "searchResEntry"]


def _values(entry: dict[str, Any], attribute: str) -> list[str]:
    """An attribute's values as text, whatever case the server spelled its name in."""
    for name, values in (entry.get("raw_attributes") or {}).items():
        if name.lower() == attribute.lower():
            return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
    return []


def _names(dns: Iterable[str]) -> tuple[str, ...]:
    """Each group's DN (normalised: no spaces around separators) and CN, lower case."""
    names: set[str] = set()
    for dn in dns:
        try:
            rdns = parse_dn(dn, strip=True)
        except LDAPException:
            logger.warning("Ignoring a group with an unreadable DN: %r", dn)
            continue
        if not rdns:
            continue
        names.add("".join(f"{attr}={value}{sep}" for attr, value, sep in rdns).lower())
        attr, value, _ = rdns[0]
        if attr.lower() == "cn":
            names.add(_unescape(value).lower())
    return tuple(sorted(names))


def _unescape(value: str) -> str:
    r"""An RDN value as written in the directory: `Smith\, John` -> `Smith, John`."""
    out = bytearray()
    pos = 0
    for m in _RDN_ESCAPE.finditer(value):
        out += value[pos : m.start()].encode()
        esc = m.group(1)
        out += bytes.fromhex(esc) if len(esc) == 2 else esc.encode()
        pos = m.end()
    out += value[pos:].encode()
    return out.decode("utf-8", "replace")


def _naming_context(subtree: str) -> str:
    """The directory's root (the trailing dc= parts) under which groups are searched."""
    try:
        rdns = parse_dn(subtree, strip=True)
    except LDAPException:
        return subtree
    tail: list[str] = []
    for attr, value, _ in reversed(rdns):
        if attr.lower() != "dc":
            break
        tail.insert(0, f"{attr}={value}")
    return ",".join(tail) or subtree

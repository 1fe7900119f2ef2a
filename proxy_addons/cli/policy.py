"""`schoolgate policy check` (does the policy load, with its lists) and `policy explain`
(the decision for one URL and why, as the gateway would make it)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from proxy_addons.alerts import who_is_told
from proxy_addons.cli.common import fail as _fail
from proxy_addons.cli.common import school_time
from proxy_addons.core.decide import Identity, decide, resolve_profile
from proxy_addons.core.hosts import HostError, canonical_host, canonical_url, valid_authority
from proxy_addons.core.lists.sources import ListSourceError, iter_domains, iter_urls
from proxy_addons.core.names import Names, decide_names
from proxy_addons.core.pipeline import Asked, settle
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import SafeSearch
from proxy_addons.core.policy.runtime import PolicyLoadError
from proxy_addons.core.policy.standalone import load_all
from proxy_addons.core.typed_time import TimeTypedError
from proxy_addons.core.unblocks import Unblock
from proxy_addons.core.verdict import Verdict
from proxy_addons.store import DB_FILE, Store, store_url
from proxy_addons.workflow.unblock_records import in_force


def cmd_policy_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(Path(args.file))
    except PolicyError as exc:
        return _fail(str(exc))
    total = 0
    for category in policy.categories.values():
        count = 0
        try:
            for source in category.sources.sources:
                if source.kind in ("ut1", "domains", "hosts"):
                    count += sum(1 for _ in iter_domains(source))
                if source.kind in ("ut1", "urls"):
                    count += sum(1 for _ in iter_urls(source))
        except ListSourceError as exc:
            return _fail(f"{exc}")
        total += count
        print(f"  category {category.name:<20} {count:>9} entries  ({category.label})")
    for line in who_is_told.summary(policy):
        print(f"  {line}")
    for line in who_is_told.warnings(policy):
        print(f"  warning: {line}")
    tier = policy.illegal
    print(f"  illegal tier: {len(tier.exact)} exact, {len(tier.prefixes)} prefix entries")
    tunnel = policy.devices.tunnel
    if tunnel is not None:
        room = tunnel.pool.num_addresses - 3  # the network, the gateway, the broadcast
        closed = "fail closed" if tunnel.fail_closed else "fail open"
        print(
            f"  off-site tunnels: {tunnel.endpoint} (UDP, forward it on the router), pool "
            f"{tunnel.pool} for {room} devices, {closed} off site"
            f"{', on site too' if tunnel.on_site else ''} (docs/offsite.md)"
        )
        if not tunnel.dns and not policy.devices.school_resolvers:
            print(
                "  warning: devices.tunnel has no dns and devices.school_resolvers is empty: "
                "tunnelled devices' DNS reaches no resolver (the firewall allows only the "
                "school's); set one of them"
            )
    print(
        f"{policy.path}: OK: {len(policy.profiles)} profiles, {len(policy.categories)} "
        f"categories, {total} list entries, default profile '{policy.identities.default_profile}'"
    )
    return 0


def cmd_policy_explain(args: argparse.Namespace) -> int:
    try:
        loaded = load_all(Path(args.policy), Path(args.var) / "index")
    except PolicyLoadError as exc:
        return _fail(str(exc))
    try:
        when = school_time(args.at, loaded.policy, "--at") or datetime.now(UTC)
    except TimeTypedError as exc:
        return _fail(str(exc))
    unblocks_now, unblocks_said = _unblocks_in_force(args, when)
    target = args.url if "://" in args.url else f"https://{args.url}"
    try:
        url = canonical_url(target)
    except HostError as exc:
        return _fail(str(exc))
    path = url.path + (f"?{url.query}" if url.query else "")
    identity = Identity(args.user, tuple(args.group or ()), args.ip)
    request_path = None if args.host_only else path
    try:  # the other names a request may carry: decided too, as the gateway does
        claimed = [valid_authority(args.host_header)[0]] if args.host_header else []
        claimed += [canonical_host(args.sni)] if args.sni else []
    except HostError as exc:
        return _fail(f"the gateway would refuse this request (400): {exc}")
    decision = decide_names(
        lambda request: decide(loaded.policy, loaded.index, identity, request, when, unblocks_now),
        Names(url.host, tuple(claimed)),
        request_path,
        url.scheme,
    )
    # The gateway's one pipeline: circumvention and safe search after decide().
    asked = Asked(request_path, host_only=request_path is None)
    stage = "tls" if request_path is None else "request"
    verdict = settle(decision, loaded.policy.profiles, stage, asked, lambda: "")
    profile, _ = resolve_profile(loaded.policy, identity)
    enforced = _enforced(verdict, profile.safe_search)
    print(f"at:        {when.isoformat()}")
    print(f"unblocks:  {unblocks_said}")
    print(verdict.decision.explain())
    if enforced:
        print(f"enforced:  {enforced}")
    return 0 if not verdict.blocked else 3


def _unblocks_in_force(args: argparse.Namespace, when: datetime) -> tuple[list[Unblock], str]:
    """The approved unblocks the gateway applies at `when`, from the store it shares (as
    the gateway reads them), and a line saying where they came from."""
    if getattr(args, "without_unblocks", False):
        return [], "left out (--without-unblocks)"
    dsn = getattr(args, "dsn", None)
    database = Path(args.var) / DB_FILE
    if not dsn and not database.is_file():
        return [], f"none read: no store at {database} (give --var or --dsn)"
    store = Store.open(store_url(Path(args.var), dsn))
    try:
        found = in_force(store, when)
    finally:
        store.dispose()
    if not found:
        return [], "none in force"
    return found, f"{len(found)} in force ({', '.join(u.id for u in found)})"


def _enforced(verdict: Verdict, mode: SafeSearch) -> str | None:
    """What safe search does, in words: a rewrite, a steered connection, or a block."""
    if verdict.steer_to is not None:
        return f"safe search {mode.value}: connected to {verdict.steer_to}"
    change = verdict.rewrite
    if change is None:
        return verdict.enforced
    if change.header is not None:
        what = f"header {change.header[0]}: {change.header[1]} added"
    else:
        what = f"query becomes ?{change.query}"
    return f"safe search {mode.value} ({change.engine.value}): {what}"

"""An unblock opens at most one registrable domain. Public suffixes (the Public Suffix List,
private section included: github.io, blogspot.com, s3.amazonaws.com ...) are refused when
asked for, when approved and confirmed, and open nothing if an old one is in force; through
the workflow on a real store, the CLI and a real gateway."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import CompletedProcess

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList

from proxy_addons.core.decide import Identity, Reason, Request, decide
from proxy_addons.core.hosts import canonical_url
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.runtime import LoadedPolicy
from proxy_addons.core.policy.standalone import load_all
from proxy_addons.core.unblocks import (
    AudienceKind,
    Scope,
    Status,
    Unblock,
    parse_target,
    scope_problem,
)
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import unblocks
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow, WorkflowError
from tests.conftest import ROOT
from tests.core.test_unblocks import NOW, unblock
from tests.workflow.test_unblocks_e2e import (  # noqa: F401 (setup: a fixture)
    cli,
    cli_in_process,
    setup,
    status_for,
    wait_status,
)

PSL = PublicSuffixList()

# Every spelling a teacher might type for something shared by many unrelated sites.
TOO_BROAD = [
    "com",
    "COM",
    "com.",
    "https://com/",
    "http://com/?q=1",
    "co.uk",
    "Co.Uk.",
    "uk",
    "org.uk",
    "github.io",
    "GITHUB.IO.",
    "https://github.io/",
    "blogspot.com",
    "netlify.app",
    "cloudfront.net",
    "sch.uk",  # "*.sch.uk": a county's name under it is shared by its schools
    "herts.sch.uk",
    "s3.amazonaws.com",
    "s3.eu-west-2.amazonaws.com",
    "herokuapp.com",
    "appspot.com",
    "pages.dev",
    "kawasaki.jp",  # "*.kawasaki.jp": every name under it is a suffix too ...
    "anything.kawasaki.jp",
    "рф",  # IDN TLDs, in Unicode and punycode
    "xn--p1ai",
    "中国",
    "xn--fiqs8s",
    "test",  # not in the list: an unknown TLD is a suffix (the list's "*" rule)
    "localhost",
    "*.com",  # not one name at all
    ".com",
    "a..com",
]

ONE_SITE = [
    ("example.com", Scope.DOMAIN, "example.com"),
    ("EXAMPLE.com.", Scope.DOMAIN, "example.com"),
    ("www.example.co.uk", Scope.DOMAIN, "www.example.co.uk"),
    ("bbc.co.uk", Scope.DOMAIN, "bbc.co.uk"),
    ("oakfield.herts.sch.uk", Scope.DOMAIN, "oakfield.herts.sch.uk"),
    ("octocat.github.io", Scope.DOMAIN, "octocat.github.io"),
    ("someone.blogspot.com", Scope.DOMAIN, "someone.blogspot.com"),
    ("bucket.s3.amazonaws.com", Scope.DOMAIN, "bucket.s3.amazonaws.com"),
    ("city.kawasaki.jp", Scope.DOMAIN, "city.kawasaki.jp"),  # the list's exception rule
    ("пример.рф", Scope.DOMAIN, "xn--e1afmkfd.xn--p1ai"),
    ("chatter.test", Scope.DOMAIN, "chatter.test"),
    # One page or folder on a suffix's own host is one host's content.
    (
        "https://s3.amazonaws.com/bucket/sheet.pdf",
        Scope.PREFIX,
        "s3.amazonaws.com/bucket/sheet.pdf",
    ),
    # One IP address is one host.
    ("192.0.2.7", Scope.DOMAIN, "192.0.2.7"),
    ("http://[2001:db8::1]/", Scope.DOMAIN, "2001:db8::1"),
    ("http://192.0.2.7/lesson", Scope.PREFIX, "192.0.2.7/lesson"),
]


def stored(scope: Scope, target: str, **kw: object) -> Unblock:
    """An unblock in force for the pupil, as the store might hold it."""
    return unblock(scope, target, AudienceKind.USER, ("pupil",), **kw)


@pytest.mark.parametrize("text", TOO_BROAD)
def test_a_public_suffix_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_target(text)
    message = str(caught.value)
    assert "public suffix" in message or "not one site" in message
    assert "e.g. example." in message  # and says what to ask for instead


@pytest.mark.parametrize(("text", "scope", "target"), ONE_SITE)
def test_one_site_is_accepted(text: str, scope: Scope, target: str) -> None:
    assert parse_target(text) == (scope, target)


@pytest.mark.parametrize("scope", [Scope.DOMAIN, Scope.PREFIX, Scope.URL])
@pytest.mark.parametrize("suffix", ["com", "co.uk", "github.io", "s3.amazonaws.com", "test"])
def test_the_root_of_a_suffix_is_refused_in_every_scope(scope: Scope, suffix: str) -> None:
    with pytest.raises(ValueError, match="public suffix"):
        parse_target(f"https://{suffix}/", scope)


@pytest.mark.parametrize(
    ("scope", "target", "host", "url_key"),
    [
        (Scope.DOMAIN, "com", "example.com", "example.com/"),
        (Scope.DOMAIN, "co.uk", "www.bbc.co.uk", "www.bbc.co.uk/"),
        (Scope.DOMAIN, "github.io", "someone.github.io", "someone.github.io/"),
        (Scope.DOMAIN, "test", "chatter.test", "chatter.test/"),
        (Scope.DOMAIN, "*.test", "chatter.test", "chatter.test/"),
        (Scope.PREFIX, "com/", "com", "com/x"),
        (Scope.URL, "github.io/", "github.io", "github.io/"),
    ],
)
def test_a_stored_too_broad_unblock_covers_nothing(
    scope: Scope, target: str, host: str, url_key: str
) -> None:
    assert scope_problem(scope, target) is not None
    assert not stored(scope, target).covers(host, url_key)
    assert not stored(scope, target).covers(host, None)


_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True)
_SUFFIXES = [
    "com",
    "co.uk",
    "github.io",
    "blogspot.com",
    "s3.amazonaws.com",
    "kawasaki.jp",
    "xn--p1ai",
    "test",
    "compute.amazonaws.com",
    "ck",
]


@given(
    below=st.lists(_LABEL, max_size=2),
    label=_LABEL,
    suffix=st.sampled_from(_SUFFIXES),
    other=_LABEL,
)
def test_an_accepted_domain_opens_one_registrable_domain_only(
    below: list[str], label: str, suffix: str, other: str
) -> None:
    name = ".".join([*below, label, suffix])
    try:
        scope, target = parse_target(name)
    except ValueError:
        assert PSL.privatesuffix(name) is None  # refused only when it is not one site
        return
    site = PSL.privatesuffix(target)
    assert scope is Scope.DOMAIN and site is not None
    ub = stored(scope, target)
    assert ub.covers(target, None) and ub.covers(f"www.{target}", f"www.{target}/")
    neighbour = f"{other}x.{suffix}"  # another site under the same suffix
    if PSL.privatesuffix(neighbour) != site:
        assert not ub.covers(neighbour, f"{neighbour}/")
        assert not ub.covers(f"www.{neighbour}", f"www.{neighbour}/")


@pytest.mark.parametrize(
    "target, host",
    [
        ("amazonaws.com", "anybucket.s3.amazonaws.com"),
        ("amazonaws.com", "x.execute-api.eu-west-2.amazonaws.com"),
        ("windows.net", "pupil.blob.core.windows.net"),
        ("fastly.net", "site.freetls.fastly.net"),
    ],
)
def test_a_domain_with_suffixes_below_it_does_not_cover_their_sites(target: str, host: str) -> None:
    """A registrable domain can have public suffixes under it (155 in the list): its
    unblock covers its own names, never the sites anyone can make below those suffixes."""
    ub = stored(*parse_target(target))
    assert ub.covers(target, None) and ub.covers(f"www.{target}", None)
    assert not ub.covers(host, None) and not ub.covers(host, f"{host}/")


# -- decide(): a too-broad unblock in force opens nothing -----------------------------------


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedPolicy:
    return load_all(ROOT / "tests/data/policy/school.yaml", tmp_path_factory.mktemp("index"))


def test_decide_ignores_a_too_broad_unblock_but_honours_one_site(loaded: LoadedPolicy) -> None:
    url = canonical_url("https://chatter.test/lesson")
    req = Request(url.host, url.path)
    who = Identity("pupil")
    wide = [stored(Scope.DOMAIN, "test"), stored(Scope.DOMAIN, "*.test", id="UB-WIDE33")]
    blocked = decide(loaded.policy, loaded.index, who, req, NOW, wide)
    assert blocked.blocked and blocked.reason is not Reason.UNBLOCK
    one = decide(loaded.policy, loaded.index, who, req, NOW, [stored(Scope.DOMAIN, "chatter.test")])
    assert one.reason is Reason.UNBLOCK and not one.blocked


# -- the workflow on a real store ------------------------------------------------------------


POLICY = load_policy(ROOT / "tests/data/policy/school.yaml")


def _insert(
    store: Store, uid: str, target: str, status: Status, scope: Scope = Scope.DOMAIN
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    with store.begin() as conn:
        conn.execute(
            unblocks.insert().values(
                id=uid,
                scope=scope.value,
                target=target,
                audience_kind="user",
                audience=["pupil"],
                starts_at=start,
                ends_at=start + timedelta(hours=1),
                reason="stored before scopes were checked",
                requested_by="teacher",
                requested_at=start,
                status=status.value,
            )
        )


def _status(store: Store, uid: str) -> str:
    with store.connect() as conn:
        return str(conn.scalar(sa.select(unblocks.c.status).where(unblocks.c.id == uid)))


def test_workflow_refuses_at_request_approval_confirmation_and_extension(tmp_path: Path) -> None:
    store = Store.open(store_url(tmp_path))
    flow = UnblockWorkflow(store, lambda: POLICY)
    for target in ("com", "github.io", "https://co.uk/"):
        with pytest.raises(WorkflowError, match="public suffix"):
            flow.request(
                Actor("teacher"),
                target=target,
                audience_kind=AudienceKind.PROFILE,
                audience=["ks2"],
                minutes=30,
                reason="research",
            )
    assert flow.list() == []
    _insert(store, "UB-OLDCOM", "com", Status.PENDING)
    with pytest.raises(WorkflowError, match="cannot be approved: 'com' is a public suffix"):
        flow.approve(Actor("dsl"), "UB-OLDCOM", "fine")
    assert _status(store, "UB-OLDCOM") == "pending"
    flow.reject(Actor("dsl"), "UB-OLDCOM", "far too broad")  # it can still be turned down
    assert _status(store, "UB-OLDCOM") == "rejected"
    _insert(store, "UB-OLDGIT", "github.io", Status.AWAITING_IT)
    with pytest.raises(WorkflowError, match="cannot be applied"):
        flow.confirm(Actor("tech"), "UB-OLDGIT")
    assert _status(store, "UB-OLDGIT") == "awaiting_it"
    _insert(store, "UB-OLDUK", "co.uk", Status.ACTIVE)
    until = datetime.now(UTC) + timedelta(hours=3)
    with pytest.raises(WorkflowError, match="cannot be extended"):
        flow.extend(Actor("deputy"), "UB-OLDUK", until, "more time")
    flow.revoke(Actor("dsl"), "UB-OLDUK", "too broad")
    assert _status(store, "UB-OLDUK") == "revoked"
    store.dispose()


# -- the CLI and a real gateway --------------------------------------------------------------


def ask_for_ks2(
    policy: Path, target: str, reason: str, run: Callable[..., CompletedProcess[str]] = cli
) -> CompletedProcess[str]:
    """`schoolgate unblock request TARGET` for the ks2 profile, for 30 minutes, as a teacher."""
    return run(
        policy, "unblock", "request", target, "--as", "teacher", "--for-profile", "ks2",
        "--minutes", "30", "--reason", reason,
    )  # fmt: skip


@pytest.mark.parametrize("target", ["com", "co.uk", "github.io", "test"])
def test_cli_refuses_a_public_suffix(setup, target: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    policy, _ = setup
    # In this process (test_unblocks_e2e.py's test_illegal_tier_cannot_be_requested has the
    # real command refuse a request).
    result = ask_for_ks2(policy, target, "research", run=cli_in_process)
    assert result.returncode == 1 and "public suffix" in result.stderr
    assert "Traceback" not in result.stderr
    assert cli(policy, "unblock", "list").stdout.strip() == ""


def test_gateway_opens_one_site_but_not_a_stored_suffix(setup) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    policy, start = setup
    gw = start()
    assert status_for(gw, "pupil", "https://chatter.test/") == 403
    assert status_for(gw, "pupil", "https://friends.test/") == 403
    store = Store.open(store_url(gw.var))
    _insert(store, "UB-WIDEST", "test", Status.ACTIVE)  # as if stored before this check
    _insert(store, "UB-ROOTPF", "test/", Status.ACTIVE, Scope.PREFIX)
    _insert(store, "UB-FRIEND", "friends.test", Status.ACTIVE)  # one site: the control
    store.dispose()
    wait_status(gw, "pupil", "https://friends.test/", 200)  # the gateway has read all three
    for url in ("https://chatter.test/", "http://chatter.test/", "https://www.chatter.test/x"):
        assert status_for(gw, "pupil", url) == 403
    deadline = time.monotonic() + 5
    while "UB-WIDEST opens nothing" not in gw.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "UB-WIDEST opens nothing" in gw.log_text()

"""Unblocks as plain data: scope, audience, window, and their place in decide()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from proxy_addons.core.decide import Identity, Reason, Request, decide
from proxy_addons.core.hosts import canonical_url
from proxy_addons.core.policy.model import Action
from proxy_addons.core.policy.runtime import LoadedPolicy
from proxy_addons.core.policy.standalone import load_all
from proxy_addons.core.unblocks import AudienceKind, Scope, Status, Unblock, parse_target
from proxy_addons.workflow.unblock_rules import illegal_overlap, rest_of_lesson
from tests.conftest import ROOT

NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)  # a Wednesday in term, in a lesson


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedPolicy:
    var = tmp_path_factory.mktemp("index")
    return load_all(ROOT / "tests/data/policy/school.yaml", var)


def unblock(scope: Scope, target: str, kind: AudienceKind, who: tuple[str, ...], **kw) -> Unblock:  # type: ignore[no-untyped-def]
    values = dict(
        id="UB-TEST22",
        scope=scope,
        target=target,
        audience_kind=kind,
        audience=who,
        starts_at=NOW - timedelta(minutes=5),
        ends_at=NOW + timedelta(minutes=30),
        reason="lesson",
        requested_by="teacher",
        status=Status.ACTIVE,
    )
    values.update(kw)
    return Unblock(**values)  # type: ignore[arg-type]


def ask(loaded: LoadedPolicy, url: str, user: str | None, ub: Unblock, now: datetime = NOW):  # type: ignore[no-untyped-def]
    u = canonical_url(url)
    req = Request(u.host, u.path + (f"?{u.query}" if u.query else ""), u.scheme)
    return decide(loaded.policy, loaded.index, Identity(user), req, now, [ub])


def test_decision_under_an_unblock_carries_its_id(loaded: LoadedPolicy) -> None:
    ub = unblock(Scope.DOMAIN, "chatter.test", AudienceKind.USER, ("pupil",))
    d = ask(loaded, "https://www.chatter.test/x", "pupil", ub)
    assert d.action is Action.ALLOW and d.reason is Reason.UNBLOCK and d.unblock_id == "UB-TEST22"
    assert "UB-TEST22" in d.explain()
    other = ask(loaded, "https://www.chatter.test/x", "pupil2", ub)
    assert other.blocked and other.unblock_id is None


@pytest.mark.parametrize(
    ("scope", "target", "url", "covered"),
    [
        (Scope.URL, "chatter.test/page", "https://chatter.test/page?x=1", True),
        (Scope.URL, "chatter.test/page", "https://chatter.test/page/2", False),
        (Scope.PREFIX, "chatter.test/unit", "https://chatter.test/unit/3", True),
        (Scope.PREFIX, "chatter.test/unit", "https://chatter.test/units", False),
        (Scope.DOMAIN, "chatter.test", "https://a.b.chatter.test/", True),
        (Scope.DOMAIN, "chatter.test", "https://notchatter.test/", False),
    ],
)
def test_scope(loaded: LoadedPolicy, scope: Scope, target: str, url: str, covered: bool) -> None:
    ub = unblock(scope, target, AudienceKind.PROFILE, ("ks2",))
    assert (ask(loaded, url, "pupil", ub).reason is Reason.UNBLOCK) is covered


@pytest.mark.parametrize(
    ("at", "status", "open_"),
    [
        (NOW, Status.ACTIVE, True),
        (NOW + timedelta(minutes=30), Status.ACTIVE, False),  # the end is not included
        (NOW - timedelta(minutes=6), Status.ACTIVE, False),  # before it starts
        (NOW, Status.PENDING, False),
        (NOW, Status.AWAITING_IT, False),
        (NOW, Status.REVOKED, False),
    ],
)
def test_window_and_status(loaded: LoadedPolicy, at: datetime, status: Status, open_: bool) -> None:
    ub = unblock(
        Scope.DOMAIN, "chatter.test", AudienceKind.USERS, ("pupil", "pupil2"), status=status
    )
    assert (ask(loaded, "https://chatter.test/", "pupil", ub, at).reason is Reason.UNBLOCK) is open_


def test_device_audience(loaded: LoadedPolicy) -> None:
    ub = unblock(Scope.DOMAIN, "chatter.test", AudienceKind.DEVICE, ("10.10.1.5",))
    req = Request(canonical_url("https://chatter.test/").host, "/")
    policy, index = loaded.policy, loaded.index
    assert decide(policy, index, Identity(None, (), "10.10.1.5"), req, NOW, [ub]).unblock_id
    assert not decide(policy, index, Identity(None, (), "10.10.1.6"), req, NOW, [ub]).unblock_id


def test_an_unblock_never_opens_the_illegal_tier(loaded: LoadedPolicy) -> None:
    # Even one written straight into the store, past the workflow's refusal.
    ub = unblock(Scope.DOMAIN, "illegal.test", AudienceKind.PROFILE, ("ks2", "staff"))
    d = ask(loaded, "http://illegal.test/exact.html", "teacher", ub)
    assert d.blocked and d.reason is Reason.ILLEGAL
    assert illegal_overlap(loaded.policy, Scope.DOMAIN, "illegal.test")
    assert illegal_overlap(loaded.policy, Scope.PREFIX, "illegal.test/prefix/a")
    assert illegal_overlap(loaded.policy, Scope.PREFIX, "illegal.test/")
    assert not illegal_overlap(loaded.policy, Scope.PREFIX, "illegal.test/other")


def test_parse_target_and_rest_of_lesson(loaded: LoadedPolicy) -> None:
    assert parse_target("HTTPS://Chatter.TEST./") == (Scope.DOMAIN, "chatter.test")
    assert parse_target("chatter.test/unit/1") == (Scope.PREFIX, "chatter.test/unit/1")
    with pytest.raises(ValueError):
        parse_target("http://exa mple.com/")
    # 10:30 UTC = 10:30 in London in November: the 10:00-11:00 lesson ends at 11:00.
    assert rest_of_lesson(loaded.policy, NOW) == datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    assert rest_of_lesson(loaded.policy, NOW.replace(hour=12, minute=30)) is None

"""`decide()` on the test policy and its real list index: the illegal tier, schedules
and the term calendar, identities, host matching, bare IPs, host-only decisions and
the explanation a technician reads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_addons.core.decide import Decision, Identity, Reason, Request, decide, url_prefix_match
from proxy_addons.core.hosts import HostError, canonical_host, canonical_url, request_url
from proxy_addons.core.policy.model import Action
from proxy_addons.core.policy.runtime import LoadedPolicy
from proxy_addons.core.policy.standalone import load_all
from tests.conftest import ROOT, copy_policy

LONDON = ZoneInfo("Europe/London")
POLICY = ROOT / "tests" / "data" / "policy" / "school.yaml"
LISTS = (ROOT / "tests" / "data" / "policy" / "lists").resolve()
# Wednesday 25 November 2026, in term, mid-morning (not lunchtime).
LESSON = datetime(2026, 11, 25, 10, 30, tzinfo=LONDON)

TEACHER = Identity(user="teacher")
PUPIL = Identity(user="pupil")
STAFF_LAPTOP = Identity(ip="10.20.0.15")
UNKNOWN = Identity()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedPolicy:
    return load_all(POLICY, tmp_path_factory.mktemp("decision") / "index")


def ask(
    loaded: LoadedPolicy,
    url: str,
    identity: Identity = UNKNOWN,
    now: datetime = LESSON,
    *,
    host_only: bool = False,
) -> Decision:
    """What the proxy decides for `url`, as it would see it."""
    parsed = canonical_url(url)
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    request = Request(parsed.host, None if host_only else path, parsed.scheme)
    return decide(loaded.policy, loaded.index, identity, request, now)


def edited_policy(tmp_path: Path, old: str, new: str) -> LoadedPolicy:
    path = copy_policy(tmp_path)
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))
    return load_all(path, tmp_path / "index")


# --------------------------------------------------------------------------- illegal tier

EVERYONE = [
    TEACHER,
    PUPIL,
    STAFF_LAPTOP,
    UNKNOWN,
    Identity(user="someone-else", ip="10.99.1.1"),
]


@pytest.mark.parametrize("identity", EVERYONE, ids=lambda i: f"{i.user}@{i.ip}")
@pytest.mark.parametrize(
    ("url", "entry", "list_file"),
    [
        ("https://illegal.test/exact.html", "illegal.test/exact.html", "exact.txt"),
        ("http://ILLEGAL.test./exact.html", "illegal.test/exact.html", "exact.txt"),
        ("https://illegal.test/prefix/", "illegal.test/prefix/", "prefix.txt"),
        ("https://illegal.test/prefix/a/b.jpg?size=2", "illegal.test/prefix/", "prefix.txt"),
        # A trailing slash is ignored: servers redirect /prefix to the folder /prefix/.
        ("https://illegal.test/prefix", "illegal.test/prefix/", "prefix.txt"),
    ],
)
def test_illegal_entries_block_everyone(
    loaded: LoadedPolicy, identity: Identity, url: str, entry: str, list_file: str
) -> None:
    # Lunchtime: staff would have social networks allowed; it changes nothing here.
    for now in (LESSON, datetime(2026, 11, 25, 12, 30, tzinfo=LONDON)):
        d = ask(loaded, url, identity, now)
        assert d.action is Action.BLOCK
        assert d.reason is Reason.ILLEGAL
        assert d.entry == entry
        assert d.list_source == str(LISTS / "illegal" / list_file)
        assert d.rule is None


@pytest.mark.parametrize(
    "url",
    [
        "https://illegal.test/",
        "https://illegal.test/other.html",
        "https://illegal.test/exact.htm",
        "https://illegal.test/prefixes/",
        "https://www.illegal.test/exact.html",  # entries name the exact host
    ],
)
def test_unlisted_paths_on_an_illegal_host_are_not_blocked(loaded: LoadedPolicy, url: str) -> None:
    d = ask(loaded, url, TEACHER)
    assert d.action is Action.ALLOW
    assert d.reason is Reason.DEFAULT


@pytest.mark.parametrize(
    "url",
    ["https://illegal.test/%70refix/a.jpg", "https://illegal.test/exact%2Ehtml"],
)
def test_percent_encoded_spelling_of_an_illegal_url_is_blocked(
    loaded: LoadedPolicy, url: str
) -> None:
    assert ask(loaded, url, PUPIL).reason is Reason.ILLEGAL


def ask_target(
    loaded: LoadedPolicy, host: str, target: str, identity: Identity = PUPIL
) -> Decision | None:
    """What the gateway decides for a raw request-target; None when it refuses it (400)."""
    try:
        url = request_url("https", host, None, target)
    except HostError:
        return None
    path = url.path + (f"?{url.query}" if url.query else "")
    return decide(loaded.policy, loaded.index, identity, Request(url.host, path), LESSON)


def assert_covered(
    loaded: LoadedPolicy, host: str, target: str, reason: Reason, identity: Identity = PUPIL
) -> None:
    """Blocked for `reason` as a request-target (or refused, only for a '..'), and as a
    URL (policy explain, where ada-url resolves the dots first)."""
    d = ask_target(loaded, host, target, identity)
    if d is None:
        assert ".." in target or "%2e%2" in target.lower(), target
    else:
        assert (d.action, d.reason) == (Action.BLOCK, reason), target
    assert ask(loaded, f"https://{host}{target}", identity).reason is reason, target


# Spellings lenient servers read as the listed path: repeated slashes, dot segments (also
# escaped), escapes of unreserved characters, ';parameters', a trailing slash, backslashes,
# %2F/%5C; on the illegal tier also any case.
ILLEGAL_SPELLINGS = [
    "/prefix/a.jpg",
    "//prefix/a.jpg",
    "/prefix//a.jpg",
    "/./prefix/a.jpg",
    "/x/../prefix/a.jpg",
    "/x/%2e%2E/prefix/a.jpg",
    "/%2e/prefix/",
    "/%70refix/a.jpg",
    "/pre%66ix",
    "/prefix;jsessionid=1/a.jpg",
    "/prefix/a.jpg;x",
    "/prefix;p",
    "/prefix",
    "/prefix/",
    "/prefix?x=1",
    "/PREFIX/a.jpg",
    "/Prefix",
    "/pREFIX%2Fa.jpg",
    "/prefix%5ca.jpg",
    "/\\prefix\\a.jpg",
    "/prefix\\a.jpg",
    "/exact.html",
    "/EXACT.HTML",
    "/exact.html/",
    "//exact.html",
    "/exact%2Ehtml",
    "/exact.html;x",
    "/exact.html?q=1",
    "/./exact.html",
    "/a/../Exact.Html",
]


@pytest.mark.parametrize("target", ILLEGAL_SPELLINGS)
def test_spellings_of_an_illegal_entry_are_blocked(loaded: LoadedPolicy, target: str) -> None:
    assert_covered(loaded, "illegal.test", target, Reason.ILLEGAL)


@pytest.mark.parametrize(
    "target",
    ["/prefixx", "/prefixes/", "/pre/fix", "/pre", "/exact.htm", "/exact.html5", "/exact.html/x"],
)
def test_near_misses_of_illegal_entries_are_not_blocked(loaded: LoadedPolicy, target: str) -> None:
    d = ask_target(loaded, "illegal.test", target, TEACHER)
    assert d is not None and (d.action, d.reason) == (Action.ALLOW, Reason.DEFAULT)


UT1_SPELLINGS = ["/adult", "//adult", "/./adult", "/%61dult", "/adult;p", "/adult/", "/adult/x"]
UT1_SPELLINGS += ["/adult\\x", "/adult%2Fx", "/x/../adult", "/x/%2E%2e/adult", "/adult?p=2"]


@pytest.mark.parametrize("target", UT1_SPELLINGS)
def test_spellings_of_a_ut1_url_entry_are_blocked(loaded: LoadedPolicy, target: str) -> None:
    assert_covered(loaded, "mixed.test", target, Reason.RULE)
    d = ask(loaded, f"https://mixed.test{target}", PUPIL)
    assert (d.category, d.entry) == ("adult", "mixed.test/adult")


@pytest.mark.parametrize("target", ["/adultery", "/adul", "/x/adult", "/Adult", "/ADULT/x"])
def test_near_misses_of_a_ut1_url_entry_are_not_blocked(loaded: LoadedPolicy, target: str) -> None:
    """Only the illegal tier folds case: a UT1 entry is matched as written."""
    d = ask_target(loaded, "mixed.test", target)
    assert d is not None and not d.blocked


def test_spellings_of_a_policy_url_rule(tmp_path: Path) -> None:
    loaded = edited_policy(
        tmp_path,
        "      - block: [games]\n",
        "      - block: {urls: [video.test/shorts/]}\n",
    )
    for target in ["/shorts", "//shorts/1", "/sh%6Frts;x/1", "/shorts\\1", "/a/../shorts"]:
        assert_covered(loaded, "video.test", target, Reason.RULE, UNKNOWN)
    for target in ["/shortsx", "/Shorts", "/short"]:
        d = ask_target(loaded, "video.test", target, UNKNOWN)
        assert d is not None and not d.blocked, target


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    ("clock", "action"),
    [
        ((11, 59, 59), Action.BLOCK),
        ((12, 0, 0), Action.ALLOW),
        ((12, 30, 0), Action.ALLOW),
        ((12, 59, 59), Action.ALLOW),
        ((13, 0, 0), Action.BLOCK),
    ],
)
def test_staff_lunch_boundaries(
    loaded: LoadedPolicy, clock: tuple[int, int, int], action: Action
) -> None:
    now = datetime(2026, 11, 25, *clock, tzinfo=LONDON)
    d = ask(loaded, "https://www.chatter.test/feed", TEACHER, now)
    assert d.action is action
    assert d.reason is Reason.RULE
    assert d.category == "social"
    assert d.rule is not None
    assert d.rule.startswith("staff rule 1" if action is Action.ALLOW else "staff rule 2")


def test_a_block_says_when_a_scheduled_allow_would_apply(loaded: LoadedPolicy) -> None:
    d = ask(loaded, "https://chatter.test/", TEACHER, LESSON)
    assert d.blocked and d.allowed_when == ("lunch",)
    assert "allowed:   at other times: lunch" in d.explain()
    # Pupils have no scheduled allow for social networks.
    d = ask(loaded, "https://chatter.test/", PUPIL, LESSON)
    assert d.blocked and d.allowed_when == ()
    assert "allowed:" not in d.explain()


def test_lunch_does_not_apply_at_the_weekend(loaded: LoadedPolicy) -> None:
    saturday = datetime(2026, 11, 28, 12, 30, tzinfo=LONDON)
    assert ask(loaded, "https://chatter.test/", TEACHER, saturday).action is Action.BLOCK


def test_lunch_does_not_apply_outside_term(tmp_path: Path) -> None:
    # A weekday outside every term is not a school day.
    loaded = edited_policy(tmp_path, "start: 2026-01-01", "start: 2026-12-01")
    now = datetime(2026, 11, 25, 12, 30, tzinfo=LONDON)
    assert ask(loaded, "https://chatter.test/", TEACHER, now).action is Action.BLOCK
    in_term = datetime(2026, 12, 2, 12, 30, tzinfo=LONDON)
    assert ask(loaded, "https://chatter.test/", TEACHER, in_term).action is Action.ALLOW


def test_lunch_does_not_apply_on_a_closure_day(tmp_path: Path) -> None:
    loaded = edited_policy(
        tmp_path,
        "schedules:\n",
        "  closures:\n    - {name: INSET day, start: 2026-11-25}\nschedules:\n",
    )
    closed = datetime(2026, 11, 25, 12, 30, tzinfo=LONDON)
    assert ask(loaded, "https://chatter.test/", TEACHER, closed).action is Action.BLOCK
    next_day = datetime(2026, 11, 26, 12, 30, tzinfo=LONDON)
    assert ask(loaded, "https://chatter.test/", TEACHER, next_day).action is Action.ALLOW


@pytest.mark.parametrize(
    ("utc", "action"),
    [
        # Summer (BST = UTC+1): 11:30 UTC is 12:30 at school; 12:30 UTC is 13:30.
        (datetime(2027, 6, 9, 11, 30, tzinfo=UTC), Action.ALLOW),
        (datetime(2027, 6, 9, 10, 59, tzinfo=UTC), Action.BLOCK),
        (datetime(2027, 6, 9, 12, 30, tzinfo=UTC), Action.BLOCK),
        # Winter (GMT = UTC).
        (datetime(2026, 11, 25, 12, 30, tzinfo=UTC), Action.ALLOW),
        (datetime(2026, 11, 25, 11, 30, tzinfo=UTC), Action.BLOCK),
    ],
)
def test_now_in_another_time_zone_is_converted(
    loaded: LoadedPolicy, utc: datetime, action: Action
) -> None:
    assert ask(loaded, "https://chatter.test/", TEACHER, utc).action is action


def test_the_school_day_is_taken_in_the_school_time_zone(tmp_path: Path) -> None:
    loaded = edited_policy(tmp_path, "Europe/London", "Pacific/Auckland")

    def at(day: int, hour: int) -> Action:
        now = datetime(2026, 11, day, hour, 30, tzinfo=UTC)
        return ask(loaded, "https://chatter.test/", TEACHER, now).action

    # Tuesday 23:30 UTC is Wednesday 12:30 in Auckland (NZDT, UTC+13): lunchtime.
    assert at(24, 23) is Action.ALLOW
    # Friday 23:30 UTC is Saturday 12:30 in Auckland: no school, no lunch rule.
    assert at(27, 23) is Action.BLOCK
    # 12:30 UTC on Wednesday is 01:30 on Thursday in Auckland.
    assert at(25, 12) is Action.BLOCK


# --------------------------------------------------------------------------- identities


@pytest.fixture(scope="module")
def with_groups(tmp_path_factory: pytest.TempPathFactory) -> LoadedPolicy:
    tmp = tmp_path_factory.mktemp("groups")
    path = copy_policy(tmp)
    text = path.read_text()
    old = "  networks: {10.20.0.0/24: staff}\n"
    assert old in text
    new = (
        '  groups: {"CN=Staff,OU=Groups": staff, "Year 3": ks2}\n'
        "  networks: {10.0.0.0/8: ks2, 10.20.0.0/24: staff}\n"
    )
    path.write_text(text.replace(old, new))
    return load_all(path, tmp / "index")


@pytest.mark.parametrize(
    ("identity", "profile", "via"),
    [
        # A user's own entry beats their group and their network.
        (Identity("pupil", ("CN=Staff,OU=Groups",), "10.20.0.7"), "ks2", "user"),
        (Identity("TEACHER", ("Year 3",), "10.1.2.3"), "staff", "user"),
        # An unknown user falls through to the group, which beats the network.
        (Identity("visitor", ("year 3",), "10.20.0.7"), "ks2", "group"),
        (Identity(None, ("cn=staff,ou=groups", "Year 3"), "10.1.2.3"), "staff", "group"),
        # No user or group mapping: the most specific network.
        (Identity("visitor", ("Governors",), "10.20.0.7"), "staff", "network"),
        (Identity(ip="10.20.1.7"), "ks2", "network"),
        (Identity(ip="::ffff:10.20.0.7"), "staff", "network"),
        (Identity(ip="::ffff:10.9.9.9"), "ks2", "network"),
        # Nothing known: the default (the strictest learner profile).
        (Identity(ip="192.168.1.10"), "early_years", "default"),
        (Identity(ip="not-an-address"), "early_years", "default"),
        (Identity(), "early_years", "default"),
    ],
)
def test_identity_precedence(
    with_groups: LoadedPolicy, identity: Identity, profile: str, via: str
) -> None:
    d = ask(with_groups, "https://plain.test/", identity)
    assert (d.profile, d.identified_by) == (profile, via)
    assert d.user == identity.user and d.ip == identity.ip


def test_profile_decides_the_outcome(loaded: LoadedPolicy) -> None:
    # games.test is blocked only for early_years (the default profile).
    assert ask(loaded, "https://games.test/", UNKNOWN).action is Action.BLOCK
    assert ask(loaded, "https://games.test/", PUPIL).action is Action.ALLOW
    assert ask(loaded, "https://games.test/", STAFF_LAPTOP).action is Action.ALLOW
    # early_years inherits ks2's rules after its own.
    d = ask(loaded, "https://adult.test/", UNKNOWN)
    assert d.blocked and d.rule is not None and d.rule.startswith("ks2 rule 2")


# --------------------------------------------------------------------------- hosts and URLs


@pytest.mark.parametrize(
    ("url", "blocked", "entry"),
    [
        ("https://chatter.test/", True, "chatter.test"),
        ("https://www.chatter.test/", True, "chatter.test"),
        ("https://a.b.c.friends.test/x", True, "friends.test"),
        ("https://CHATTER.Test./", True, "chatter.test"),
        ("https://xxx-example.test/", True, "xxx-example.test"),
        ("https://notchatter.test/", False, None),
        ("https://chatter.test.example/", False, None),
        ("https://chatter-test.example/", False, None),
        ("https://chatter.tester/", False, None),
        ("https://hatter.test/", False, None),
    ],
)
def test_domain_entries_cover_subdomains_but_not_lookalikes(
    loaded: LoadedPolicy, url: str, blocked: bool, entry: str | None
) -> None:
    d = ask(loaded, url, PUPIL)
    assert d.blocked is blocked
    assert d.entry == entry
    if not blocked:
        assert d.reason is Reason.DEFAULT


@pytest.mark.parametrize(
    ("url", "blocked"),
    [
        ("https://mixed.test/adult", True),
        ("https://mixed.test/adult/", True),
        ("https://mixed.test/adult/page.html", True),
        ("https://mixed.test/adult?page=2", True),
        ("https://mixed.test/adultery", False),
        ("https://mixed.test/", False),
        ("https://mixed.test/other/adult", False),
        ("https://www.mixed.test/adult", False),  # URL entries name their host exactly
    ],
)
def test_url_entries(loaded: LoadedPolicy, url: str, blocked: bool) -> None:
    d = ask(loaded, url, PUPIL)
    assert d.blocked is blocked
    if blocked:
        assert (d.category, d.entry) == ("adult", "mixed.test/adult")
        assert d.list_source == str(LISTS / "ut1-adult" / "urls")


def test_url_prefix_match_stops_at_a_path_boundary() -> None:
    assert url_prefix_match("a.test/x", "a.test/x")
    assert url_prefix_match("a.test/x", "a.test/x/y")
    assert url_prefix_match("a.test/x", "a.test/x?q=1")
    assert not url_prefix_match("a.test/x", "a.test/xy")
    assert not url_prefix_match("a.test/x/", "a.test/x")
    assert url_prefix_match("a.test/x/", "a.test/x/anything")
    assert url_prefix_match("a.test/x?", "a.test/x?anything")
    assert not url_prefix_match("a.test/x", "b.test/x")


def test_a_policy_allow_rule_beats_a_later_block(tmp_path: Path) -> None:
    loaded = edited_policy(
        tmp_path,
        "      - allow: {domains: [allowed-ip-site.test]}\n",
        "      - allow: {domains: [allowed-ip-site.test], urls: [chatter.test/homework]}\n",
    )
    d = ask(loaded, "https://chatter.test/homework/page1", PUPIL)
    assert d.action is Action.ALLOW and d.reason is Reason.RULE
    assert d.entry == "chatter.test/homework"
    assert d.list_source == "ks2 rule 1 urls"
    assert ask(loaded, "https://chatter.test/homeworkx", PUPIL).blocked
    assert ask(loaded, "https://chatter.test/", PUPIL).blocked


# --------------------------------------------------------------------------- bare IPs


@pytest.mark.parametrize(
    "url",
    ["http://93.184.216.34/", "http://0x5db8d822/", "http://1572395042/", "http://[2001:db8::1]/"],
)
def test_bare_ip_blocked_for_learners_allowed_for_staff(loaded: LoadedPolicy, url: str) -> None:
    for learner in (PUPIL, UNKNOWN):
        d = ask(loaded, url, learner)
        assert (d.action, d.reason) == (Action.BLOCK, Reason.BARE_IP)
    d = ask(loaded, url, TEACHER)
    assert (d.action, d.reason) == (Action.ALLOW, Reason.BARE_IP)
    assert d.entry == canonical_url(url).host.name


def test_learner_allow_rule_for_an_ip_beats_the_bare_ip_block(tmp_path: Path) -> None:
    loaded = edited_policy(
        tmp_path,
        "domains: [allowed-ip-site.test]",
        "domains: [allowed-ip-site.test, 192.0.2.10]",
    )
    d = ask(loaded, "http://192.0.2.10/", PUPIL)
    assert (d.action, d.reason) == (Action.ALLOW, Reason.RULE)
    assert ask(loaded, "http://192.0.2.11/", PUPIL).blocked


def test_staff_bare_ip_rule_blocks(tmp_path: Path) -> None:
    loaded = edited_policy(
        tmp_path, "      - block: [social, adult]\n", "      - block: {bare_ip: true}\n"
    )
    d = ask(loaded, "http://93.184.216.34/", TEACHER)
    assert (d.action, d.reason) == (Action.BLOCK, Reason.RULE)
    assert d.rule is not None and d.rule.startswith("staff rule 2")


# --------------------------------------------------------------------------- host only


@pytest.mark.parametrize("identity", EVERYONE, ids=lambda i: f"{i.user}@{i.ip}")
def test_host_only_on_an_illegal_host_must_decrypt(
    loaded: LoadedPolicy, identity: Identity
) -> None:
    d = decide(
        loaded.policy, loaded.index, identity, Request(canonical_host("illegal.test")), LESSON
    )
    assert d.must_decrypt is True
    assert d.decrypt is True
    assert d.reason is not Reason.ILLEGAL  # the path decides, once decrypted
    assert d.url is None


def test_host_only_banking_is_not_decrypted(loaded: LoadedPolicy) -> None:
    d = ask(loaded, "https://online.bank.test/", TEACHER, host_only=True)
    assert (d.action, d.decrypt, d.must_decrypt) == (Action.ALLOW, False, False)
    d = ask(loaded, "https://online.bank.test/", PUPIL, host_only=True)
    assert (d.action, d.category, d.decrypt) == (Action.BLOCK, "banking", False)
    # Ordinary sites are decrypted (decryption.default: decrypt).
    d = ask(loaded, "https://plain.test/", TEACHER, host_only=True)
    assert (d.decrypt, d.must_decrypt) == (True, False)


def test_host_only_still_decides_domain_entries(loaded: LoadedPolicy) -> None:
    d = ask(loaded, "https://www.chatter.test/", PUPIL, host_only=True)
    assert d.blocked and d.entry == "chatter.test" and d.url is None


def test_host_only_must_decrypt_for_a_host_with_a_url_block_rule(tmp_path: Path) -> None:
    loaded = edited_policy(
        tmp_path,
        "      - block: [games]\n",
        "      - block: {urls: [video.test/shorts]}\n",
    )
    d = ask(loaded, "https://video.test/", UNKNOWN, host_only=True)
    assert (d.action, d.must_decrypt) == (Action.ALLOW, True)
    assert ask(loaded, "https://video.test/shorts/1", UNKNOWN).blocked
    assert not ask(loaded, "https://other.test/", UNKNOWN, host_only=True).must_decrypt


def test_portal_host_is_always_allowed(loaded: LoadedPolicy) -> None:
    d = ask(loaded, "https://schoolgate.local/report", PUPIL)
    assert (d.action, d.reason) == (Action.ALLOW, Reason.PORTAL)


# --------------------------------------------------------------------------- explain


def test_explain_names_profile_rule_category_list_and_entry(loaded: LoadedPolicy) -> None:
    d = ask(loaded, "https://www.chatter.test/feed?x=1", PUPIL)
    text = d.explain()
    line = next(
        n
        for n, t in enumerate(POLICY.read_text().splitlines(), 1)
        if t.strip() == "- block: [adult, social, banking]"
    )
    assert "decision:  BLOCK (rule)" in text
    assert "profile:   ks2 (identified by user)" in text
    assert "host:      www.chatter.test" in text
    assert "url:       https://www.chatter.test/feed?x=1" in text
    assert f"rule:      ks2 rule 2 ({POLICY.resolve()}, line {line})" in text
    assert "category:  social (Social networks)" in text
    assert f"list:      {LISTS / 'social.txt'}" in text
    assert "entry:     chatter.test" in text
    assert "decrypt:   yes" in text


def test_explain_of_an_illegal_block_and_of_a_host_only_decision(loaded: LoadedPolicy) -> None:
    text = ask(loaded, "https://illegal.test/exact.html", TEACHER).explain()
    assert "decision:  BLOCK (illegal)" in text
    assert "profile:   staff (identified by user)" in text
    assert f"list:      {LISTS / 'illegal' / 'exact.txt'}" in text
    assert "entry:     illegal.test/exact.html" in text
    assert "rule:" not in text
    text = ask(loaded, "https://bank.test/", TEACHER, host_only=True).explain()
    assert "decision:  ALLOW (default)" in text
    assert "decrypt:   no (host name only)" in text
    assert "url:" not in text


def test_record_is_plain_data(loaded: LoadedPolicy) -> None:
    record = ask(loaded, "https://chatter.test/", PUPIL).record()
    assert record["action"] == "block" and record["reason"] == "rule"
    assert record["category"] == "social" and record["profile"] == "ks2"


# --------------------------------------------------------------------------- property

BLOCKED_FOR_PUPILS = [
    "chatter.test",
    "www.chatter.test",
    "friends.test",
    "adult.test",
    "deep.sub.xxx-example.test",
    "bank.test",
]


@st.composite
def spellings(draw: st.DrawFn) -> str:
    host = draw(st.sampled_from(BLOCKED_FOR_PUPILS))
    upper = draw(st.lists(st.booleans(), min_size=len(host), max_size=len(host)))
    spelled = "".join(c.upper() if u else c for c, u in zip(host, upper, strict=True))
    return spelled + "." * draw(st.integers(0, 1))


@settings(max_examples=150, deadline=None)
@given(raw=spellings(), path=st.sampled_from(["/", "/index.html", "/a?b=c"]))
def test_any_spelling_of_a_blocked_host_is_blocked(
    loaded: LoadedPolicy, raw: str, path: str
) -> None:
    host = canonical_host(raw)
    assert host.name == raw.lower().rstrip(".")
    for request in (Request(host, path), Request(host, None)):
        d = decide(loaded.policy, loaded.index, PUPIL, request, LESSON)
        assert d.action is Action.BLOCK, (raw, d)
        assert d.reason is Reason.RULE

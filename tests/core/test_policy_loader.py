"""Loading and validating policies: the model that comes out, and every mistake a
technician can make, each reported with its file, its line and a sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Action, Audience, Decrypt, UntrustedClients
from tests.conftest import ROOT, copy_policy

EXAMPLE = ROOT / "policies" / "school.yaml"
TEST_POLICY = ROOT / "tests" / "data" / "policy" / "school.yaml"


# --------------------------------------------------------------------------- helpers


def edit(path: Path, *changes: tuple[str, str]) -> Path:
    """Apply text replacements to a policy file; each `old` must occur exactly once."""
    text = path.read_text()
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} should occur once in {path}"
        text = text.replace(old, new)
    path.write_text(text)
    return path


def edited(tmp_path: Path, *changes: tuple[str, str]) -> Path:
    """A copy of the test policy (with its lists) with `changes` applied."""
    return edit(copy_policy(tmp_path), *changes)


def example_copy(tmp_path: Path, *changes: tuple[str, str]) -> Path:
    """The example policy beside links to its real lists and phrases, with `changes` applied."""
    for folder in ("lists", "phrases", "checks"):
        (tmp_path / folder).symlink_to(ROOT / "policies" / folder, target_is_directory=True)
    (tmp_path / "os-eol.yaml").symlink_to(ROOT / "policies" / "os-eol.yaml")
    path = tmp_path / "school.yaml"
    path.write_text(EXAMPLE.read_text())
    return edit(path, *changes)


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of the only line containing `needle`."""
    hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits} of {path}"
    return hits[0]


def problems(path: Path) -> list[tuple[str, int, str]]:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    found = [(w.file, w.line, message) for w, message in info.value.problems]
    assert found, "a PolicyError must list at least one problem"
    # The exception text carries every problem as "file, line N: message".
    for file, line, message in found:
        assert f"{file}, line {line}: {message}" in str(info.value)
    return found


def the_problem(path: Path) -> tuple[str, int, str]:
    found = problems(path)
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- good policies


def test_example_policy_loads_with_its_profiles_and_calendar() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.school == "Oakfield Primary School"
    assert policy.timezone.key == "Europe/London"
    assert set(policy.profiles) == {"guest", "staff", "ks2", "early_years"}
    assert [t.name for t in policy.terms] == ["Autumn 2026", "Spring 2027", "Summer 2027"]
    # A closure written with only a start lasts that one day.
    inset = next(c for c in policy.closures if c.name == "INSET day")
    assert inset.start == inset.end
    assert set(policy.schedules) == {"lunch", "after_school", "not_a_school_day"}
    # "16:00-24:00" runs to the end of the day.
    after = policy.schedules["after_school"].times[0]
    assert (after.start.hour, after.end.hour, after.end.minute) == (16, 23, 59)
    assert "illegal" not in policy.categories
    assert policy.illegal.hosts == {"illegal-test.schoolgate.example"}
    assert policy.decryption.default is Decrypt.DECRYPT
    assert policy.decryption.host_only_categories == {"banking", "health"}
    assert policy.decryption.untrusted_clients is UntrustedClients.HOST_ONLY
    assert policy.identities.default_profile == "early_years"
    assert policy.identities.users["mrs.patel"] == "staff"
    # Group names are compared in lower case, in the order written.
    assert [p for _, p in policy.identities.groups] == ["staff", "ks2", "early_years"]
    assert policy.identities.groups[0][0] == "cn=staff,ou=groups,dc=oakfield,dc=local"
    # The most specific network comes first, whatever order the file uses.
    prefixes = [n.prefixlen for n, _ in policy.identities.networks]
    assert prefixes == sorted(prefixes, reverse=True)
    assert EXAMPLE.resolve() in policy.files


def test_test_policy_loads() -> None:
    policy = load_policy(TEST_POLICY)
    assert policy.school == "Test Primary"
    assert set(policy.profiles) == {"staff", "ks2", "early_years"}
    assert set(policy.categories) == {"adult", "social", "games", "banking"}
    assert policy.illegal.exact == {
        "illegal.test/exact.html": str(TEST_POLICY.parent / "lists/illegal/exact.txt")
    }
    assert [p for p, _ in policy.illegal.prefixes] == ["illegal.test/prefix/"]
    assert policy.illegal.hosts == {"illegal.test"}


def test_example_inheritance_puts_own_rules_first_then_parents() -> None:
    profiles = load_policy(EXAMPLE).profiles
    early = profiles["early_years"]
    assert early.extends == "ks2"
    assert [(r.profile, r.index) for r in early.rules] == [
        ("early_years", 1),
        ("ks2", 1),
        ("ks2", 2),
        ("guest", 1),
    ]
    assert [r.name for r in early.rules] == [
        "Too much for the youngest",
        "Sites the school uses in lessons",
        "Not for pupils",
        "Harmful and illegal-adjacent content, for everyone",
    ]
    # The inherited rules are the parent's own objects (same place in the file).
    assert early.rules[1:] == profiles["ks2"].rules
    assert profiles["ks2"].rules[2:] == profiles["guest"].rules
    assert [r.profile for r in profiles["staff"].rules] == ["staff", "staff", "guest"]
    first = early.rules[0]
    assert first.action is Action.BLOCK and first.categories == {"streaming", "games"}
    assert first.where.file == str(EXAMPLE.resolve())
    assert first.where.line == line_of(EXAMPLE, "Too much for the youngest")
    lessons = profiles["ks2"].rules[0]
    assert lessons.action is Action.ALLOW
    assert "bbc.co.uk" in lessons.domains
    assert lessons.urls == ("youtube.com/@bbcteach",)
    lunch = profiles["staff"].rules[0]
    assert lunch.when == ("lunch", "after_school", "not_a_school_day")


def test_example_bare_ip_and_unblock_defaults_follow_the_audience() -> None:
    profiles = load_policy(EXAMPLE).profiles
    assert {n: p.audience for n, p in profiles.items()} == {
        "guest": Audience.GUEST,
        "staff": Audience.STAFF,
        "ks2": Audience.LEARNER,
        "early_years": Audience.LEARNER,
    }
    # Learners extend the guest profile but do not inherit its bare-IP allowance.
    assert profiles["guest"].bare_ip is Action.ALLOW
    assert profiles["staff"].bare_ip is Action.ALLOW
    assert profiles["ks2"].bare_ip is Action.BLOCK
    assert profiles["early_years"].bare_ip is Action.BLOCK
    assert profiles["staff"].may_request_unblock is True
    assert profiles["ks2"].may_request_unblock is False
    assert profiles["guest"].may_request_unblock is False
    assert all(p.default is Action.ALLOW for p in profiles.values())


def test_audience_and_bare_ip_are_inherited_unless_set(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        (
            "profiles:\n",
            "profiles:\n"
            "  club:\n"  # no audience: a learner, like ks2
            "    extends: ks2\n"
            "  supply:\n"  # no audience: staff, like staff
            "    extends: staff\n"
            "  locked_staff:\n"
            "    audience: staff\n"
            "    bare_ip: block\n"
            "  locked_staff_child:\n"  # inherits the block within one audience
            "    extends: locked_staff\n"
            "  open_learner:\n"
            "    audience: learner\n"
            "    bare_ip: allow\n"
            "  pupil_of_staff:\n"  # a learner extending staff: learner safe default again
            "    audience: learner\n"
            "    extends: staff\n",
        ),
    )
    profiles = load_policy(path).profiles
    assert profiles["club"].audience is Audience.LEARNER
    assert profiles["club"].bare_ip is Action.BLOCK
    assert profiles["club"].rules == profiles["ks2"].rules
    assert profiles["supply"].audience is Audience.STAFF
    assert profiles["supply"].bare_ip is Action.ALLOW
    assert profiles["supply"].may_request_unblock is True
    assert profiles["locked_staff"].bare_ip is Action.BLOCK
    assert profiles["locked_staff_child"].bare_ip is Action.BLOCK
    assert profiles["open_learner"].bare_ip is Action.ALLOW
    assert profiles["pupil_of_staff"].bare_ip is Action.BLOCK
    assert profiles["pupil_of_staff"].may_request_unblock is False
    # Test policy: staff and learners by audience.
    assert profiles["staff"].bare_ip is Action.ALLOW
    assert profiles["ks2"].bare_ip is Action.BLOCK
    assert profiles["early_years"].bare_ip is Action.BLOCK


# --------------------------------------------------------------------------- default profile


def test_default_profile_omitted_is_the_strictest_learner() -> None:
    # early_years blocks games as well as everything ks2 blocks.
    assert load_policy(TEST_POLICY).identities.default_profile == "early_years"


def test_default_profile_as_stated(tmp_path: Path) -> None:
    path = edited(tmp_path, ("identities:\n", "identities:\n  default_profile: ks2\n"))
    assert load_policy(path).identities.default_profile == "ks2"


def test_strictest_learner_prefers_default_block_and_ignores_other_audiences(
    tmp_path: Path,
) -> None:
    path = edited(
        tmp_path,
        (
            "profiles:\n",
            "profiles:\n"
            "  walled_garden:\n"
            "    audience: learner\n"
            "    default: block\n"
            "    rules:\n"
            "      - allow: {domains: [school.test]}\n"
            "  kiosk:\n"  # blocks more than anyone, but is not a learner profile
            "    audience: guest\n"
            "    default: block\n"
            "    rules:\n"
            "      - block: [adult, social, games, banking]\n",
        ),
    )
    assert load_policy(path).identities.default_profile == "walled_garden"


def test_example_default_profile_stated_or_omitted_is_early_years(tmp_path: Path) -> None:
    path = example_copy(tmp_path, ("  default_profile: early_years\n", ""))
    policy = load_policy(path)
    assert policy.identities.default_profile == "early_years"


# --------------------------------------------------------------------------- mistakes


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = edited(tmp_path, ("  name: Test Primary", "  name: Test: Primary"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "name: Test: Primary"))
    assert "not valid YAML" in message


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = edited(tmp_path, ("    term: school_days\n", "    term: school_days\n    term: any\n"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "term: any"))
    assert "'term' is given twice" in message


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    file, line, message = the_problem(path)
    assert file == str(path) and "empty" in message


def test_unknown_top_level_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = edited(tmp_path, ("decryption:\n", "decryptoin:\n"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "decryptoin:"))
    assert "'decryptoin' is not a setting of the policy" in message
    assert "Did you mean 'decryption'?" in message


def test_unknown_category_in_a_rule_suggests_the_right_one(tmp_path: Path) -> None:
    path = edited(tmp_path, ("block: [games]", "block: [gmaes]"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "block: [gmaes]"))
    assert "category 'gmaes' is not defined under 'categories:'" in message
    assert "Did you mean 'games'?" in message


def test_unknown_schedule_in_when(tmp_path: Path) -> None:
    path = edited(tmp_path, ("when: [lunch]", "when: [lunchtime]"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "when: [lunchtime]"))
    assert "schedule 'lunchtime' is not defined under 'schedules:'" in message


def test_missing_list_file_names_the_path(tmp_path: Path) -> None:
    path = edited(tmp_path, ("lists/bank.txt", "lists/banks-uk.txt"))
    missing = path.parent / "lists" / "banks-uk.txt"
    found = problems(path)
    file, line, message = found[0]
    assert (file, line) == (str(path), line_of(path, "lists/banks-uk.txt"))
    assert "'lists/banks-uk.txt' does not exist" in message
    assert str(missing) in message


def test_missing_illegal_list_names_the_path(tmp_path: Path) -> None:
    path = edited(tmp_path, ("lists/illegal/prefix.txt", "lists/illegal/ctiru.txt"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "lists/illegal/ctiru.txt"))
    assert str(path.parent / "lists" / "illegal" / "ctiru.txt") in message


def test_ut1_source_must_be_a_folder(tmp_path: Path) -> None:
    path = edited(tmp_path, ("[domains: lists/social.txt]", "[ut1: lists/social.txt]"))
    file, line, message = problems(path)[0]
    assert (file, line) == (str(path), line_of(path, "ut1: lists/social.txt"))
    assert "should be a folder" in message


def test_bad_url_in_a_list_names_the_list_file_and_line(tmp_path: Path) -> None:
    path = copy_policy(tmp_path)
    exact = path.parent / "lists" / "illegal" / "exact.txt"
    exact.write_text("# provider list\nhttp://illegal.test/exact.html\nhttp://exa mple/x\n")
    file, line, message = the_problem(path)
    assert (file, line) == (str(exact), 3)
    assert "'http://exa mple/x' is not a URL a browser could open" in message


def test_extending_an_unknown_profile(tmp_path: Path) -> None:
    path = edited(tmp_path, ("extends: ks2", "extends: key_stage_2"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "extends: key_stage_2"))
    assert "'early_years' extends 'key_stage_2', which is not defined" in message


def test_a_cycle_of_extends_is_reported_where_it_closes(tmp_path: Path) -> None:
    path = edited(tmp_path, ("    label: KS2\n", "    label: KS2\n    extends: early_years\n"))
    found = problems(path)
    circles = {(f, n) for f, n, m in found if "extend each other in a circle" in m}
    assert circles == {
        (str(path), line_of(path, "extends: early_years")),
        (str(path), line_of(path, "extends: ks2")),
    }


def test_a_profile_extending_itself(tmp_path: Path) -> None:
    path = edited(tmp_path, ("    audience: staff\n", "    audience: staff\n    extends: staff\n"))
    found = problems(path)
    assert (str(path), line_of(path, "extends: staff")) in {(f, n) for f, n, _ in found}
    assert any("in a circle: staff" in m for _, _, m in found)


def test_bad_cidr(tmp_path: Path) -> None:
    path = edited(tmp_path, ("10.20.0.0/24", "10.20.0.0/33"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "10.20.0.0/33"))
    assert "'10.20.0.0/33' is not a network; write it like" in message


def test_identity_mapped_to_an_unknown_profile(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        (
            "  users: {teacher: staff, teacher2: staff, dsl: staff, deputy: staff, tech: staff,"
            " pupil: ks2, pupil2: ks2}",
            "  users:\n    teacher: staff\n    pupil: ks9",
        ),
    )
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "pupil: ks9"))
    assert "'ks9' is not a profile defined under 'profiles:'" in message


def test_default_profile_that_does_not_exist(tmp_path: Path) -> None:
    path = edited(tmp_path, ("identities:\n", "identities:\n  default_profile: reception\n"))
    found = problems(path)
    assert (str(path), line_of(path, "default_profile: reception")) == found[0][:2]
    assert "'reception' is not a profile" in found[0][2]


def test_time_range_ending_before_it_starts(tmp_path: Path) -> None:
    path = edited(tmp_path, ('"12:00-13:00"', '"13:00-12:00"'))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, '"13:00-12:00"'))
    assert "'13:00-12:00' ends before it starts" in message


@pytest.mark.parametrize(
    ("written", "words"),
    [("12:00-25:00", "impossible time"), ("noon-1pm", "not a time range")],
)
def test_malformed_time_ranges(tmp_path: Path, written: str, words: str) -> None:
    path = edited(tmp_path, ('"12:00-13:00"', f'"{written}"'))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, written))
    assert words in message


def test_bad_timezone(tmp_path: Path) -> None:
    path = edited(tmp_path, ("Europe/London", "Europe/Londn"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "Europe/Londn"))
    assert "'Europe/Londn' is not a time zone" in message


def test_term_ending_before_it_starts(tmp_path: Path) -> None:
    path = edited(tmp_path, ("end: 2027-12-31", "end: 2025-12-31"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "name: Whole year"))
    assert "the term 'Whole year' ends (2025-12-31) before it starts (2026-01-01)" in message


def test_closure_ending_before_it_starts(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        (
            "schedules:\n",
            "  closures:\n    - {name: Half term, start: 2026-10-30, end: 2026-10-26}\n"
            "schedules:\n",
        ),
    )
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "name: Half term"))
    assert "the closure 'Half term' ends" in message


def test_rule_with_both_allow_and_block(tmp_path: Path) -> None:
    path = edited(
        tmp_path, ("      - block: [games]", "      - block: [games]\n        allow: [social]")
    )
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "- block: [games]"))
    assert "either 'allow:' or 'block:' (exactly one)" in message


def test_rule_that_covers_nothing(tmp_path: Path) -> None:
    path = edited(tmp_path, ("      - block: [games]", "      - block: {domains: []}"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "- block: {domains: []}"))
    assert "covers nothing" in message


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        ("Europe/London", "Mars/Olympus_Mons"),
        ("10.20.0.0/24", "10.20.0/24x"),
        ("block: [games]", "block: [gmaes]"),
        ('"12:00-13:00"', '"13:00-12:00"'),
    )
    found = problems(path)
    places = {n for _, n, _ in found}
    assert places == {
        line_of(path, "Mars/Olympus_Mons"),
        line_of(path, "10.20.0/24x"),
        line_of(path, "block: [gmaes]"),
        line_of(path, '"13:00-12:00"'),
    }
    assert len(found) == 4
    assert all(file == str(path) for file, _, _ in found)
    with pytest.raises(PolicyError, match=r"^4 problem\(s\) in the policy:"):
        load_policy(path)


# --------------------------------------------------------------------------- the illegal tier


@pytest.mark.parametrize("name", ["illegal", "Illegal"])
def test_a_category_named_illegal_is_refused(tmp_path: Path, name: str) -> None:
    path = edited(
        tmp_path,
        (
            "  social: {",
            f"  {name}: {{label: Mine, sources: [domains: lists/bank.txt]}}\n  social: {{",
        ),
    )
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, f"{name}: {{label: Mine"))
    assert "reserved for the illegal tier" in message


def test_a_rule_naming_the_illegal_tier_is_refused(tmp_path: Path) -> None:
    path = edited(tmp_path, ("      - allow: [social]", "      - allow: [social, illegal]"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "allow: [social, illegal]"))
    assert "cannot name the illegal tier" in message


def test_a_profile_illegal_key_is_refused(tmp_path: Path) -> None:
    path = edited(tmp_path, ("    extends: ks2\n", "    extends: ks2\n    illegal: off\n"))
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "illegal: off"))
    assert "the illegal tier cannot be changed or turned off" in message


@pytest.mark.parametrize("domain", ["illegal.test", "ILLEGAL.test.", "test"])
def test_an_allow_rule_whose_domains_cover_an_illegal_host_is_refused(
    tmp_path: Path, domain: str
) -> None:
    path = edited(
        tmp_path, ("domains: [allowed-ip-site.test]", f"domains: [allowed-ip-site.test, {domain}]")
    )
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "- allow: {domains: [allowed-ip-site.test,"))
    assert "illegal tier" in message and "cannot be overridden" in message


@pytest.mark.parametrize(
    "url",
    [
        "http://illegal.test/exact.html",
        "https://ILLEGAL.TEST/exact.html",
        "illegal.test/prefix/",
        "illegal.test/prefix/deeper/page.html",  # inside a prefix entry
        # Spellings the illegal tier matches (canonical.match_key, case folded).
        "illegal.test/EXACT.html",
        "illegal.test//prefix;x/",
        "illegal.test/Prefix",
    ],
)
def test_an_allow_rule_with_an_illegal_url_is_refused(tmp_path: Path, url: str) -> None:
    path = edited(
        tmp_path,
        ("      - allow: [social]\n", f"      - allow: {{urls: ['{url}']}}\n"),
    )
    file, line, message = the_problem(path)
    assert (file, line) == (str(path), line_of(path, f"- allow: {{urls: ['{url}']}}"))
    assert "cannot be overridden" in message


def test_an_allow_rule_for_an_unlisted_page_on_an_illegal_host_is_accepted(
    tmp_path: Path,
) -> None:
    path = edited(
        tmp_path, ("      - allow: [social]\n", "      - allow: {urls: [illegal.test/about]}\n")
    )
    rule = load_policy(path).profiles["staff"].rules[0]
    assert rule.urls == ("illegal.test/about",)


def test_block_rules_on_illegal_hosts_are_fine(tmp_path: Path) -> None:
    path = edited(tmp_path, ("      - block: [games]", "      - block: {domains: [illegal.test]}"))
    assert load_policy(path).profiles["early_years"].rules[0].domains == {"illegal.test"}


def test_host_only_decryption_of_an_illegal_host_is_refused(tmp_path: Path) -> None:
    path = edited(
        tmp_path, ("host_only: {categories: [banking]}", "host_only: {domains: [illegal.test]}")
    )
    found = problems(path)
    assert len(found) == 1
    _, _, message = found[0]
    assert "'illegal.test' has illegal-tier entries, so it must be decrypted" in message
    assert "remove it from decryption.host_only" in message


def test_host_only_decryption_of_a_parent_of_an_illegal_host_is_refused(tmp_path: Path) -> None:
    path = edited(tmp_path, ("host_only: {categories: [banking]}", "host_only: {domains: [test]}"))
    _, _, message = the_problem(path)
    assert "'illegal.test' has illegal-tier entries" in message


def test_host_only_decryption_problem_points_at_the_policy_line(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        ("host_only: {categories: [banking]}", "host_only:\n    domains: [illegal.test]"),
    )
    file, line, _ = the_problem(path)
    assert (file, line) == (str(path), line_of(path, "domains: [illegal.test]"))

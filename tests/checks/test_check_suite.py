"""The check suite: reading it (with file and line for mistakes) and judging observations."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.check_suite import (
    CheckCase,
    Expect,
    Observation,
    Outcome,
    block_sign,
    classify,
    observe_error,
    observe_response,
    safe_search_seen,
)
from proxy_addons.core.policy.check_suite_file import SuiteError, load_suite, suite_problems
from proxy_addons.core.policy.load import load_policy
from proxy_addons.pages.blockpage import BlockPageContext, render_block_page

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name: Small suite
cases:
  - id: adult-1
    url: http://adult.test/
    category: adult
    expect: blocked
  - id: edu-1
    url: https://www.bbc.co.uk/bitesize
    category: educational
    expect: allowed
    profiles: [ks2]
    note: Over-blocking  fails too
  - id: search-1
    url: https://www.google.com/search?q=test
    category: safe_search
    expect: safe_search
    profiles: ks2
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_a_suite_loads_with_its_cases_and_profiles(tmp_path: Path) -> None:
    suite = load_suite(_write(tmp_path, GOOD))
    assert suite.name == "Small suite"
    assert [c.id for c in suite.cases] == ["adult-1", "edu-1", "search-1"]
    assert suite.cases[0].profiles == frozenset()
    assert suite.cases[1].profiles == frozenset({"ks2"})
    assert suite.cases[1].note == "Over-blocking fails too"
    assert suite.cases[2].expect is Expect.SAFE_SEARCH
    assert [c.id for c in suite.cases_for("staff")] == ["adult-1"]
    assert [c.id for c in suite.cases_for("ks2")] == ["adult-1", "edu-1", "search-1"]
    assert suite.case("edu-1") is suite.cases[1]
    assert suite.cases[1].where is not None and suite.cases[1].where.line == 7


def test_mistakes_are_named_with_file_and_line(tmp_path: Path) -> None:
    text = GOOD.replace("expect: allowed", "expect: permitted").replace(
        "url: http://adult.test/", "url: adult.test"
    )
    text += "  - id: search-1\n    url: http://x.test/\n    category: x\n    expect: blocked\n"
    path = _write(tmp_path, text)
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    messages = {(w.line, m.split(" ")[0]) for w, m in err.value.problems}
    assert (4, "'adult.test'") in messages
    assert (10, "expect") in messages
    assert any("used twice" in m and w.line == 18 for w, m in err.value.problems)
    assert str(path) in str(err.value)


def test_broken_yaml_and_unknown_keys_are_reported(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="line 3"):
        load_suite(_write(tmp_path, "name: x\ncases: [\n"))
    with pytest.raises(SuiteError, match="'expected' is not a setting of a case"):
        load_suite(
            _write(
                tmp_path,
                "name: x\ncases:\n  - {id: a, url: 'http://a.test/', category: c, expected: x}\n",
            )
        )


def test_suite_profiles_are_checked_against_the_policy(tmp_path: Path) -> None:
    suite = load_suite(_write(tmp_path, GOOD.replace("[ks2]", "[ks2, year7]")))
    problems = suite_problems(suite, {"ks2", "staff"})
    assert len(problems) == 1 and "'year7'" in problems[0][1]


def _page(illegal: bool) -> str:
    from datetime import UTC, datetime

    return render_block_page(
        BlockPageContext(
            school="Test",
            reference="SG-7K3Q-M2XD",
            host="adult.test",
            url="http://adult.test/",
            reason="Adult content",
            category_label="Adult content",
            at=datetime(2026, 11, 25, 12, tzinfo=UTC),
            portal="http://schoolgate.local",
            illegal=illegal,
        )
    )


def test_the_block_pages_are_recognised_with_or_without_the_header() -> None:
    for illegal in (False, True):
        body = _page(illegal)
        assert block_sign(403, {"x-schoolgate-reference": "SG-7K3Q-M2XD"}, body) == (
            True,
            "SG-7K3Q-M2XD",
        )
        assert block_sign(403, {}, body) == (True, "SG-7K3Q-M2XD")  # headers unreadable
    refusal = "Blocked by the school's web filter (reference SG-BBBB-CCCC).\n"
    assert block_sign(403, {}, refusal) == (True, "SG-BBBB-CCCC")
    # A site's own 403, or a 200 quoting a reference, is not the school's block.
    assert block_sign(403, {}, "<title>Forbidden</title>") == (False, None)
    assert block_sign(200, {}, _page(False)) == (False, None)


def test_observations_and_verdicts() -> None:
    blocked_case = CheckCase("a", "http://adult.test/", "adult", frozenset(), Expect.BLOCKED)
    allowed_case = CheckCase("e", "http://edu.test/", "educational", frozenset(), Expect.ALLOWED)
    block = observe_response("http://adult.test/", 403, {}, _page(False))
    page = observe_response("http://edu.test/", 200, {}, b"hello")
    assert block.blocked and block.block_reference == "SG-7K3Q-M2XD"
    assert "403 block page SG-7K3Q-M2XD" == block.evidence
    assert classify(blocked_case, block) is Outcome.PASS
    assert classify(blocked_case, page) is Outcome.FAIL
    assert classify(allowed_case, page) is Outcome.PASS
    assert classify(allowed_case, block) is Outcome.FAIL  # over-blocking fails
    timeout = observe_error("timed out after 10 s")
    assert timeout.error and not timeout.blocked
    assert classify(blocked_case, timeout) is Outcome.ERROR
    assert classify(allowed_case, timeout) is Outcome.ERROR
    refused = observe_error("[SSL: TLSV1_ALERT_ACCESS_DENIED] tlsv1 alert access denied")
    assert refused.blocked and refused.error is None
    assert classify(blocked_case, refused) is Outcome.PASS
    assert classify(allowed_case, observe_response("http://edu.test/", 502, {}, "")) is (
        Outcome.ERROR
    )
    # A proxy sign-in prompt is not the page: nothing about the filter is known.
    sign_in = observe_response("http://edu.test/", 407, {}, "Proxy Authentication Required")
    assert sign_in.error and classify(allowed_case, sign_in) is Outcome.ERROR


def test_safe_search_is_seen_from_the_engine_answer() -> None:
    case = CheckCase(
        "s", "https://www.google.com/search?q=x", "ss", frozenset(), Expect.SAFE_SEARCH
    )
    echoed = '{"host": "www.google.com", "path": "/search?q=x&safe=active"}'
    plain = '{"host": "www.google.com", "path": "/search?q=x"}'
    on = observe_response(case.url, 200, {}, echoed)
    off = observe_response(case.url, 200, {}, plain)
    assert on.safe_search is True and classify(case, on) is Outcome.PASS
    assert off.safe_search is False and classify(case, off) is Outcome.FAIL
    assert safe_search_seen("https://www.bing.com/search?q=x&adlt=strict", {}, "") is True
    assert safe_search_seen("https://strict.bing.com/search?q=x", {}, "") is True
    assert safe_search_seen("https://example.test/", {}, "safe=active") is None
    assert safe_search_seen("https://example.test/", {"X-Schoolgate-Safe-Search": "on"}, "")
    # Not a search engine at all: nothing can be judged.
    other = observe_response("https://example.test/", 200, {}, "")
    assert classify(case, other) is Outcome.ERROR
    assert classify(case, observe_response(case.url, 403, {}, _page(False))) is Outcome.PASS


def test_observations_travel_as_json() -> None:
    obs = observe_response("http://adult.test/", 403, {}, _page(False))
    assert Observation.from_json(obs.to_json()) == obs
    with pytest.raises(ValueError):
        Observation.from_json({"status": "200", "blocked": False})
    with pytest.raises(ValueError):
        Observation.from_json({"status": 200, "blocked": "yes"})


def test_the_shipped_suite_loads_and_fits_the_example_policy() -> None:
    suite = load_suite(ROOT / "policies" / "checks" / "termly.yaml")
    policy = load_policy(ROOT / "policies" / "school.yaml")
    assert suite_problems(suite, set(policy.profiles)) == []
    categories = set(suite.categories)
    # The four SWGfL Test Filtering categories, circumvention, safe search, over-blocking.
    assert {
        "child_sexual_abuse",
        "terrorism",
        "adult",
        "offensive_language",
        "circumvention",
        "safe_search",
        "educational",
    } <= categories
    # A canary for every category the example policy blocks for learners.
    learner_blocks = {
        c
        for p in policy.profiles.values()
        if p.audience.value == "learner"
        for r in p.rules
        if r.action.value == "block" and not r.when
        for c in r.categories
    }
    assert learner_blocks <= categories, learner_blocks - categories
    # The illegal-tier cases are the test entries in the example provider lists.
    illegal_urls = {c.url for c in suite.cases if c.category in ("child_sexual_abuse", "terrorism")}
    assert "http://illegal-test.schoolgate.example/iwf-test-entry.html" in illegal_urls
    circumvention = [c for c in suite.cases if c.category == "circumvention"]
    assert len(circumvention) >= 3


def test_the_shipped_suite_expects_what_the_example_policy_decides(tmp_path: Path) -> None:
    """Each canary is really on a list the example policy loads, and each expectation is
    what `decide()` (the gateway's own decision) gives that profile, on a school day in
    lesson time. Safe search is the safe-search add-on's, tried end to end elsewhere."""
    from datetime import datetime

    from proxy_addons.core.decide import Identity, Request, decide
    from proxy_addons.core.hosts import canonical_url
    from proxy_addons.core.policy.standalone import load_all

    loaded = load_all(ROOT / "policies" / "school.yaml", tmp_path / "index")
    policy = loaded.policy
    assert policy.checks.suite is not None
    suite = load_suite(policy.checks.suite)
    at = datetime(2026, 11, 25, 10, 30, tzinfo=policy.timezone)  # a Wednesday lesson
    wrong = []
    tried = 0
    for profile in policy.profiles:
        for case in suite.cases_for(profile):
            if case.expect is Expect.SAFE_SEARCH:
                continue
            url = canonical_url(case.url)
            path = url.path + (f"?{url.query}" if url.query else "")
            request = Request(url.host, path, url.scheme)
            decision = decide(policy, loaded.index, Identity(check_profile=profile), request, at)
            tried += 1
            if decision.blocked != (case.expect is Expect.BLOCKED):
                wrong.append((profile, case.id, decision.reason.value, decision.category))
    assert wrong == []
    assert tried > 100

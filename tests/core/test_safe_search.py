"""safe_search.py: the rewrite each engine gets, steering targets, the engines blocked."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_addons.core import safe_search as ss
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import SafeSearch
from tests.conftest import copy_policy

STRICT, MODERATE, OFF = SafeSearch.STRICT, SafeSearch.MODERATE, SafeSearch.OFF


@pytest.mark.parametrize(
    ("host", "query", "mode", "want"),
    [
        ("www.google.com", "q=cats&safe=off", STRICT, "q=cats&safe=active"),
        ("www.google.co.uk", "q=cats&tbm=isch", STRICT, "q=cats&tbm=isch&safe=active"),
        ("google.de", "", MODERATE, "safe=active"),
        ("www.bing.com", "q=cats&adlt=off", STRICT, "q=cats&adlt=strict"),
        ("www.bing.com", "q=cats", MODERATE, "q=cats&adlt=moderate"),
        ("duckduckgo.com", "q=cats&kp=-2", STRICT, "q=cats&kp=1"),
        ("html.duckduckgo.com", "q=cats", MODERATE, "q=cats&kp=-1"),
    ],
)
def test_each_engine_gets_its_parameter(host: str, query: str, mode: SafeSearch, want: str) -> None:
    change = ss.rewrite(host, query, mode)
    assert change is not None and change.query == want and change.header is None


@pytest.mark.parametrize(("mode", "value"), [(STRICT, "Strict"), (MODERATE, "Moderate")])
def test_youtube_gets_the_restrict_header_not_a_parameter(mode: SafeSearch, value: str) -> None:
    for host in ("www.youtube.com", "m.youtube.com", "youtubei.googleapis.com"):
        change = ss.rewrite(host, "search_query=cats", mode)
        assert change is not None
        assert change.header == ("YouTube-Restrict", value) and change.query is None


@pytest.mark.parametrize(
    "host", ["mail.google.com", "docs.google.com", "example.com", "bing.com.evil.test"]
)
def test_other_hosts_and_off_are_left_alone(host: str) -> None:
    assert ss.rewrite(host, "q=x&safe=off", STRICT) is None
    assert ss.rewrite("www.google.com", "q=x&safe=off", OFF) is None


@pytest.mark.parametrize(
    "contrary", ["safe=off", "SAFE=off", "s%61fe=off", "safe", "safe=", "safe=off&safe=images"]
)
def test_the_users_own_spelling_of_the_parameter_never_survives(contrary: str) -> None:
    change = ss.rewrite("www.google.com", f"q=x&{contrary}&hl=en", STRICT)
    assert change is not None and change.query == "q=x&hl=en&safe=active"


_pairs = st.lists(
    st.tuples(
        st.sampled_from(["q", "safe", "SAFE", "adlt", "kp", "hl", "x", "s%61fe", "Kp"]),
        st.text(alphabet="abcXYZ019-=%+ ", max_size=6),
    ),
    max_size=8,
)


@given(
    pairs=_pairs,
    host=st.sampled_from(["www.google.com", "www.bing.com", "duckduckgo.com"]),
    mode=st.sampled_from([STRICT, MODERATE]),
)
def test_rewriting_is_idempotent_enforces_once_and_keeps_the_rest(
    pairs: list[tuple[str, str]], host: str, mode: SafeSearch
) -> None:
    query = "&".join(f"{k}={quote(v, safe='=%+')}" for k, v in pairs)
    first = ss.rewrite(host, query, mode)
    assert first is not None and first.query is not None
    again = ss.rewrite(host, first.query, mode)
    assert again is not None and again.query == first.query  # idempotent
    name, value = ss._PARAMS[(ss.engine_for_host(host), mode)]  # type: ignore[index]
    seen = [(k.lower(), v) for k, v in parse_qsl(first.query, keep_blank_values=True)]
    assert [v for k, v in seen if k == name] == [value]  # exactly once, the enforced value
    others = [p for p in query.split("&") if p and ss._param_name(p) != name]
    assert first.query.split("&")[:-1] == others  # everything else as sent, in order


@pytest.mark.parametrize(
    ("host", "mode", "target"),
    [
        ("www.google.com", STRICT, "forcesafesearch.google.com"),
        ("www.google.co.uk", MODERATE, "forcesafesearch.google.com"),
        ("www.bing.com", STRICT, "strict.bing.com"),
        ("duckduckgo.com", STRICT, "safe.duckduckgo.com"),
        ("www.youtube.com", STRICT, "restrict.youtube.com"),
        ("m.youtube.com", MODERATE, "restrictmoderate.youtube.com"),
        ("www.youtube.com", OFF, None),
        ("example.com", STRICT, None),
    ],
)
def test_host_only_traffic_is_steered_to_the_enforced_endpoint(
    host: str, mode: SafeSearch, target: str | None
) -> None:
    assert ss.steer_target(host, mode) == target


def test_engine_hosts_without_an_endpoint_are_refused_when_not_decrypted() -> None:
    for host in ("cn.bing.com", "html.duckduckgo.com", "lite.duckduckgo.com"):
        assert ss.steer_target(host, STRICT) is None
        assert ss.refuse_host_only(host, STRICT)
        assert not ss.refuse_host_only(host, OFF)
    assert not ss.refuse_host_only("www.bing.com", STRICT)
    assert not ss.refuse_host_only("example.com", STRICT)


def test_engines_without_safe_search_are_recognised_with_their_subdomains() -> None:
    assert ss.unsafe_engine("yandex.com") == "yandex.com"
    assert ss.unsafe_engine("www.startpage.com") == "startpage.com"
    assert ss.unsafe_engine("uk.search.yahoo.com") == "search.yahoo.com"
    for host in ("yahoo.com", "mail.yahoo.com", "www.google.com", "notyandex.com"):
        assert ss.unsafe_engine(host) is None
    # The four engines handled by rewriting are never on the list.
    for host in ("www.google.com", "www.bing.com", "duckduckgo.com", "www.youtube.com"):
        assert ss.engine_for_host(host) is not None and ss.unsafe_engine(host) is None


# -- the policy setting ----------------------------------------------------------------------


def _policy_with(tmp_path: Path, old: str, new: str) -> Path:
    policy = copy_policy(tmp_path)
    text = policy.read_text()
    assert old in text
    policy.write_text(text.replace(old, new, 1))
    return policy


def test_defaults_strict_for_learners_moderate_for_staff_inherited_within_an_audience(
    tmp_path: Path,
) -> None:
    policy = load_policy(
        _policy_with(
            tmp_path, "    audience: learner\n", "    audience: learner\n    safe_search: off\n"
        )
    )
    profiles = policy.profiles
    assert profiles["staff"].safe_search is MODERATE
    assert profiles["ks2"].safe_search is OFF
    assert profiles["early_years"].safe_search is OFF  # extends ks2, one audience: inherited


def test_untouched_policy_has_the_defaults(tmp_path: Path) -> None:
    profiles = load_policy(copy_policy(tmp_path)).profiles
    assert profiles["ks2"].safe_search is STRICT and profiles["early_years"].safe_search is STRICT
    assert profiles["staff"].safe_search is MODERATE


def test_a_bad_value_names_the_file_line_and_setting(tmp_path: Path) -> None:
    path = _policy_with(
        tmp_path, "    audience: learner\n", "    audience: learner\n    safe_search: maybe\n"
    )
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    [(where, message)] = err.value.problems
    lines = path.read_text().splitlines()
    assert where.file == str(path) and "safe_search: maybe" in lines[where.line - 1]
    assert "safe_search should be strict, moderate or off, not 'maybe'" in message

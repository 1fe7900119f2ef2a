"""`schoolgate policy check` and `schoolgate policy explain`, called as the technician would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy_addons.cli.main import main
from tests.conftest import ROOT, copy_policy

EXAMPLE = ROOT / "policies" / "school.yaml"
EXAMPLE_LISTS = ROOT / "policies" / "lists"


@pytest.fixture(scope="module")
def var(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state folder for the module, so the example's list index is built once."""
    return tmp_path_factory.mktemp("var")


def explain(var: Path, url: str, *args: str, policy: Path = EXAMPLE) -> list[str]:
    return ["policy", "explain", url, "--policy", str(policy), "--var", str(var), *args]


# --------------------------------------------------------------------------- check


def test_check_example_policy_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"{EXAMPLE.resolve()}: OK: 4 profiles, 25 categories")
    assert "default profile 'early_years'" in last
    assert "illegal tier: 1 exact, 1 prefix entries" in out
    assert "category social_networks" in out


def test_the_examples_tunnel_section_uncommented_checks_and_says_what_to_forward(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/offsite.md says: uncomment `devices.tunnel` in the example and set the name."""
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "lists").symlink_to(EXAMPLE_LISTS)
    for other in EXAMPLE.parent.iterdir():
        if other.name not in ("school.yaml", "lists"):
            (folder / other.name).symlink_to(other)
    text = EXAMPLE.read_text()
    block = re.search(r"^#  tunnel:\n(?:#    .*\n)+", text, re.M)
    assert block is not None, "the example policy shows a devices.tunnel section"
    opened = re.sub(r"^#", "", block.group(0), flags=re.M)
    (folder / "school.yaml").write_text(text.replace(block.group(0), opened))
    assert main(["policy", "check", str(folder / "school.yaml")]) == 0
    out = capsys.readouterr().out
    assert (
        "off-site tunnels: gateway.school.example:51820 (UDP, forward it on the router), "
        "pool 10.123.0.0/20 for 4093 devices, fail closed off site" in out
    )
    assert "devices.tunnel has no dns" not in out  # the example names its resolver
    (folder / "school.yaml").write_text(
        text.replace(block.group(0), re.sub(r"^  *dns: .*\n", "", opened, flags=re.M))
    )
    assert main(["policy", "check", str(folder / "school.yaml")]) == 0
    assert "warning: devices.tunnel has no dns" in capsys.readouterr().out


def test_check_broken_policy_prints_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy_policy(tmp_path)
    text = path.read_text()
    path.write_text(text.replace("10.20.0.0/24", "10.20.0.0/40").replace("[games]", "[gmaes]"))
    lines = path.read_text().splitlines()
    cidr_line = next(n for n, t in enumerate(lines, 1) if "10.20.0.0/40" in t)
    rule_line = next(n for n, t in enumerate(lines, 1) if "[gmaes]" in t)
    assert main(["policy", "check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "OK" not in out
    assert "2 problem(s) in the policy" in err
    assert f"{path}, line {cidr_line}: '10.20.0.0/40' is not a network" in err
    assert f"{path}, line {rule_line}: category 'gmaes' is not defined" in err
    assert "Did you mean 'games'?" in err


def test_check_invalid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy_policy(tmp_path)
    path.write_text(path.read_text().replace("  name: Test Primary", "  name: Test: Primary"))
    assert main(["policy", "check", str(path)]) == 1
    _, err = capsys.readouterr()
    assert f"{path}, line 3: this is not valid YAML" in err


def test_check_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["policy", "check", str(missing)]) == 1
    _, err = capsys.readouterr()
    assert str(missing) in err and "cannot read the file" in err


# --------------------------------------------------------------------------- explain


def test_explain_blocked_url(var: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 10.10.0.0/16 is the pupils' network (ks2): social networks are blocked.
    assert main(explain(var, "https://www.facebook.com/", "--ip", "10.10.3.7")) == 3
    out, _ = capsys.readouterr()
    assert "decision:  BLOCK (rule)" in out
    assert "profile:   ks2 (identified by network)" in out
    assert "rule:      ks2 rule 2 'Not for pupils'" in out
    assert f"({EXAMPLE.resolve()}, line " in out
    assert "category:  social_networks (Social networks)" in out
    assert f"list:      {EXAMPLE_LISTS / 'ut1' / 'social_networks' / 'domains'}" in out
    assert "entry:     facebook.com" in out


def test_explain_allowed_url(var: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(explain(var, "www.bbc.co.uk/bitesize", "--ip", "10.10.3.7")) == 0
    out, _ = capsys.readouterr()
    assert "decision:  ALLOW (rule)" in out
    assert "url:       https://www.bbc.co.uk/bitesize" in out
    assert "rule:      ks2 rule 1 'Sites the school uses in lessons'" in out
    assert "entry:     bbc.co.uk" in out


@pytest.mark.parametrize(
    "names, reason, host",
    [
        (("--host-header", "www.facebook.com"), "rule", "www.facebook.com"),
        (("--sni", "www.facebook.com"), "rule", "www.facebook.com"),
        (("--host-header", "plain.example"), "fronting", "www.bbc.co.uk"),
        (("--host-header", "bbc.co.uk:443", "--sni", "WWW.BBC.CO.UK."), None, "www.bbc.co.uk"),
    ],
)
def test_explain_decides_every_name_as_the_gateway_does(
    var: Path,
    capsys: pytest.CaptureFixture[str],
    names: tuple[str, ...],
    reason: str | None,
    host: str,
) -> None:
    code = main(explain(var, "www.bbc.co.uk/bitesize", "--ip", "10.10.3.7", *names))
    out, _ = capsys.readouterr()
    assert code == (3 if reason else 0)
    assert (f"decision:  BLOCK ({reason})" if reason else "decision:  ALLOW (rule)") in out
    assert f"host:      {host}" in out


def test_explain_refuses_a_host_header_the_gateway_would(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(explain(var, "www.bbc.co.uk/", "--host-header", "bbc.co.uk:#")) != 0
    assert "400" in capsys.readouterr().err


def test_explain_illegal_test_entry_blocks_staff(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://illegal-test.schoolgate.example/iwf-test-entry.html"
    assert main(explain(var, url, "--user", "mrs.patel")) == 3
    out, _ = capsys.readouterr()
    assert "decision:  BLOCK (illegal)" in out
    assert "profile:   staff (identified by user)" in out
    assert "entry:     illegal-test.schoolgate.example/iwf-test-entry.html" in out
    assert str(EXAMPLE_LISTS / "illegal" / "provider-exact.txt") in out


@pytest.mark.parametrize(
    ("at", "code", "decision", "rule"),
    [
        ("2026-11-25T12:30", 0, "ALLOW", "staff rule 1 'Personal use at lunch"),
        ("2026-11-25T13:15", 3, "BLOCK", "staff rule 2 'Not in lessons'"),
        ("2026-11-25T10:30", 3, "BLOCK", "staff rule 2 'Not in lessons'"),
        # Summer time: 11:30 UTC is 12:30 at school.
        ("2027-06-09T11:30+00:00", 0, "ALLOW", "staff rule 1"),
        # Half term is not a school day: personal use is allowed all day.
        ("2026-10-28T10:30", 0, "ALLOW", "staff rule 1"),
    ],
)
def test_explain_at_a_time_for_a_staff_laptop(
    var: Path,
    capsys: pytest.CaptureFixture[str],
    at: str,
    code: int,
    decision: str,
    rule: str,
) -> None:
    argv = explain(var, "https://www.facebook.com/", "--ip", "10.20.0.9", "--at", at)
    assert main(argv) == code
    out, _ = capsys.readouterr()
    assert f"decision:  {decision} (rule)" in out
    assert "profile:   staff (identified by network)" in out
    assert f"rule:      {rule}" in out
    assert "category:  social_networks" in out


def test_explain_at_is_read_in_the_school_time_zone(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(explain(var, "https://www.facebook.com/", "--ip", "10.20.0.9", "--at", "2027-06-09T12:30"))
    out, _ = capsys.readouterr()
    assert "at:        2027-06-09T12:30:00+01:00" in out


def test_explain_host_only(var: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = explain(var, "https://www.facebook.com/some/page", "--ip", "10.10.3.7", "--host-only")
    assert main(argv) == 3
    out, _ = capsys.readouterr()
    assert "url:" not in out
    assert "entry:     facebook.com" in out


def test_explain_with_a_broken_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy_policy(tmp_path)
    path.write_text(path.read_text().replace("Europe/London", "Europe/Nowhere"))
    assert main(explain(tmp_path / "var", "https://chatter.test/", policy=path)) == 1
    _, err = capsys.readouterr()
    assert "'Europe/Nowhere' is not a time zone" in err


def test_explain_rejects_a_url_no_browser_would_open(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = copy_policy(tmp_path)
    assert main(explain(tmp_path / "var", "https://exa mple.test/", policy=policy)) == 1
    _, err = capsys.readouterr()
    assert "would not accept" in err


# What the gateway's add-ons after the Filter do (circumvention, safe search) shows too.


def test_explain_shows_a_doh_request_blocked_as_circumvention(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://www.bbc.co.uk/dns-query?dns=AAABAAAB"  # an allowed site, a DoH request
    assert main(explain(var, url, "--ip", "10.10.3.7")) == 3
    out = capsys.readouterr().out
    assert "decision:  BLOCK (circumvention)" in out
    assert "built-in: DoH path" in out


def test_explain_shows_an_engine_without_safe_search_blocked(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(explain(var, "https://yandex.ru/search?text=x", "--ip", "10.10.3.7")) == 3
    out = capsys.readouterr().out
    assert "decision:  BLOCK (safe_search)" in out
    assert "Search engine without safe search" in out


def test_explain_shows_what_safe_search_does_to_an_allowed_search(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://www.google.com/search?q=volcano&safe=off"
    assert main(explain(var, url, "--ip", "10.10.3.7")) == 0
    out = capsys.readouterr().out
    assert "enforced:  safe search strict (google): query becomes ?q=volcano&safe=active" in out
    assert main(explain(var, "www.bing.com", "--host-only", "--ip", "10.10.3.7")) == 0
    assert "connected to strict.bing.com" in capsys.readouterr().out

"""Every option the gateway's add-ons declare can be given as text on the command line
(`--set name=value`), as mitmproxy parses it; durations in seconds too (option_types.py),
in a real mitmdump."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions, optmanager
from mitmproxy.test import taddons

from proxy_addons.gateway.chain import gateway_addons
from tests.conftest import VENV_BIN, Upstream, copy_policy, start_mitmdump
from tests.gateway.test_gateway_e2e import body_and_status


@pytest.fixture(scope="module")
def declared() -> Iterator[dict[str, Any]]:
    """The options the gateway's add-ons declare (mitmproxy's own excluded)."""
    with taddons.context() as bare:
        builtin = set(bare.options.keys())
    with taddons.context(*gateway_addons()) as tctx:
        options = tctx.options
        yield {name: options._options[name] for name in options.keys() - builtin}


def _as_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_every_gateway_option_round_trips_through_set_text(declared: dict[str, Any]) -> None:
    assert "schoolgate_alerts_retry_seconds" in declared and len(declared) >= 10
    manager = optmanager.OptManager()
    for name, option in declared.items():
        if option.default is None:
            continue
        # What `--set name=TEXT` does; an unsupported type (float) raises here.
        parsed = manager._parse_setval(option, [_as_text(option.default)])
        assert parsed == option.default, name


def _seconds_options(declared: dict[str, Any]) -> list[str]:
    return sorted(name for name in declared if name.endswith("_seconds"))


def test_durations_are_checked_with_a_clear_error(declared: dict[str, Any]) -> None:
    from proxy_addons.gateway.option_types import seconds

    with taddons.context() as tctx:
        tctx.options.add_option("t_seconds", str, "5", "a duration")
        for good, want in (("1", 1.0), ("0.25", 0.25), (" 2.5 ", 2.5)):
            tctx.options.update(t_seconds=good)
            assert seconds("t_seconds") == want
        for bad in ("soon", "", "-1", "nan", "inf", "1e999"):
            tctx.options.update(t_seconds=bad)
            with pytest.raises(exceptions.OptionsError, match="t_seconds"):
                seconds("t_seconds")


def test_mitmdump_starts_with_every_duration_set_from_the_command_line(
    tmp_path: Path, upstream: Upstream, declared: dict[str, Any]
) -> None:
    names = _seconds_options(declared)
    assert "schoolgate_alerts_retry_seconds" in names
    assert "schoolgate_alerts_retry_max_seconds" in names
    values = {name: "1" for name in names} | {"schoolgate_alerts_retry_max_seconds": "2.5"}
    extra = [arg for name, value in values.items() for arg in ("--set", f"{name}={value}")]
    gw = start_mitmdump(copy_policy(tmp_path), tmp_path / "var", upstream, extra=extra)
    try:
        assert body_and_status(gw.curl("http://plain.test/"))[1] == 200
        assert body_and_status(gw.curl("http://chatter.test/"))[1] == 403  # the add-ons run
        assert gw.process.poll() is None
        assert "Unsupported option type" not in gw.log_text()
    finally:
        gw.stop()


def _refused_at_start(tmp_path: Path, upstream: Upstream, setting: str) -> str:
    """Start mitmdump with `--set setting`; it must exit, never serve. Returns its words."""
    try:
        gw = start_mitmdump(
            copy_policy(tmp_path), tmp_path / "var", upstream, extra=["--set", setting]
        )
    except RuntimeError as exc:  # exited before it listened
        return str(exc)
    try:  # it may listen for a moment before "Error logged during startup, exiting..."
        code = body_and_status(gw.curl("http://chatter.test/"))[1]
        assert code in (0, 403)  # no answer, or blocked: never the site
        assert gw.process.wait(30) != 0
        return gw.log_text()
    finally:
        gw.stop()


@pytest.mark.parametrize("value", ["soon", "-3", "0"])
def test_mitmdump_refuses_a_bad_duration_by_name(
    tmp_path: Path, upstream: Upstream, value: str
) -> None:
    words = _refused_at_start(tmp_path, upstream, f"schoolgate_alerts_retry_seconds={value}")
    assert f"schoolgate_alerts_retry_seconds: '{value}'" in words
    assert "RecursionError" not in words


@pytest.mark.parametrize(
    ("setting", "why"),
    [
        ("schoolgate_content_max_bytes=2MB", "not an integer"),
        ("schoolgate_refuse_tunnels=yes", "boolean must be"),
        ("schoolgate_access_log_batch=", "Option is required"),
    ],
)
def test_a_value_mitmproxy_cannot_parse_stops_mitmdump_instead_of_filtering_nothing(
    tmp_path: Path, upstream: Upstream, setting: str, why: str
) -> None:
    """mitmdump alone would carry on as a plain proxy without the gateway (option_guard.py)."""
    words = _refused_at_start(tmp_path, upstream, setting)
    assert f"Schoolgate cannot start: --set {setting}" in words and why in words


def test_schoolgate_run_takes_a_duration_from_set(tmp_path: Path) -> None:
    """`schoolgate run --set` parses options the same way; a bad one is a clear error."""
    policy = copy_policy(tmp_path)
    result = subprocess.run(
        [
            str(VENV_BIN / "schoolgate"),
            "run",
            "--policy",
            str(policy),
            "--var",
            str(tmp_path / "var"),
            "--listen-port",
            "0",
            "--set",
            "schoolgate_metrics_port=0",
            "--set",
            "schoolgate_alerts_retry_seconds=later",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "schoolgate_alerts_retry_seconds: 'later' is not a number" in result.stderr

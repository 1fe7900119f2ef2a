"""Prometheus metrics: a real gateway serving /metrics, a real Prometheus scraping it, and
the shipped alert rules and dashboards checked against what the gateway really exports."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.unblocks import AudienceKind, Status
from proxy_addons.store import Store, store_url
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow
from tests.conftest import ROOT, Gateway, Upstream, copy_policy, free_port, start_mitmdump
from tests.gateway.test_gateway_e2e import body_and_status
from tests.gateway.test_gateway_identity import _htpasswd

RULES = ROOT / "deploy" / "prometheus" / "schoolgate-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "schoolgate-rules.test.yml"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="needs Prometheus: apt-get install prometheus",
)

USERS = {"teacher": "t-pass", "pupil": "p-pass"}
HOSTS = ("plain.test", "chatter.test", "bank.test", "illegal.test", "lesson-site.test")
PRIVATE = (*USERS, *USERS.values(), *HOSTS, "127.0.0.1", "localhost")
ALLOWED_LABELS = {"profile", "category", "outcome", "reason", "stage", "channel", "le"}
ALLOWED_LABELS |= {"compliance", "check", "status"}  # device gauges (device_watch)
ALLOWED_LABELS |= {"kind", "engine", "action"}  # circumvention and safe search: fixed words
ALLOWED_LABELS |= {"sink"}  # where access-log records were lost: queue, file, store
ALLOWED_LABELS |= {"table"}  # whose retention purge failed: a fixed table name
# Series Prometheus makes for each target itself, not the gateway.
SCRAPE_SERIES = {"up"}


@dataclass
class Metered:
    gateway: Gateway
    metrics_port: int

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(self.scrape())
            for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` that have these labels."""
        return sum(v for n, lab, v in self.samples() if n == name and labels.items() <= lab.items())

    def wait_for(self, check: Callable[[], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"metrics never matched:\n{self.scrape()}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Metered]:
    tmp = tmp_path_factory.mktemp("metrics")
    policy = copy_policy(tmp)
    _htpasswd(policy.parent / "users.htpasswd", USERS)
    text = policy.read_text().replace(
        "identities:", "authentication: {htpasswd: users.htpasswd}\nidentities:"
    )
    policy.write_text(text)
    port = free_port()
    gw = start_mitmdump(
        policy, tmp / "var", upstream, extra=["--set", f"schoolgate_metrics_port={port}"]
    )
    metered = Metered(gw, port)
    # Allowed and blocked traffic, plain and HTTPS, for a staff and a pupil profile.
    expected = [
        ("teacher", "http://plain.test/hello", 200),
        ("teacher", "https://plain.test/hello", 200),
        ("pupil", "http://chatter.test/", 403),
        ("pupil", "https://chatter.test/feed", 403),
        ("pupil", "https://bank.test/", 0),  # host-only category: the CONNECT gets the 403
        ("pupil", "http://illegal.test/exact.html", 403),
    ]
    for user, url, status in expected:
        result = gw.curl(url, user=f"{user}:{USERS[user]}")
        assert body_and_status(result)[1] == status, (url, result.stderr)
    yield metered
    gw.stop()


def test_decisions_are_counted_once_by_profile_category_and_outcome(metered: Metered) -> None:
    m = metered
    assert m.value("schoolgate_decisions_total", profile="staff", outcome="allow") == 2
    assert m.value("schoolgate_decisions_total", stage="request", profile="staff") == 2
    social = {"profile": "ks2", "category": "social", "outcome": "block", "reason": "rule"}
    assert m.value("schoolgate_decisions_total", stage="request", **social) == 2
    assert m.value("schoolgate_decisions_total", stage="tls", **social) == 0  # decrypted
    assert (
        m.value("schoolgate_decisions_total", stage="connect", profile="ks2", category="banking")
        == 1
    )
    assert m.value("schoolgate_decisions_total", reason="illegal", outcome="block") == 1
    assert m.value("schoolgate_decisions_total") == 6  # one per request, not per stage
    # Every decision is timed, including the CONNECT and TLS ones a request redid.
    for stage in ("connect", "tls", "request"):
        assert m.value("schoolgate_decision_duration_seconds_count", stage=stage) >= 1
    assert m.value("schoolgate_decision_duration_seconds_sum") > 0


def test_no_label_names_a_user_an_address_or_a_host(metered: Metered) -> None:
    samples = metered.samples()
    assert samples
    for name, labels, _ in samples:
        assert set(labels) <= ALLOWED_LABELS, (name, labels)
        for value in labels.values():
            assert not any(p in value for p in PRIVATE), (name, labels)
    text = metered.scrape()
    assert not any(p in text for p in PRIVATE)


def test_alert_outbox_series_exist_before_any_alert(metered: Metered) -> None:
    samples = {(n, tuple(sorted(lab.items()))): v for n, lab, v in metered.samples()}
    for channel in ("email", "webhook", "teams", "slack", "syslog"):
        for name in (
            "schoolgate_alerts_sent_total",
            "schoolgate_alerts_failed_total",
            "schoolgate_alerts_queued",
        ):
            assert samples[(name, (("channel", channel),))] == 0


def test_lists_and_policy_state(metered: Metered) -> None:
    m = metered
    entries = {lab["category"]: v for n, lab, v in m.samples() if n == "schoolgate_list_entries"}
    assert entries == {"adult": 3, "social": 2, "games": 1, "banking": 1}
    assert m.value("schoolgate_illegal_list_entries") == 2
    loaded = m.value("schoolgate_policy_last_reload_success_timestamp_seconds")
    assert time.time() - 300 < loaded <= time.time()
    assert m.value("schoolgate_policy_last_reload_failed") == 0


def test_unblocks_in_force_and_pending_requests(metered: Metered) -> None:
    gw = metered.gateway
    store = Store.open(store_url(gw.var, ""))
    workflow = UnblockWorkflow(store, lambda: load_policy(gw.policy), send_in_background=False)
    asked = [
        workflow.request(
            Actor("teacher"),
            target=f"https://lesson-site.test/{n}",
            audience_kind=AudienceKind.PROFILE,
            audience=["ks2"],
            reason="Lesson on online safety",
            minutes=30,
        )
        for n in ("a", "b")
    ]
    approved = workflow.approve(Actor("dsl"), asked[0].id)
    if approved.status is Status.AWAITING_IT:
        workflow.confirm(Actor("tech"), asked[0].id)
    metered.wait_for(
        lambda: (
            metered.value("schoolgate_unblocks_active") == 1
            and metered.value("schoolgate_unblock_requests_pending") == 1
        )
    )


def test_policy_reloads_by_outcome(metered: Metered) -> None:
    m, policy = metered, metered.gateway.policy
    ok = m.value("schoolgate_policy_reloads_total", outcome="success")
    failed = m.value("schoolgate_policy_reloads_total", outcome="failure")
    social = policy.parent / "lists" / "social.txt"
    social.write_text(social.read_text() + "gossip.test\n")
    # The list gauge changes with the new runtime; the success is counted after the reload's
    # audit record is written, so a scrape can see the one without the other.
    m.wait_for(
        lambda: (
            m.value("schoolgate_list_entries", category="social") == 3
            and m.value("schoolgate_policy_reloads_total", outcome="success") == ok + 1
        )
    )
    policy.write_text(policy.read_text() + "\nprofiles: [this is not a profile\n")
    # The gauge reads the runtime's last error, set just before the listeners count the
    # failure: a scrape between the two (seen under load) has one without the other.
    m.wait_for(
        lambda: (
            m.value("schoolgate_policy_last_reload_failed") == 1
            and m.value("schoolgate_policy_reloads_total", outcome="failure") == failed + 1
        )
    )
    assert m.value("schoolgate_list_entries", category="social") == 3  # the last good policy


def test_a_taken_metrics_port_does_not_stop_the_gateway(tmp_path: Path, upstream: Upstream) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gw = start_mitmdump(
            copy_policy(tmp_path),
            tmp_path / "var",
            upstream,
            extra=["--set", f"schoolgate_metrics_port={port}"],
        )
        try:
            assert body_and_status(gw.curl("http://chatter.test/"))[1] == 403
            assert f"Metrics endpoint not served: cannot listen on 127.0.0.1:{port}" in (
                gw.log_text()
            )
        finally:
            gw.stop()


# -- the rules and dashboards ----------------------------------------------------------------


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges and subqueries
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word, before = match.group(), expr[: match.start()]
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function
        if before and (before[-1].isdigit() or before[-1] == "."):
            continue  # an exponent (1e3) or a number's suffix
        if word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(a_bucket{x="y z"}[5m]))) > 1e3 '
        "and on (instance) b == 1 unless ignoring (c) time() - d offset 1h"
    )
    assert metric_names(expr) == {"a_bucket", "b", "d"}


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs(path: Path) -> list[str]:
    """Every panel query, and the metric each `label_values()` variable reads."""
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    dashboard = json.loads(path.read_text())
    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]["query"]
        found = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
        assert found, query
        exprs.append(found.group(1))
    return exprs


def test_dashboards_are_grafana_imports_with_a_prometheus_input() -> None:
    assert {p.name for p in DASHBOARDS} == {"schoolgate-dsl.json", "schoolgate-it.json"}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
        panels = [p for p in dashboard["panels"] if p["type"] != "row"]
        assert panels and all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
        assert all(p["targets"] for p in panels)


def test_rules_and_dashboards_name_only_metrics_the_gateway_exports(metered: Metered) -> None:
    exported = {name for name, _, _ in metered.samples()}
    queries = [(RULES.name, e) for e in rule_exprs()]
    queries += [(p.name, e) for p in DASHBOARDS for e in dashboard_exprs(p)]
    assert len(queries) > 30
    for where, expr in queries:
        names = metric_names(expr)
        assert names, (where, expr)
        assert names - SCRAPE_SERIES <= exported, (where, expr, names - exported)


@needs_prometheus
def test_promtool_checks_the_rules_and_the_scrape_config_and_runs_the_rule_tests() -> None:
    assert PROMTOOL
    for command in (
        ["check", "rules", str(RULES)],
        ["check", "config", str(SCRAPE_CONFIG)],
        ["test", "rules", str(RULE_TESTS)],  # each alert fires when it should, and only then
    ):
        result = subprocess.run([PROMTOOL, *command], capture_output=True)
        assert result.returncode == 0, result.stdout + result.stderr


# -- a real Prometheus -----------------------------------------------------------------------


class Prometheus:
    def __init__(self, port: int, log: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = log

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                targets = self.get("/api/v1/targets")["activeTargets"]
                log = self.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"Prometheus: no {what} in {timeout} s\n{targets}\n{log}")
            time.sleep(0.2)


@pytest.fixture()
def prometheus(metered: Metered, tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus with the shipped scrape config and rules, pointed at the test gateway."""
    assert PROMETHEUS
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    # Prometheus applies new targets after 5 s, whatever the interval; 2 s leaves the
    # scrape time to answer on a busy machine (its timeout is at most the interval).
    config["global"].update(scrape_interval="2s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES)]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metered.metrics_port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield Prometheus(port, log_path)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@needs_prometheus
def test_prometheus_scrapes_the_gateway_and_evaluates_rules_and_panels(
    metered: Metered, prometheus: Prometheus
) -> None:
    prom = prometheus
    prom.wait_for(
        lambda: bool(prom.query('schoolgate_decisions_total{job="schoolgate"}')),
        "the decision counter from the gateway",
    )
    blocked = prom.query('sum(schoolgate_decisions_total{outcome="block", profile="ks2"})')
    assert float(blocked[0]["value"][1]) >= 4
    # What rules name beyond the gateway's own metrics, Prometheus itself makes.
    for name in SCRAPE_SERIES:
        (up,) = prom.query(f'{name}{{job="schoolgate"}}')
        assert up["value"][1] == "1"
    # Every panel query is valid PromQL and evaluates against the live data.
    grafana = {"$__rate_interval": "1m", "$__range": "5m", "$instance": ".*", "$profile": ".*"}
    for path in DASHBOARDS:
        for expr in dashboard_exprs(path):
            for variable, value in grafana.items():
                expr = expr.replace(variable, value)
            prom.query(expr)
    # Prometheus loaded every rule and evaluated each without error.
    expected = len(rule_exprs())

    def rules_evaluated() -> bool:
        groups = prom.get("/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert all(r["health"] != "err" for r in rules), rules
        return len(rules) == expected and all(r["health"] == "ok" for r in rules)

    prom.wait_for(rules_evaluated, "every rule evaluated")

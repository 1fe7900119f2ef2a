"""Enrolment and reporting: the device API on real stores, the agent client over real HTTPS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.serving import BaseWSGIServer, make_server

from agent.cli import main as agent_main
from agent.client import Client, ClientError
from agent.client_cli import run_loop
from agent.report import MAX_REPORT_BYTES, SCHEMA_VERSION
from proxy_addons.checks.device_api import device_profile
from proxy_addons.cli.main import main as schoolgate
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices import enrolment, inventory, reports
from proxy_addons.devices.identity import users_by_ip
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import devices
from proxy_addons.web.app import create_device_api
from tests.conftest import ROOT, copy_policy, free_port, wait_for_port
from tests.pg import db_url  # noqa: F401  (a fixture)

SECRET = "enrol-me-please-0123456789"
DEVICE_IP = "10.1.2.3"  # where the test device is: its reports come from here and list it
T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def policy_with_devices(tmp: Path, section: str | None = None) -> Path:
    path = copy_policy(tmp)
    (path.parent / "enrol.secret").write_text(SECRET + "\n")
    section = section or (
        "devices:\n  enrolment_secret_file: enrol.secret\n  stale_days: 7\n  identity_minutes: 30\n"
    )
    with path.open("a") as fh:
        fh.write("\n" + section)
    return path


def report(device_id: str, at: dt.datetime, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "device_id": device_id,
        "hostname": "lab-pc-07",
        "os_name": "linux",
        "os_version": "24.04",
        "agent_version": "0.1.0",
        "generated_at": at.isoformat(),
        "results": [
            {"id": "disk_encryption", "status": "pass", "reason": "LUKS on /", "evidence": {}},
            {"id": "firewall", "status": "pass", "reason": "nftables has rules"},
        ],
        "serial": "SN-1234",
        "user": "jsmith",
        "ips": ["10.1.2.3"],
        "macs": ["00:11:22:33:44:55"],
    }
    data.update(changes)
    return data


@dataclass
class Api:
    app: Flask
    store: Store
    clock: Clock
    policy: Policy

    def enrol(self, hostname: str = "lab-pc-07") -> tuple[str, str]:
        answer = self.app.test_client().post(
            "/api/v1/enrol", json={"secret": SECRET, "hostname": hostname}
        )
        assert answer.status_code == 201, answer.json
        body = answer.json
        assert body is not None
        return body["device_id"], body["token"]

    def post(
        self,
        token: str,
        body: Any,
        raw: bytes | None = None,
        *,
        peer: str = DEVICE_IP,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """POST a report as if from `peer` (the address the API's socket sees)."""
        data = raw if raw is not None else json.dumps(body).encode()
        return self.app.test_client().post(
            "/api/v1/report",
            data=data,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
            environ_base={"REMOTE_ADDR": peer},
        )

    def row(self, device_id: str) -> Any:
        with self.store.connect() as conn:
            return conn.execute(sa.select(devices).where(devices.c.device_id == device_id)).one()


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:  # noqa: F811
    store = Store.open(db_url)
    policy = load_policy(policy_with_devices(tmp_path))
    clock = Clock()
    yield Api(create_device_api(store, lambda: policy, clock), store, clock, policy)
    store.dispose()


# -- the policy ----------------------------------------------------------------------------


def test_devices_section_of_the_policy(tmp_path: Path) -> None:
    policy = load_policy(policy_with_devices(tmp_path / "a"))
    assert policy.devices.enrolment_secret_file == (tmp_path / "a/policy/enrol.secret").resolve()
    assert (policy.devices.stale_days, policy.devices.identity_minutes) == (7, 30)
    assert policy.devices.enrolment_secret_file not in policy.files  # its hash is never audited
    assert load_policy(copy_policy(tmp_path / "b")).devices.stale_days == 7  # the default
    bad = "devices:\n  enrolment_secret_file: missing.secret\n  stale_days: 0\n  stale: 3\n"
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_with_devices(tmp_path / "c", bad))
    text = str(caught.value)
    assert "missing.secret' does not exist" in text
    assert "stale_days should be a whole number from 1 to 365" in text
    assert "'stale' is not a setting of devices" in text


# -- enrolling -----------------------------------------------------------------------------


def test_enrol_with_the_right_secret_only(api: Api) -> None:
    client = api.app.test_client()
    wrong = client.post("/api/v1/enrol", json={"secret": "guess", "hostname": "pc"})
    assert wrong.status_code == 403
    assert wrong.json == {"error": "the enrolment secret is wrong", "field": "secret"}
    missing = client.post("/api/v1/enrol", json={"hostname": "pc"})
    assert (missing.status_code, missing.json["field"]) == (400, "secret")  # type: ignore[index]
    device_id, token = api.enrol()
    assert token.startswith(device_id + ".") and len(token) > 40
    row = api.row(device_id)
    assert row.token_hash == enrolment.hash_token(token) and token not in row.token_hash
    assert enrolment.verify_token(api.store, token) == device_id
    assert (
        enrolment.verify_token(api.store, token[:-1] + ("x" if token[-1] != "x" else "y")) is None
    )
    assert enrolment.verify_token(api.store, "dev-nope.abc") is None
    for _ in range(4):  # five wrong secrets from one address, then a pause
        assert (
            client.post("/api/v1/enrol", json={"secret": "x", "hostname": "p"}).status_code == 403
        )
    assert client.post("/api/v1/enrol", json={"secret": SECRET, "hostname": "p"}).status_code == 429


# -- reporting -----------------------------------------------------------------------------


def test_report_accepted_and_shown_in_the_inventory(api: Api) -> None:
    device_id, token = api.enrol()
    answer = api.post(token, report(device_id, T0 - dt.timedelta(minutes=1)))
    assert answer.status_code == 202, answer.json
    assert answer.json == {
        "accepted": True,
        "compliant": True,
        "address": DEVICE_IP,
        "ignored_ips": [],
        "thresholds": api.policy.devices.thresholds.to_json(),  # for the agent's next checks
    }
    [device] = inventory.list_devices(api.store, T0, 7)
    assert device.device_id == device_id
    assert (device.os_name, device.os_version, device.serial) == ("linux", "24.04", "SN-1234")
    assert (device.last_user, device.last_ips, device.last_macs) == (
        "jsmith",
        ("10.1.2.3",),
        ("00:11:22:33:44:55",),
    )
    assert device.last_report_at == T0 and device.compliant and not device.stale
    assert inventory.user_at(api.store, "10.1.2.3", T0 + dt.timedelta(minutes=29), 30) == "jsmith"
    assert inventory.user_at(api.store, "10.1.2.3", T0 + dt.timedelta(minutes=31), 30) is None

    failing = report(device_id, T0, results=[{"id": "firewall", "status": "unknown", "reason": ""}])
    assert api.post(token, failing).status_code == 202
    shown = inventory.get_device(api.store, device_id, T0, 7)
    assert shown is not None and not shown.compliant and inventory.failing(shown) == ["firewall"]


def test_bad_reports_get_a_4xx_naming_the_problem_and_store_nothing(api: Api) -> None:
    device_id, token = api.enrol()
    other_id, _ = api.enrol("other-pc")
    assert api.post(token, report(device_id, T0)).status_code == 202
    before = api.row(device_id)
    later = T0 + dt.timedelta(minutes=1)
    cases: list[tuple[str, Any, bytes | None, int, str | None]] = [
        ("bad token", report(device_id, later), None, 401, None),
        ("", report(device_id, later), None, 401, None),
        (token, None, b"{not json", 400, "body"),
        (token, None, b"\xff\xfe", 400, "body"),
        (token, [1, 2], None, 400, "report"),
        (token, None, json.dumps(report(device_id, later, user="a\u0000b")).encode(), 400, "body"),
        (token, None, json.dumps(report(device_id, later, x=float("nan"))).encode(), 400, "body"),
        (token, None, b"x" * (MAX_REPORT_BYTES + 1), 413, None),
        (token, report(device_id, later, macs=["nonsense"]), None, 400, "macs"),
        (token, report(device_id, later, results=[]), None, 400, "results"),
        (token, report(device_id, later, generated_at="yesterday"), None, 400, "generated_at"),
        (token, report(device_id, later, os_name="amiga"), None, 400, "os_name"),
        (token, report(other_id, later), None, 403, "device_id"),
        (token, report(device_id, T0), None, 409, "generated_at"),  # replayed
        (token, report(device_id, T0 - dt.timedelta(hours=1)), None, 409, "generated_at"),
        (token, report(device_id, T0 + dt.timedelta(minutes=3)), None, 409, "generated_at"),
        (token, report(device_id, T0 + dt.timedelta(days=400)), None, 409, "generated_at"),
    ]
    for auth, body, raw, status, field in cases:
        answer = api.post(auth, body, raw)
        assert answer.status_code == status, (field, answer.json)
        assert answer.is_json and answer.json["error"], answer.data
        if field is not None:
            assert answer.json["field"] == field, answer.json
    assert api.row(device_id) == before
    assert api.row(other_id).last_report_at is None
    # Within the clock slack is fine.
    assert api.post(token, report(device_id, T0 + dt.timedelta(seconds=100))).status_code == 202


def test_a_report_dated_ahead_never_holds_off_the_genuine_ones_after_it(api: Api) -> None:
    device_id, token = api.enrol()
    ahead = api.post(token, report(device_id, T0 + dt.timedelta(minutes=10)))
    assert ahead.status_code == 409 and "ahead of the gateway's clock" in ahead.json["error"]
    assert api.row(device_id).last_report_at is None  # refused: nothing stored
    # Just inside the slack: taken, but stored as made when it arrived (T0) ...
    assert api.post(token, report(device_id, T0 + dt.timedelta(seconds=110))).status_code == 202
    assert api.row(device_id).last_generated_at == T0
    # ... so the device's next genuine report, made a few seconds later, is taken.
    api.clock.now = T0 + dt.timedelta(seconds=5)
    genuine = report(device_id, api.clock.now, user="after")
    assert api.post(token, genuine).status_code == 202
    assert api.row(device_id).last_user == "after"
    assert api.post(token, genuine).status_code == 409  # the same one again is still refused
    # A time stored ahead before this rule (an older gateway) holds nothing off either.
    with api.store.begin() as conn:
        conn.execute(
            devices.update()
            .where(devices.c.device_id == device_id)
            .values(last_generated_at=T0 + dt.timedelta(hours=3))
        )
    api.clock.now = T0 + dt.timedelta(minutes=1)
    later = report(device_id, api.clock.now, user="later")
    assert api.post(token, later).status_code == 202
    assert api.row(device_id).last_user == "later"


# -- a report speaks only for the address it came from ------------------------------------

TEACHER_IP, STAFF_NET_IP = "10.1.2.40", "10.20.0.9"  # 10.20.0.0/24 is staff in the policy


def test_a_report_speaks_only_for_the_address_it_came_from(api: Api) -> None:
    teacher_pc, teacher_token = api.enrol("teacher-pc")
    pupil_pc, pupil_token = api.enrol("pupil-pc")
    sent = report(teacher_pc, T0, user="teacher", ips=[TEACHER_IP])
    assert api.post(teacher_token, sent, peer=TEACHER_IP).status_code == 202
    now = T0 + dt.timedelta(minutes=1)
    api.clock.now = now
    # The pupil's device (at DEVICE_IP) lists the teacher's address, a staff-network address,
    # its own in another spelling and IPv4-mapped, and names a member of staff.
    claims = [TEACHER_IP, STAFF_NET_IP, "::ffff:10.1.2.3", "10.1.2.3"]
    lying = report(pupil_pc, now, user="dsl", ips=claims)
    answer = api.post(pupil_token, lying, peer=DEVICE_IP)
    assert answer.status_code == 202  # its compliance still counts
    assert answer.json["address"] == DEVICE_IP
    assert answer.json["ignored_ips"] == [TEACHER_IP, STAFF_NET_IP]
    pupil = inventory.get_device(api.store, pupil_pc, now, 7)
    assert pupil is not None
    assert pupil.last_ips == (DEVICE_IP,)  # only where it really is
    assert (pupil.report_address, pupil.ignored_ips) == (DEVICE_IP, (TEACHER_IP, STAFF_NET_IP))
    # Nothing moved: the teacher's address is still the teacher's, the staff address nobody's.
    assert inventory.user_at(api.store, TEACHER_IP, now, 30) == "teacher"
    assert inventory.user_at(api.store, STAFF_NET_IP, now, 30) is None
    assert users_by_ip(api.store, now, 30) == {TEACHER_IP: "teacher", DEVICE_IP: "dsl"}
    assert device_profile(api.store, api.policy, STAFF_NET_IP, now) == "staff"  # its network
    # The CSV and `devices show` say what was not believed.
    assert f",00:11:22:33:44:55,{DEVICE_IP},{TEACHER_IP} {STAFF_NET_IP}," in inventory.to_csv(
        [pupil]
    )


def test_a_report_from_an_address_it_does_not_list_speaks_for_none(api: Api) -> None:
    device_id, token = api.enrol()
    sent = report(device_id, T0, user="teacher", ips=[TEACHER_IP])
    answer = api.post(token, sent, peer="10.1.2.99")
    assert answer.status_code == 202 and answer.json["ignored_ips"] == [TEACHER_IP]
    assert api.row(device_id).last_ips == []
    assert users_by_ip(api.store, T0, 30) == {}


@pytest.mark.parametrize(
    ("relays", "peer", "forwarded", "speaks_for"),
    [
        ([], DEVICE_IP, None, DEVICE_IP),
        ([], "10.1.2.99", DEVICE_IP, "10.1.2.99"),  # not a relay: X-Forwarded-For not read
        (["10.0.0.5"], "10.0.0.5", f"198.51.100.7, {DEVICE_IP}", DEVICE_IP),  # right-most hop
        (["10.0.0.5"], "10.0.0.5", None, None),  # a relay that says nothing speaks for none
        (["10.0.0.5"], "10.0.0.5", "not-an-address", None),
        (["10.0.0.4/30"], "10.0.0.5", f"{DEVICE_IP}, 10.0.0.6", DEVICE_IP),  # relay behind relay
        (["10.0.0.5"], "10.0.0.6", DEVICE_IP, "10.0.0.6"),
        (["10.0.0.5"], "::ffff:10.0.0.5", DEVICE_IP, DEVICE_IP),
    ],
)
def test_reports_through_a_trusted_relay_speak_for_the_forwarded_address(
    tmp_path: Path, relays: list[str], peer: str, forwarded: str | None, speaks_for: str | None
) -> None:
    section = (
        "devices:\n  enrolment_secret_file: enrol.secret\n"
        f"  trusted_relays: [{', '.join(relays)}]\n"
    )
    store = Store.open(store_url(tmp_path / "var"))
    policy = load_policy(policy_with_devices(tmp_path, section))
    api = Api(create_device_api(store, lambda: policy, Clock()), store, Clock(), policy)
    device_id, token = api.enrol()
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    answer = api.post(token, report(device_id, T0), peer=peer, headers=headers)
    assert answer.status_code == 202, answer.json
    assert answer.json["address"] == speaks_for
    assert api.row(device_id).last_ips == ([DEVICE_IP] if speaks_for == DEVICE_IP else [])
    store.dispose()


@given(
    claimed=st.lists(st.ip_addresses().map(str), max_size=6),
    source=st.one_of(st.none(), st.ip_addresses().map(str)),
)
def test_believed_addresses_are_only_ever_the_source(
    claimed: list[str], source: str | None
) -> None:
    believed = reports.believed_ips(tuple(claimed), source)
    assert len(believed) <= 1
    if believed:
        assert reports.address_of(believed[0]) == reports.address_of(source)
        assert reports.address_of(source) in {reports.address_of(c) for c in claimed}
    elif source is not None:
        assert reports.address_of(source) not in {reports.address_of(c) for c in claimed}


def test_trusted_relays_in_the_policy_are_checked(tmp_path: Path) -> None:
    bad = (
        "devices:\n  enrolment_secret_file: enrol.secret\n"
        "  trusted_relays: [10.0.0.5, relay.school.lan, 10.0.0.0/8]\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_with_devices(tmp_path, bad))
    text = str(caught.value)
    assert "'relay.school.lan' in trusted_relays is not a network" in text
    assert "trusted_relays: 10.0.0.0/8 is wider than a /24" in text
    assert "school.yaml" in text  # the file (and line) it is in


def test_wrong_method_and_unknown_path_are_json_4xx(api: Api) -> None:
    client = api.app.test_client()
    assert client.get("/api/v1/report").status_code == 405
    missing = client.post("/api/v1/nothing")
    assert missing.status_code == 404 and missing.is_json


def test_silent_devices_are_stale_and_not_compliant(api: Api) -> None:
    reporting, token = api.enrol("reports")
    silent, _ = api.enrol("never-reported")
    assert api.post(token, report(reporting, T0)).status_code == 202
    week_later = T0 + dt.timedelta(days=7, minutes=1)
    assert {d.device_id for d in inventory.stale_devices(api.store, T0, 7)} == {silent}
    assert {d.device_id for d in inventory.stale_devices(api.store, week_later, 7)} == {
        reporting,
        silent,
    }
    assert not any(d.compliant for d in inventory.list_devices(api.store, week_later, 7))


def test_schoolgate_devices_list_show_export(
    api: Api,
    db_url: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = dt.datetime.now(dt.UTC)
    api.clock.now = now
    device_id, token = api.enrol("lab-pc-07")
    api.enrol("=cmd|evil")
    assert api.post(token, report(device_id, now)).status_code == 202
    common = ["--policy", str(api.policy.path), "--var", str(tmp_path / "var"), "--dsn", db_url]
    capsys.readouterr()

    assert schoolgate(["devices", "list", *common]) == 0
    out = capsys.readouterr().out
    assert f"{device_id}" in out and "compliant" in out and "stale" in out
    assert "2 devices, 1 not compliant" in out

    assert schoolgate(["devices", "show", device_id, *common]) == 0
    out = capsys.readouterr().out
    assert "user: jsmith" in out and "compliant: yes" in out and "- firewall: pass" in out
    assert schoolgate(["devices", "show", "dev-unknown", *common]) == 1

    assert schoolgate(["devices", "export", "--format", "csv", *common]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("device_id,hostname,os_name")
    assert any(line.startswith(f"{device_id},lab-pc-07,linux,24.04,SN-1234") for line in lines)
    assert any(",'=cmd|evil," in line for line in lines)  # no formula for a spreadsheet


# -- the agent client over real HTTPS -------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def make_pki(folder: Path, label: str, addresses: tuple[str, ...] = ()) -> Pki:
    """A test CA and a server certificate for 127.0.0.1/localhost (and `addresses`) signed
    by it."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} CA"))
        .issuer_name(_name(f"{label} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("gateway"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost")]
                + [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", *addresses)]
            ),
            False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Pki]:
    base = tmp_path_factory.mktemp("pki")
    return make_pki(base / "school", "School"), make_pki(base / "other", "Other")


class HttpsServer:
    """The device API on a real HTTPS socket, which the test can stop and start again."""

    def __init__(self, app: Flask, pki: Pki) -> None:
        self.app, self.pki, self.port = app, pki, free_port()
        self.server: BaseWSGIServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pki.cert, self.pki.key)
        self.server = make_server(
            "127.0.0.1", self.port, self.app, threaded=True, ssl_context=context
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def https(tmp_path: Path, pkis: tuple[Pki, Pki]) -> Iterator[Callable[[Pki], HttpsServer]]:
    store = Store.open(store_url(tmp_path / "gw"))
    policy = load_policy(policy_with_devices(tmp_path))
    servers: list[HttpsServer] = []

    def serve(pki: Pki) -> HttpsServer:
        server = HttpsServer(create_device_api(store, lambda: policy), pki)
        server.start()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.stop()
    store.dispose()


def test_client_enrols_trusting_only_the_pinned_ca(
    https: Callable[[Pki], HttpsServer], pkis: tuple[Pki, Pki], tmp_path: Path
) -> None:
    school, other = pkis
    good = https(school)
    state = tmp_path / "agent"
    with pytest.raises(ClientError, match="enrolment secret is wrong"):
        Client(state, good.url, school.ca).enrol("guess", "lab-pc-07")
    impostor = https(other)  # a server whose certificate another CA signed
    with pytest.raises(ClientError, match="CERTIFICATE_VERIFY_FAILED"):
        Client(state, impostor.url, school.ca).enrol(SECRET, "lab-pc-07")
    assert not (state / "token").exists()

    device_id = Client(state, good.url, school.ca).enrol(SECRET, "lab-pc-07")
    token = state / "token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.read_text().startswith(device_id + ".")
    again = Client(state)  # everything it needs comes back from the state folder
    assert (again.device_id, again.gateway, again.cafile) == (device_id, good.url, school.ca)


def test_reports_kept_while_the_gateway_is_down_arrive_later_in_order(
    https: Callable[[Pki], HttpsServer], pkis: tuple[Pki, Pki], tmp_path: Path
) -> None:
    school, _ = pkis
    server = https(school)
    client = Client(tmp_path / "agent", server.url, school.ca)
    device_id = client.enrol(SECRET, "lab-pc-07")
    now = dt.datetime.now(dt.UTC)
    assert client.send(report(device_id, now - dt.timedelta(minutes=5))).sent == 1

    server.stop()
    for i in (4, 3, 2):
        result = client.send(report(device_id, now - dt.timedelta(minutes=i), user=f"user{i}"))
        assert result.sent == 0 and result.waiting == 5 - i
    assert len(list(client.spool.glob("*.json"))) == 3

    server.start()
    result = client.flush()
    # In order, or the gateway would have refused the older ones as replays (409).
    assert (result.sent, result.rejected, result.waiting) == (3, 0, 0)
    assert not list(client.spool.glob("*.json"))
    [device] = inventory.list_devices(Store.open(store_url(tmp_path / "gw")), now, 7)
    assert device.last_user == "user2"

    bad = client.send(report(device_id, now, macs=["zz"]))  # refused for good: set aside
    assert (bad.sent, bad.rejected, bad.waiting) == (0, 1, 0)
    assert len(list((tmp_path / "agent" / "rejected").glob("*.json"))) == 1


def test_schoolgate_web_serves_the_device_api_over_https(
    tmp_path: Path, pkis: tuple[Pki, Pki]
) -> None:
    school, _ = pkis
    policy = policy_with_devices(tmp_path)
    port = free_port()
    log = tmp_path / "web.log"
    cmd = [sys.executable, "-m", "proxy_addons.cli.main", "web", "--policy", str(policy)]
    cmd += ["--var", str(tmp_path / "var"), "--port", str(port)]
    cmd += ["--cert", str(school.cert), "--key", str(school.key)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ}
        )
    try:
        wait_for_port(port, process, log)
        client = Client(tmp_path / "agent", f"https://127.0.0.1:{port}", school.ca)
        device_id = client.enrol(SECRET, "lab-pc-07")
        assert client.send(report(device_id, dt.datetime.now(dt.UTC))).sent == 1
    finally:
        process.terminate()
        process.wait(10)
    assert SECRET not in log.read_text()
    assert client._token() not in log.read_text()


def test_agent_enrol_send_and_run_subcommands(
    https: Callable[[Pki], HttpsServer],
    pkis: tuple[Pki, Pki],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    school, _ = pkis
    server = https(school)
    state = str(tmp_path / "agent")
    (tmp_path / "secret").write_text(SECRET + "\n")
    user = {"name": "first"}

    def build() -> dict[str, Any]:
        return report("set-by-the-client", dt.datetime.now(dt.UTC), user=user["name"])

    def agent(*argv: str) -> int:
        return agent_main(list(argv))

    enrol = ["enrol", "--gateway", server.url, "--ca", str(school.ca), "--state", state]
    assert agent(*enrol, "--secret-file", str(tmp_path / "secret")) == 0
    device_id = capsys.readouterr().out.split()[-1]
    assert device_id.startswith("dev-")

    made = tmp_path / "report.json"
    made.write_text(json.dumps(report("anything", dt.datetime.now(dt.UTC))))
    assert agent("send", str(made), "--state", state) == 0
    assert "sent 1, refused 0, waiting 0" in capsys.readouterr().out

    made_at: list[dt.datetime] = []

    def last_accepted() -> Any:
        store = Store.open(store_url(tmp_path / "gw"))
        device = inventory.get_device(store, device_id, dt.datetime.now(dt.UTC), 7)
        store.dispose()
        assert device is not None
        return device

    def timed_build() -> dict[str, Any]:
        made_at.append(dt.datetime.now(dt.UTC))
        user["name"] = "first" if len(made_at) <= 2 else "second"  # signs in on round 3
        return {**build(), "generated_at": made_at[-1].isoformat()}

    client = Client(Path(state))
    run_loop(client, timed_build, check_every=0, report_every=3600, rounds=2, sleep=lambda _: 0)
    assert last_accepted().last_generated_at == made_at[0]  # round 2: nothing changed
    del made_at[:]
    run_loop(client, timed_build, check_every=0, report_every=0, rounds=2, sleep=lambda _: 0)
    assert last_accepted().last_generated_at == made_at[1]  # unchanged, but the schedule is due
    del made_at[:]
    run_loop(client, timed_build, check_every=0, report_every=3600, rounds=4, sleep=lambda _: 0)
    device = last_accepted()  # round 1 sent (a new loop); 3 sent (a change); 2 and 4 not
    assert device.last_user == "second" and device.last_generated_at == made_at[2]


# -- guessing the enrolment secret -----------------------------------------------------------


def test_enrolment_guesses_from_one_ipv6_64_count_as_one_client(api: Api) -> None:
    """The red team rotated fd00::1..8 and got 403 each time, never 429: a host can use any
    address in its /64, so the /64 is the client (an IPv4 client is its address)."""
    client = api.app.test_client()

    def enrol(peer: str, secret: str = "guess") -> int:
        body = {"secret": secret, "hostname": "pc"}
        return client.post(
            "/api/v1/enrol", json=body, environ_base={"REMOTE_ADDR": peer}
        ).status_code

    assert [enrol(f"fd00::{i}") for i in range(1, 9)] == [403] * 5 + [429] * 3
    assert enrol("fd00::ffff:1:2:3", SECRET) == 429  # even the right secret waits
    assert enrol("fd00::1%eth0") == 429  # a zone is not another host
    # Another /64, and IPv4 clients (also written IPv4-mapped), are other clients.
    assert enrol("fd00:0:0:1::1", SECRET) == 201
    assert [enrol(f"10.20.0.{i}") for i in range(1, 7)] == [403] * 6
    assert enrol("::ffff:10.20.0.1") == 403
    assert enrol("::ffff:10.20.0.7", SECRET) == 201

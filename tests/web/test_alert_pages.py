"""The alerts console through Flask's test client, on a real SQLite store: who sees which
alerts, the filters, the live feed's JSON, an alert's page with the pupil's timeline (and
the audited look), and the actions with their refusals and races."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from proxy_addons.alerts.events import Audience
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import access_log, alerts
from proxy_addons.workflow import alert_cases, audit
from proxy_addons.workflow.accounts import add_account
from proxy_addons.workflow.unblocks import Actor
from tests.web.test_webapp import PASSWORD, Web, make_web, page_token, seed, sign_in, text
from tests.workflow.test_alert_cases import T0, log_line, raise_one

TECH_ALERT = {
    "kind": "circumvention",
    "severity": 3,
    "audience": Audience.TECHNICAL,
    "fields": {"device_ref": "device-abc123", "site": "vpn.example", "category": "VPN"},
    "summary": "Circumvention attempt blocked: VPN",
}


def seed_console(folder: Path) -> Path:
    """The web app's accounts and a headteacher's (copied per test: bcrypt is slow)."""
    db = seed(folder)
    store = Store.open(store_url(folder))
    add_account(store, "head", PASSWORD, ["headteacher"], email="head@test.example")
    store.dispose()
    return db


@pytest.fixture(scope="module")
def console_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_console(tmp_path_factory.mktemp("console"))


@pytest.fixture
def web(tmp_path: Path, console_db: Path) -> Iterator[Web]:
    result = make_web(tmp_path / "var", console_db)
    result.workflow.clock = lambda: T0 + timedelta(minutes=5)
    yield result
    result.store.dispose()


def row_of(web: Web, alert_id: int) -> sa.Row[tuple[object, ...]]:
    with web.store.connect() as conn:
        return conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).one()


def looks(web: Web) -> list[audit.AuditRecord]:
    return [r for r in audit.records(web.store) if r.action == alert_cases.LOOK]


def post(client: FlaskClient, alert_id: int, action: str, **fields: str) -> object:
    fields["csrf_token"] = page_token(client, "/alerts")
    return client.post(f"/alerts/{alert_id}/{action}", data=fields)


# -- who sees what ----------------------------------------------------------------------------


def test_the_list_needs_the_console(web: Web) -> None:
    assert web.client().get("/alerts").headers["Location"].startswith("/login?next=")
    teacher = sign_in(web, "teacher")
    assert teacher.get("/alerts").status_code == 403
    assert teacher.get("/alerts/feed").status_code == 403
    alert_id = raise_one(web.store)
    assert teacher.get(f"/alerts/{alert_id}").status_code == 403


def test_each_person_sees_only_their_audiences(web: Web) -> None:
    pupil = raise_one(web.store)
    tech = raise_one(web.store, **TECH_ALERT)  # type: ignore[arg-type]
    staff = raise_one(web.store, stored_audience="staff", summary="Concern about a teacher")

    dsl = text(sign_in(web, "dsl").get("/alerts"))
    assert f'id="alert-{pupil}"' in dsl and "pupil7" in dsl
    assert f'id="alert-{tech}"' not in dsl and f'id="alert-{staff}"' not in dsl

    it = sign_in(web, "tech")
    page = text(it.get("/alerts"))
    assert f'id="alert-{tech}"' in page and "Circumvention attempt blocked" in page
    assert f'id="alert-{pupil}"' not in page
    assert "pupil7" not in page and "how to hurt myself" not in page  # never a pupil's name
    # Another audience's alert answers as if there were none: its id tells nothing.
    assert it.get(f"/alerts/{pupil}").status_code == 404
    assert it.get(f"/alerts/{99999}").status_code == 404
    assert post(it, pupil, "acknowledge").status_code == 404  # type: ignore[attr-defined]
    assert row_of(web, pupil).state == "new"
    tech_page = text(it.get(f"/alerts/{tech}"))
    assert "device-abc123" in tech_page and "Timeline" not in tech_page
    assert looks(web) == []  # a technical alert names nobody: no look at a person

    head = text(sign_in(web, "head").get("/alerts"))
    assert f'id="alert-{staff}"' in head and f'id="alert-{pupil}"' not in head


def test_an_alert_sent_to_someone_opens_for_them(web: Web) -> None:
    """An escalation to the headteacher, or a reminder to a named person, links to the
    alert's page: it opens for them, though its audience is not theirs."""
    emailed = raise_one(web.store)
    other = raise_one(web.store, summary="Another pupil's alert")
    with web.store.begin() as conn:
        told = ["email:head@test.example", "email:dsl@test.example"]
        conn.execute(alerts.update().where(alerts.c.id == emailed).values(recipients=told))
    head = sign_in(web, "head")
    assert head.get(f"/alerts/{emailed}").status_code == 200
    assert head.get(f"/alerts/{other}").status_code == 404
    listed = text(head.get("/alerts"))
    assert f'id="alert-{emailed}"' in listed and f'id="alert-{other}"' not in listed
    # A look-alike address (LIKE's wildcards) opens nothing.
    with web.store.begin() as conn:
        near = ["email:headxtest.example", "email:head@test.example.evil"]
        conn.execute(alerts.update().where(alerts.c.id == emailed).values(recipients=near))
    assert head.get(f"/alerts/{emailed}").status_code == 404


def test_rows_say_time_severity_kind_who_state_and_occurrences(web: Web) -> None:
    key = "risk|pupil7|self-harm"
    alert_id = raise_one(web.store, severity=5, key=key)
    raise_one(web.store, severity=5, key=key, at=T0 + timedelta(minutes=2))  # folded
    page = text(sign_in(web, "dsl").get("/alerts"))
    row = re.search(rf'<tr id="alert-{alert_id}">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?</td>", row[1], re.S)]
    assert cells == [
        "10:00 on Tue 8 Dec 2026",  # school time (Europe/London, GMT in December)
        "5 Urgent",  # the number and the word, not only a colour
        "Worrying words in a search or page",
        "Risk phrase in a search: Self-harm (severity 4)",
        "pupil7",
        "New",
        "2",
    ]


def test_filters(web: Web) -> None:
    low = raise_one(
        web.store,
        severity=2,
        fields={"user": "pupil2", "category": "Gambling"},
        at=T0 - timedelta(days=3),
        summary="Gambling site",
    )
    high = raise_one(web.store, severity=5, summary="Self-harm search")
    closed = raise_one(web.store, severity=4, summary="Closed one")
    alert_cases.close(
        web.store, Actor("dsl"), closed, expected="new", outcome="no_concern", notes="", now=T0
    )
    dsl = sign_in(web, "dsl")

    def shown(query: str) -> list[int]:
        page = text(dsl.get(f"/alerts?{query}"))
        return [int(i) for i in re.findall(r'<tr id="alert-(\d+)">', page)]

    assert shown("") == [high, low]  # open ones by default
    assert shown("state=all") == [closed, high, low]
    assert shown("state=closed") == [closed]
    assert shown("state=all&severity=4") == [closed, high]
    assert shown("state=all&category=Gambling") == [low]
    assert shown("person=PUPIL2") == [low]
    assert shown("from=2026-12-08&to=2026-12-08") == [high]
    assert shown("to=2026-12-06") == [low]
    page = text(dsl.get("/alerts?severity=9&from=yesterday"))
    assert "The severity should be 1 to 5." in page and "isn&#39;t a date" in page
    # The form shows the filters again, and the feed keeps them.
    page = text(dsl.get("/alerts?severity=4&person=pupil7"))
    assert '<option value="4" selected>' in page and 'value="pupil7"' in page
    feed = re.search(r'data-feed="([^"]+)"', page)
    assert feed is not None and "severity=4" in feed[1] and "person=pupil7" in feed[1]


def test_the_feed_gives_newer_alerts_under_the_filters(web: Web) -> None:
    first = raise_one(web.store)
    dsl = sign_in(web, "dsl")
    page = text(dsl.get("/alerts"))
    assert f'data-last="{first}"' in page
    assert re.search(r'<script src="/alerts/alert_feed.js" defer></script>', page)
    since = re.search(r'data-since="([^"]+)"', page)
    assert since is not None
    quiet = dsl.get(f"/alerts/feed?after={first}&since={since[1]}").get_json()
    assert quiet == {
        "rows": [],
        "changed": [],
        "last": first,
        "since": since[1],  # the clock stands still in this test
        "announce": "",
    }
    low = raise_one(web.store, severity=2, summary="Low one")
    high = raise_one(web.store, severity=5, summary="Urgent one")
    raise_one(web.store, **TECH_ALERT)  # type: ignore[arg-type]
    answer = dsl.get(f"/alerts/feed?after={first}").get_json()
    assert [r["id"] for r in answer["rows"]] == [high, low]  # not the technical one
    assert answer["last"] == high
    assert answer["rows"][0]["html"].startswith(f'<tr id="alert-{high}">')
    assert answer["announce"] == (
        "2 new alerts. The newest: Worrying words in a search or page, severity 5 Urgent: "
        "Urgent one"
    )
    filtered = dsl.get(f"/alerts/feed?after={first}&severity=4").get_json()
    assert [r["id"] for r in filtered["rows"]] == [high]
    assert "New alert." in filtered["announce"]
    # Signed out, the feed sends to sign in, which the script takes as "stop".
    assert web.client().get("/alerts/feed").status_code == 302


def test_the_feed_puts_changed_rows_in_place(web: Web) -> None:
    key = "risk|pupil7|again"
    repeated = raise_one(web.store, key=key)
    taken = raise_one(web.store, summary="Taken by someone else")
    untouched = raise_one(web.store, summary="Nobody touched it")
    dsl = sign_in(web, "dsl")
    page = text(dsl.get("/alerts"))
    since = re.search(r'data-since="([^"]+)"', page)
    assert since is not None
    # While the list is open: a repeat is folded in, and the deputy closes another.
    raise_one(web.store, key=key, at=T0 + timedelta(minutes=5))
    alert_cases.close(
        web.store,
        Actor("deputy"),
        taken,
        expected="new",
        outcome="no_concern",
        notes="",
        now=T0 + timedelta(minutes=5),
    )
    answer = dsl.get(f"/alerts/feed?after={untouched}&since={since[1]}").get_json()
    assert answer["rows"] == [] and answer["announce"] == ""
    changed = {r["id"]: r["html"] for r in answer["changed"]}
    assert set(changed) == {repeated, taken}  # closed, yet updated under "not closed"
    assert re.search(r'<td class="num">2</td>', changed[repeated])
    assert "Closed" in changed[taken]
    # An unreadable `since` is taken as "just now", not as an error.
    assert dsl.get(f"/alerts/feed?after={untouched}&since=yesterday").status_code == 200


def test_the_script_is_served_and_allowed_by_the_csp(web: Web) -> None:
    answer = web.client().get("/alerts/alert_feed.js")
    assert answer.status_code == 200 and answer.mimetype == "text/javascript"
    assert b"/alerts/feed" not in answer.data or b"dataset.feed" in answer.data
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "default-src 'none'" in csp and "unsafe-eval" not in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]


# -- one alert ----------------------------------------------------------------------------------


def seed_timeline(web: Web) -> None:
    with web.store.begin() as conn:
        conn.execute(
            access_log.insert(),
            [
                log_line(T0 - timedelta(minutes=20), search_term="feeling sad"),
                log_line(
                    T0,
                    host="hurt.example",
                    url="https://hurt.example/page",
                    decision="block",
                    reason="category",
                    category="self_harm",
                    reference="SG-AAAA-BBBB",
                ),
                log_line(T0 + timedelta(minutes=9), check_visit=True, host="canary.example"),
                log_line(T0 + timedelta(hours=3), host="later.example"),
            ],
        )


def test_the_alert_page_shows_everything_and_audits_the_look(web: Web) -> None:
    alert_id = raise_one(web.store)
    seed_timeline(web)
    dsl = sign_in(web, "dsl")
    answer = dsl.get(f"/alerts/{alert_id}", environ_base={"REMOTE_ADDR": "10.20.0.5"})
    page = text(answer)
    assert answer.status_code == 200
    for said in (
        "Risk phrase in a search: Self-harm (severity 4)",
        "Severity 4 High",
        "<dt>User</dt><dd>Pupil7</dd>",  # the event's fields with their labels
        "<dt>Search</dt><dd>how to hurt myself</dd>",
        "Nobody: no channel is set up",
        "Timeline of user pupil7",
        "feeling sad",
        "SG-AAAA-BBBB",
        "Termly check visit",
        "The alert was raised here",
    ):
        assert said in page, said
    assert "later.example" not in page  # more than an hour after
    assert page.index("feeling sad") < page.index("The alert was raised here")
    assert page.index("The alert was raised here") < page.index("hurt.example")
    (look,) = looks(web)
    assert (look.actor, look.subject, look.address) == ("dsl", "user:pupil7", "10.20.0.5")
    assert look.detail["reason"] == f"alert {alert_id}"


def test_recipients_escalation_and_history_are_shown(web: Web) -> None:
    alert_id = raise_one(web.store, severity=5)
    with web.store.begin() as conn:
        conn.execute(
            alerts.update()
            .where(alerts.c.id == alert_id)
            .values(
                recipients=["email:dsl@test.example", "teams"],
                escalation_level=1,
                escalated_at=T0 + timedelta(minutes=15),
            )
        )
        audit.append(
            conn,
            actor="schoolgate",
            action=alert_cases.ESCALATE,
            subject=f"alert:{alert_id}",
            detail={"level": 1, "to": ["deputy"], "unacknowledged_minutes": 15, "emailed": True},
            at=T0 + timedelta(minutes=15),
        )
    alert_cases.acknowledge(web.store, Actor("deputy"), alert_id, T0 + timedelta(minutes=17))
    page = text(sign_in(web, "dsl").get(f"/alerts/{alert_id}"))
    assert "dsl@test.example by email, Teams" in page
    history = re.findall(r"<li><span class=\"nowrap\">([^<]+)</span>: ([^<]+)</li>", page)
    assert history == [
        ("10:00 on Tue 8 Dec 2026", "Raised"),
        ("10:15 on Tue 8 Dec 2026", "Escalated to the deputies (deputy): not acknowledged"),
        ("10:17 on Tue 8 Dec 2026", "Acknowledged by deputy"),
    ]


def test_acknowledge_then_close_through_the_pages(web: Web) -> None:
    alert_id = raise_one(web.store)
    dsl = sign_in(web, "dsl")
    answer = post(dsl, alert_id, "acknowledge")
    assert answer.status_code == 303  # type: ignore[attr-defined]
    page = text(dsl.get(f"/alerts/{alert_id}"))
    assert "Acknowledged: the alert is yours" in page
    assert "Acknowledged by dsl" in page
    assert f'action="/alerts/{alert_id}/acknowledge"' not in page

    # Referred needs notes: refused, with what was typed kept.
    answer = post(dsl, alert_id, "close", state="acknowledged", outcome="referred", notes=" ")
    assert answer.status_code == 400  # type: ignore[attr-defined]
    assert "needs notes" in text(answer)  # type: ignore[arg-type]
    assert 'value="referred" required checked' in text(answer)  # type: ignore[arg-type]
    answer = post(
        dsl,
        alert_id,
        "close",
        state="acknowledged",
        outcome="referred",
        notes="Referred to children's services (MASH), ref 1234.",
    )
    assert answer.status_code == 303  # type: ignore[attr-defined]
    row = row_of(web, alert_id)
    assert (row.state, row.outcome, row.closed_by) == ("closed", "referred", "dsl")
    page = text(dsl.get(f"/alerts/{alert_id}"))
    assert "Outcome: Referred" in page and "ref 1234" in page
    assert "Closed by dsl: Referred, with notes" in page
    actions = [r.action for r in audit.records(web.store) if r.subject == f"alert:{alert_id}"]
    assert actions == ["alert.acknowledge", "alert.close"]
    # A closed alert can't be acknowledged, even by a post made up by hand.
    answer = post(dsl, alert_id, "acknowledge")
    assert answer.status_code == 409  # type: ignore[attr-defined]
    assert "it can&#39;t be acknowledged" in text(answer)  # type: ignore[arg-type]


def test_two_dsls_at_once_the_second_is_told(web: Web) -> None:
    alert_id = raise_one(web.store)
    dsl, deputy = sign_in(web, "dsl"), sign_in(web, "deputy")
    # Both have the page open while the alert is new.
    assert 'name="state" value="new"' in text(deputy.get(f"/alerts/{alert_id}"))
    assert post(dsl, alert_id, "acknowledge").status_code == 303  # type: ignore[attr-defined]
    answer = post(deputy, alert_id, "close", state="new", outcome="no_concern", notes="Fine")
    assert answer.status_code == 409  # type: ignore[attr-defined]
    page = text(answer)  # type: ignore[arg-type]
    assert "dsl acknowledged this alert while you had it open" in page
    assert ">Fine</textarea>" in page  # what the deputy typed is kept
    assert row_of(web, alert_id).state == "acknowledged"
    assert post(deputy, alert_id, "acknowledge").status_code == 409  # type: ignore[attr-defined]


def test_reopen(web: Web) -> None:
    alert_id = raise_one(web.store)
    dsl = sign_in(web, "dsl")
    post(dsl, alert_id, "close", state="new", outcome="false_positive", notes="")
    assert "Reopen it" in text(dsl.get(f"/alerts/{alert_id}"))
    assert post(dsl, alert_id, "reopen", reason="").status_code == 400  # type: ignore[attr-defined]
    answer = post(dsl, alert_id, "reopen", reason="The teacher raised it again")
    assert answer.status_code == 303  # type: ignore[attr-defined]
    page = text(dsl.get(f"/alerts/{alert_id}"))
    assert "Reopened by dsl: “The teacher raised it again”" in page
    assert row_of(web, alert_id).state == "acknowledged"


def test_actions_need_a_csrf_token(web: Web) -> None:
    alert_id = raise_one(web.store)
    dsl = sign_in(web, "dsl")
    assert dsl.post(f"/alerts/{alert_id}/acknowledge").status_code == 400
    assert row_of(web, alert_id).state == "new"


def test_the_incident_link_shows_only_once_incidents_exist(web: Web) -> None:
    alert_id = raise_one(web.store)
    dsl = sign_in(web, "dsl")
    page = text(dsl.get(f"/alerts/{alert_id}"))
    has_incidents = "incidents.incident_new" in web.app.view_functions
    assert ("Open an incident from this alert" in page) == has_incidents
    if has_incidents:
        assert f"/incidents/new?alert={alert_id}" in page
    # The IT provider keeps no incident log: never a link for them.
    tech = raise_one(web.store, **TECH_ALERT)  # type: ignore[arg-type]
    assert "Open an incident" not in text(sign_in(web, "tech").get(f"/alerts/{tech}"))


def test_a_concern_about_staff_is_closed_in_its_own_words(web: Web) -> None:
    staff = raise_one(web.store, stored_audience="staff", summary="Concern about a teacher")
    page = text(sign_in(web, "head").get(f"/alerts/{staff}"))
    assert "Spoke to the member of staff" in page and "Spoke to the pupil" not in page
    pupil = raise_one(web.store)
    assert "Spoke to the pupil" in text(sign_in(web, "dsl").get(f"/alerts/{pupil}"))

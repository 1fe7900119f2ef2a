"""Who decides and who is told: `unblocks:` (deciders, IT provider, limits), `notifications:`
(email, webhook, Teams, Slack, syslog, contacts) and `monitoring:` (phrase libraries,
high-risk categories, repeated blocks, retention).
"""

from __future__ import annotations

from typing import Any

from proxy_addons.core.content.phrase_library import PhraseError, load_libraries
from proxy_addons.core.policy.checker import RESERVED_CATEGORY, Checker, empty_map, name_set
from proxy_addons.core.policy.model import (
    Audience,
    Category,
    EmailChannel,
    Monitoring,
    Notifications,
    Profile,
    SyslogChannel,
    UnblockRules,
    WebhookChannel,
)
from proxy_addons.core.policy.schedules_section import time_ranges
from proxy_addons.core.policy.yaml_reader import LMap, Where

AUDIENCES = ("safeguarding", "technical", "all")


def load_unblocks(ck: Checker, raw: Any, where: Where) -> UnblockRules:
    keys = ["deciders", "it_provider", "require_it_confirmation", "max_days", "lessons", "web_url"]
    m = ck.mapping(raw, where, "unblocks", keys)
    m = m if m is not None else empty_map(where)
    max_days = m.get("max_days", 7)
    if not isinstance(max_days, int) or isinstance(max_days, bool) or not 1 <= max_days <= 366:
        ck.fail(m.at("max_days"), "max_days should be a whole number of days from 1 to 366")
        max_days = 7
    confirm = m.get("require_it_confirmation", False)
    if not isinstance(confirm, bool):
        ck.fail(m.at("require_it_confirmation"), "require_it_confirmation should be true or false")
        confirm = False
    return UnblockRules(
        deciders=name_set(ck, m.get("deciders"), m.at("deciders"), "deciders"),
        it_provider=name_set(ck, m.get("it_provider"), m.at("it_provider"), "it_provider"),
        require_it_confirmation=confirm,
        max_days=max_days,
        lessons=time_ranges(ck, m.get("lessons"), m.at("lessons"), "lessons"),
        web_url=str(m.get("web_url", "https://127.0.0.1:8081")).rstrip("/"),
    )


def load_notifications(ck: Checker, raw: Any, where: Where) -> Notifications:
    keys = ["email", "webhook", "teams_url_file", "slack_url_file", "syslog", "contacts"]
    m = ck.mapping(raw, where, "notifications", keys)
    m = m if m is not None else empty_map(where)
    email = None
    if m.get("email") is not None:
        keys = ["host", "port", "starttls", "username", "password_file", "sender"]
        em = ck.mapping(m["email"], m.at("email"), "email", keys)
        if em is not None:
            host = ck.text(em.get("host"), em.at("host"), "the mail server's host")
            sender = ck.text(em.get("sender"), em.at("sender"), "the sender's address")
            pw = em.get("password_file")
            pw_path = ck.path(pw, em.at("password_file"), "the password file") if pw else None
            port = em.get("port", 587)
            if not isinstance(port, int):
                ck.fail(em.at("port"), "port should be a number")
                port = 587
            if host and sender:
                user = em.get("username")
                email = EmailChannel(
                    host, port, bool(em.get("starttls", True)), user and str(user), pw_path, sender
                )
    webhook = None
    if m.get("webhook") is not None:
        keys = ["url", "secret_file", "audience"]
        wm = ck.mapping(m["webhook"], m.at("webhook"), "webhook", keys)
        if wm is not None:
            url = ck.text(wm.get("url"), wm.at("url"), "the webhook's URL")
            secret = ck.path(wm.get("secret_file"), wm.at("secret_file"), "the secret file")
            audience = str(wm.get("audience", "all")).strip().lower()
            if audience not in AUDIENCES:
                choices = ", ".join(AUDIENCES)
                ck.fail(wm.at("audience"), f"the webhook's audience should be one of {choices}")
            elif url and secret:
                webhook = WebhookChannel(url, secret, audience)
    contacts_raw = m.get("contacts")
    contacts: dict[str, str] = {}
    if contacts_raw is not None:
        cm = (
            ck.mapping(contacts_raw, m.at("contacts"), "contacts", [])
            if not isinstance(contacts_raw, LMap)
            else contacts_raw
        )
        for name, address in (cm or {}).items():
            if "@" not in str(address):
                ck.fail(m.at("contacts"), f"'{address}' for {name} is not an email address")
            else:
                contacts[str(name).lower()] = str(address)
    teams = slack = None
    if m.get("teams_url_file") is not None:
        teams = ck.path(m["teams_url_file"], m.at("teams_url_file"), "the Teams webhook URL file")
    if m.get("slack_url_file") is not None:
        slack = ck.path(m["slack_url_file"], m.at("slack_url_file"), "the Slack webhook URL file")
    syslog = None
    if m.get("syslog") is not None:
        syslog = _syslog(ck, m["syslog"], m.at("syslog"))
    return Notifications(email, webhook, contacts, teams, slack, syslog)


def _syslog(ck: Checker, raw: Any, where: Where) -> SyslogChannel | None:
    sm = ck.mapping(raw, where, "syslog", ["host", "port", "protocol"])
    if sm is None:
        return None
    host = ck.text(sm.get("host"), sm.at("host"), "the syslog collector's host")
    protocol = str(sm.get("protocol", "udp")).strip().lower()
    if protocol not in ("udp", "tcp"):
        ck.fail(sm.at("protocol"), "syslog protocol should be udp or tcp")
    port = sm.get("port", 514)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        ck.fail(sm.at("port"), "syslog port should be a number from 1 to 65535")
        port = None
    if host is None or port is None or protocol not in ("udp", "tcp"):
        return None
    return SyslogChannel(host, port, protocol)


def load_monitoring(
    ck: Checker,
    raw: Any,
    where: Where,
    profiles: dict[str, Profile],
    categories: dict[str, Category],
    unblocks: UnblockRules,
) -> Monitoring:
    keys = [
        "retention_days",
        "scan_page_text",
        "phrase_libraries",
        "high_risk_categories",
        "repeated_blocks",
        "fold_minutes",
        "safeguarding",
        "technical",
        "deputies",
        "headteacher",
        "chair_of_governors",
        "staff_profiles",
        "escalation",
        "review_every_months",
        "sensitive_categories",
        "trusted_adults",
    ]
    m = ck.mapping(raw, where, "monitoring", keys)
    m = m if m is not None else empty_map(where)

    scan = name_set(ck, m.get("scan_page_text"), m.at("scan_page_text"), "scan_page_text")
    for name in sorted(scan - {p.lower() for p in profiles}):
        ck.fail(m.at("scan_page_text"), f"'{name}' is not a profile defined under 'profiles:'")
    libraries = []
    for i, item in enumerate(
        ck.listing(m.get("phrase_libraries"), m.at("phrase_libraries"), "phrase_libraries") or []
    ):
        path = ck.path(item, m.at("phrase_libraries"), f"phrase library {i + 1}")
        if path is not None:
            libraries.append(path)
    risky = frozenset(
        str(c)
        for c in ck.listing(
            m.get("high_risk_categories"), m.at("high_risk_categories"), "high_risk_categories"
        )
        or []
    )
    for cat in sorted(risky - ck.declared_categories - {RESERVED_CATEGORY}):
        ck.fail(
            m.at("high_risk_categories"), f"category '{cat}' is not defined under 'categories:'"
        )
    repeat_count, repeat_minutes = 5, 10
    if m.get("repeated_blocks") is not None:
        rm = ck.mapping(
            m["repeated_blocks"], m.at("repeated_blocks"), "repeated_blocks", ["count", "minutes"]
        )
        if rm is not None:
            repeat_count = rm.get("count", 5) if isinstance(rm.get("count", 5), int) else 5
            repeat_minutes = rm.get("minutes", 10) if isinstance(rm.get("minutes", 10), int) else 10
    safeguarding = name_set(ck, m.get("safeguarding"), m.at("safeguarding"), "safeguarding")
    technical = name_set(ck, m.get("technical"), m.at("technical"), "technical")
    if libraries:
        try:
            load_libraries(libraries)  # a broken library is a broken policy: said with its line
        except PhraseError as exc:
            ck.fail(Where(exc.file, exc.line), f"{exc.field}: {exc.message}")
    people = {
        key: name_set(ck, m.get(key), m.at(key), key)
        for key in ("deputies", "headteacher", "chair_of_governors")
    }
    staff = name_set(ck, m.get("staff_profiles"), m.at("staff_profiles"), "staff_profiles")
    for name in sorted(staff - {p.lower() for p in profiles}):
        ck.fail(m.at("staff_profiles"), f"'{name}' is not a profile defined under 'profiles:'")
    if m.get("staff_profiles") is None:  # left out: every profile for staff
        staff = frozenset(n.lower() for n, p in profiles.items() if p.audience is Audience.STAFF)
    sensitive = name_set(
        ck, m.get("sensitive_categories"), m.at("sensitive_categories"), "sensitive_categories"
    )
    for cat in sorted(sensitive - {c.lower() for c in ck.declared_categories}):
        ck.fail(
            m.at("sensitive_categories"), f"category '{cat}' is not defined under 'categories:'"
        )
    adults = tuple(
        str(a).strip()
        for a in ck.listing(m.get("trusted_adults"), m.at("trusted_adults"), "trusted_adults") or []
        if str(a).strip()
    )
    em = ck.mapping(
        m.get("escalation"), m.at("escalation"), "escalation", ["after_minutes", "school_hours"]
    )
    em = em if em is not None else empty_map(m.at("escalation"))
    hours = time_ranges(
        ck, em.get("school_hours", "08:00-17:00"), em.at("school_hours"), "school_hours"
    )
    return Monitoring(
        retention_days=ck.whole(m, "retention_days", 90, 1, 3650),
        scan_page_text=frozenset(p for p in profiles if p.lower() in scan),
        phrase_libraries=tuple(libraries),
        high_risk_categories=risky,
        repeat_count=repeat_count,
        repeat_minutes=repeat_minutes,
        fold_minutes=ck.whole(m, "fold_minutes", 10, 0, 1440),
        safeguarding=safeguarding or unblocks.deciders,
        technical=technical or unblocks.it_provider,
        deputies=people["deputies"],
        headteacher=people["headteacher"],
        chair_of_governors=people["chair_of_governors"],
        staff_profiles=staff,
        escalate_after_minutes=ck.whole(em, "after_minutes", 15, 1, 1440),
        school_hours=hours,
        review_every_months=ck.whole(m, "review_every_months", 12, 1, 36),
        sensitive_categories=sensitive,
        trusted_adults=adults,
    )

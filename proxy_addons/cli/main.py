"""`schoolgate`: run the gateway, check and explain policies, show status.

This module only builds the parser and dispatches. Each command's work is in its own module
of this package, named in the command's `handler` ("module:function"), and imported only
when that command runs (importlib): some load what the others must not pay for, e.g. `run`
loads mitmproxy and the whole add-on chain, `ca` mitmproxy's certificate code, `netwatch`
scapy, and `schoolgate web` (a separate service) must load none of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from proxy_addons.cli.account_args import add_account
from proxy_addons.cli.args import add_store_arguments, missing_defaults
from proxy_addons.cli.backup_args import add_backup
from proxy_addons.cli.ca_args import add_ca
from proxy_addons.cli.policy_args import add_policy
from proxy_addons.cli.tunnel_args import add_tunnel
from proxy_addons.core.policy.load import PolicyError
from proxy_addons.core.policy.runtime import PolicyLoadError
from proxy_addons.core.unblocks import Scope, Status
from proxy_addons.ops.install_config import ENV_FILE
from proxy_addons.ops.list_update.config import CONFIG_NAME

DEFAULT_POLICY = os.environ.get("SCHOOLGATE_POLICY", "policies/school.yaml")
DEFAULT_VAR = os.environ.get("SCHOOLGATE_VAR", "var")
DEFAULT_PROXY = os.environ.get("SCHOOLGATE_PROXY", "http://127.0.0.1:8080")

Commands = argparse._SubParsersAction  # type: ignore[type-arg]


def _runs(parser: argparse.ArgumentParser, handler: str) -> None:
    """The command's handler, "module:function" in proxy_addons.cli."""
    parser.set_defaults(handler=handler)


def _store_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_store_arguments(parser, DEFAULT_POLICY, DEFAULT_VAR)
    return parser


def _add_run(sub: Commands) -> None:
    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--policy", default=DEFAULT_POLICY)
    run.add_argument("--var", default=DEFAULT_VAR, help="state folder (CA, index, status)")
    run.add_argument("--listen-host", default="127.0.0.1")
    run.add_argument("--listen-port", type=int, default=8080)
    run.add_argument("--set", action="append", metavar="OPTION=VALUE", help="a mitmproxy option")
    run.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("SCHOOLGATE_WORKERS", "1")),
        help="gateway processes sharing the listening port (one per core)",
    )
    run.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    _runs(run, "run:cmd_run")


def _add_unblock(sub: Commands) -> None:
    unblock = sub.add_parser("unblock", help="temporary educational unblocks")
    usub = unblock.add_subparsers(dest="unblock_command", required=True)
    req = usub.add_parser("request", help="ask for a page or site to be unblocked")
    req.add_argument("target", help="URL, URL prefix or domain")
    req.add_argument("--as", dest="as_user", required=True, help="the member of staff asking")
    req.add_argument("--scope", choices=[s.value for s in Scope])
    req.add_argument("--for-user")
    req.add_argument("--for-users", help="comma-separated user names, e.g. a class")
    req.add_argument("--for-profile")
    req.add_argument("--for-device", help="a device's IP address")
    req.add_argument("--until", help="end time (school time), e.g. 15:15 or 2026-11-25 15:15")
    req.add_argument("--minutes", type=int)
    req.add_argument("--reason", help="the educational reason (required)")
    for name in ("approve", "reject", "confirm", "revoke", "extend", "show"):
        p = usub.add_parser(name)
        p.add_argument("id")
        if name != "show":
            p.add_argument("--as", dest="as_user", required=True)
        if name in ("approve", "reject"):
            p.add_argument("--comment")
        if name in ("revoke", "extend"):
            p.add_argument("--reason")
        if name == "extend":
            p.add_argument(
                "--until", required=True, help="school time, e.g. 15:15 or tomorrow 15:15"
            )
        _store_args(p)
    lst = usub.add_parser("list")
    lst.add_argument("--status", action="append", choices=[s.value for s in Status])
    _store_args(lst)
    _store_args(req)
    _store_args(usub.add_parser("expire", help="record unblocks whose window has ended"))
    _runs(unblock, "unblock:cmd_unblock")


def _add_records(sub: Commands) -> None:
    """The audit trail, the termly report and the access log."""
    aud = sub.add_parser("audit", help="the tamper-evident audit trail")
    asub = aud.add_subparsers(dest="audit_command", required=True)
    _store_args(asub.add_parser("verify", help="check the hash chain"))
    export = asub.add_parser("export", help="records as CSV or JSON")
    export.add_argument("--from", dest="start", help="school time: today, 2026-11-01, 14:30...")
    export.add_argument("--to", dest="end", help="school time; a date alone includes that day")
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    _store_args(export)
    _runs(aud, "audit:cmd_audit")

    rep = sub.add_parser("report", help="the termly monitoring report for governors")
    rep.add_argument("--term", required=True, help="a term's name from the policy")
    rep.add_argument("--out", default="report", help="folder for report.html and the CSVs")
    _store_args(rep)
    _runs(rep, "report:cmd_report")

    log = sub.add_parser("log", help="the access log: search it, purge old records")
    logsub = log.add_subparsers(dest="log_command", required=True)
    find = logsub.add_parser("search", help="records matching every filter given, oldest first")
    find.add_argument("--user")
    find.add_argument("--ip", help="the device's IP address")
    find.add_argument("--profile")
    find.add_argument("--category")
    find.add_argument("--decision", choices=["allow", "block"])
    find.add_argument("--host", help="a host and its subdomains")
    find.add_argument("--term", help="part of a search term")
    find.add_argument(
        "--reference", help="the reference a block page showed (SG-XXXX-XXXX), to find that block"
    )
    find.add_argument(
        "--from", dest="start", help="school time: today, yesterday, 2026-11-25 09:00"
    )
    find.add_argument("--to", dest="end", help="school time; a date alone includes that day")
    find.add_argument("--limit", type=int, default=100, help="the newest N records (default 100)")
    find.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _store_args(find)
    _store_args(logsub.add_parser("purge", help="delete records older than the retention period"))
    _runs(log, "log:cmd_log")


def _add_devices(sub: Commands) -> None:
    dev = sub.add_parser("devices", help="enrolled devices: inventory and compliance")
    devsub = dev.add_subparsers(dest="devices_command", required=True)
    _store_args(devsub.add_parser("list", help="every device, its compliance and last report"))
    show = devsub.add_parser("show", help="one device's last report")
    show.add_argument("id")
    _store_args(show)
    rev = devsub.add_parser("revoke", help="refuse a device's token until it enrols again")
    rev.add_argument("id")
    rev.add_argument("--as", dest="as_user", required=True, help="who revokes it (audited)")
    rev.add_argument("--reason")
    _store_args(rev)
    dexp = devsub.add_parser("export", help="the inventory as CSV")
    dexp.add_argument("--format", choices=["csv"], default="csv")
    _store_args(dexp)
    _runs(dev, "devices:cmd_devices")
    for name, what in (
        ("import-allocation", "set whom devices are allocated to, asset tags, locations"),
        ("import-mdm", "add or update devices from the school's MDM export (iPads...)"),
    ):
        imp = devsub.add_parser(name, help=f"{what}, from a CSV (docs/inventory.md)")
        imp.add_argument("file")
        imp.add_argument("--as", dest="as_user", required=True, help="who imports it (audited)")
        _runs(_store_args(imp), "device_imports:cmd_devices_import")

    unk = devsub.add_parser("unknown", help="devices seen on the network that never enrolled")
    unk.add_argument("--since-days", type=int, default=7, help="seen within N days (default 7)")
    _store_args(unk)
    _runs(unk, "netwatch:cmd_devices_unknown")
    watch = sub.add_parser(
        "netwatch", help="record devices seen on the network (ARP, DHCP) and circumvention"
    )
    watch.add_argument("--interface", required=True, help="the school network's interface")
    watch.add_argument(
        "--no-circumvention",
        action="store_true",
        help="only ARP and DHCP: don't look for outside DNS, DoT, VPNs and QUIC",
    )
    _store_args(watch)
    _runs(watch, "netwatch:cmd_netwatch")


def _add_people(sub: Commands) -> None:
    """One person's records: the subject-access export (docs/privacy.md)."""
    people = sub.add_parser("people", help="one person's records").add_subparsers(
        dest="people_command", required=True
    )
    sar = people.add_parser(
        "export", help="everything held about one person (subject access request); audited"
    )
    sar.add_argument("user", help="their user name")
    sar.add_argument("--device", action="append", help="a device id that was theirs")
    sar.add_argument("--ip", action="append", help="an address only they used (rarely)")
    sar.add_argument("--as", dest="as_user", required=True, help="who exports (audited)")
    sar.add_argument("--reason", required=True, help="why, e.g. the request's reference")
    sar.add_argument("--format", choices=["json", "zip"], default="json")
    sar.add_argument("--out", help="the file to write (default: JSON on standard output)")
    _runs(_store_args(sar), "subject_access:cmd_people_export")


def _add_ca_and_backup(sub: Commands) -> None:
    add_ca(sub, _runs, DEFAULT_VAR, DEFAULT_POLICY)
    add_backup(sub, _store_args)


def _add_checks(sub: Commands) -> None:
    """Termly filtering checks (docs/checks.md)."""
    checks = sub.add_parser("checks", help="termly filtering checks (docs/checks.md)")
    csub = checks.add_subparsers(dest="checks_command", required=True)

    run = csub.add_parser("run", help="run the suite from the gateway as a profile")
    run.add_argument("--profile", required=True)
    run.add_argument("--by", required=True, help="the member of staff running the check")
    run.add_argument("--suite", help="suite file (default: the policy's checks.suite)")
    run.add_argument("--proxy", default=DEFAULT_PROXY, help="the gateway's proxy address")
    run.add_argument("--ca", help="the school's CA certificate (default: VAR/ca/...)")
    run.add_argument("--timeout", type=float, default=10.0, help="seconds per case")
    run.add_argument(
        "--proxy-user",
        help="with proxy sign-in on: an account to sign in as (password from "
        "SCHOOLGATE_CHECK_PROXY_PASSWORD or asked for); the profile is still --profile",
    )
    _runs(_store_args(run), "checks:cmd_checks_run")

    lst = csub.add_parser("list", help="recorded runs, newest first")
    lst.add_argument("--term")
    lst.add_argument("--limit", type=int, default=50)
    _runs(_store_args(lst), "checks:cmd_checks_list")

    show = csub.add_parser("show", help="one run: every case's result and the actions")
    show.add_argument("run", type=int)
    _runs(_store_args(show), "checks:cmd_checks_show")

    action = csub.add_parser("action", help="record what was done about a run or a case")
    action.add_argument("run", type=int)
    action.add_argument("--case", help="the case it is about (default: the whole run)")
    action.add_argument("--by", required=True)
    action.add_argument("--text", required=True)
    _runs(_store_args(action), "checks:cmd_checks_action")

    due = csub.add_parser("due", help="is this term's check due and not done?")
    due.add_argument("--remind", action="store_true", help="remind the named people now")
    _runs(_store_args(due), "checks:cmd_checks_due")

    report = csub.add_parser("report", help="the governors' report (HTML and CSV)")
    report.add_argument("--term", required=True)
    report.add_argument("--out", default="checks-report")
    _runs(_store_args(report), "checks:cmd_checks_report")


def _add_upkeep(sub: Commands) -> None:
    """The doctor, store upgrades and list updates."""
    doc = sub.add_parser(
        "doctor", help="check this installation and say what to fix (exit 1 on FAIL)"
    )
    doc.add_argument("--env", default=str(ENV_FILE), help="the installation's settings file")
    doc.add_argument("--policy", help="the policy (default: SCHOOLGATE_POLICY of the settings)")
    doc.add_argument("--var", help="the data folder (default: SCHOOLGATE_VAR of the settings)")
    doc.add_argument("--user", help="the service user (default: schoolgate)")
    doc.add_argument("--json", action="store_true", help="the results as JSON")
    _runs(doc, "doctor:cmd_doctor")

    store = sub.add_parser("store", help="the gateway's database").add_subparsers(
        dest="store_command", required=True
    )
    up = store.add_parser("upgrade", help="migrate the store to this version's schema")
    up.add_argument("--var", default=DEFAULT_VAR)
    up.add_argument(
        "--dsn",
        default=os.environ.get("SCHOOLGATE_DSN") or None,
        help="PostgreSQL DSN (default: SCHOOLGATE_DSN, else SQLite under --var)",
    )
    _runs(up, "store:cmd_store_upgrade")
    purge = store.add_parser("purge", help="delete what is kept past the policy's retention")
    purge.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    _runs(_store_args(purge), "retention:cmd_store_purge")

    lists = sub.add_parser("lists", help="the category lists").add_subparsers(
        dest="lists_command", required=True
    )
    update = lists.add_parser(
        "update", help="fetch the list archives of list-updates.yaml, check and swap them in"
    )
    update.add_argument("--policy", default=DEFAULT_POLICY)
    update.add_argument("--var", default=DEFAULT_VAR)
    update.add_argument("--config", help=f"default: {CONFIG_NAME} beside the policy")
    update.add_argument(
        "--force",
        action="store_true",
        help="take lists that shrank below min_fraction; fetch every illegal-tier feed now",
    )
    update.add_argument(
        "--feeds-only", action="store_true", help="only the illegal tier's feeds that are due"
    )
    _runs(update, "lists:cmd_lists_update")


def _add_web_and_status(sub: Commands) -> None:
    web = sub.add_parser("web", help="run the admin web app (unblock approvals) and the device API")
    web.add_argument("--policy", default=DEFAULT_POLICY)
    web.add_argument("--var", default=DEFAULT_VAR)
    web.add_argument("--dsn", default=os.environ.get("SCHOOLGATE_DSN") or None)
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8081)
    web.add_argument(
        "--cert",
        default=os.environ.get("SCHOOLGATE_WEB_CERT") or None,
        help="TLS certificate chain (PEM); default: the one `ca init` issued in VAR/tls",
    )
    web.add_argument("--key", default=os.environ.get("SCHOOLGATE_WEB_KEY") or None)
    web.add_argument(
        "--http-port",
        type=lambda text: int(text) if text.strip() else None,  # empty in schoolgate.env: none
        help="a plain-HTTP port that only redirects to HTTPS",
    )
    web.add_argument("--plain-http", action="store_true", help="no TLS: behind an HTTPS proxy")
    web.add_argument(
        "--trusted-proxies", type=int, default=0, help="reverse-proxy hops to trust X-Forwarded-*"
    )
    _runs(web, "web:cmd_web")

    status = sub.add_parser("status", help="the running gateway's state")
    status.add_argument("--var", default=DEFAULT_VAR)
    status.add_argument(
        "--status-url",
        help="the gateway's live /status (default: the one the status file names, "
        "then http://127.0.0.1:9464/status)",
    )
    _runs(status, "status:cmd_status")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="schoolgate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    add_policy(sub, DEFAULT_POLICY, DEFAULT_VAR)
    _add_unblock(sub)
    _add_records(sub)
    add_account(sub, _store_args)
    _add_devices(sub)
    _add_people(sub)
    _add_ca_and_backup(sub)
    _add_checks(sub)
    _add_upkeep(sub)
    _add_web_and_status(sub)
    add_tunnel(sub, _store_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = missing_defaults(args, DEFAULT_POLICY, DEFAULT_VAR)
    if problem:
        print(f"schoolgate: {problem}", file=sys.stderr)
        return 1
    module, function = args.handler.split(":")
    try:
        command = getattr(importlib.import_module(f"proxy_addons.cli.{module}"), function)
        return int(command(args))
    except Exception as exc:  # a file, policy or store problem is a message, not a traceback
        if not _plain_error(exc):
            raise
        print(f"schoolgate: {exc}", file=sys.stderr)
        return 1


def _plain_error(exc: Exception) -> bool:
    """An error the person can act on from its message alone (bugs keep their traceback)."""
    if isinstance(exc, PolicyError | PolicyLoadError | OSError):
        return True
    return type(exc).__module__.startswith("sqlalchemy.")  # the store can't be opened or read


if __name__ == "__main__":
    sys.exit(main())

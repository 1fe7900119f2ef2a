"""Who is on a Linux device: the console user (logind's seat0) and the account databases
(/etc/passwd, /etc/group, /etc/shadow), read the way the screen lock and accounts checks
need them. Each reader returns None when its file can't be read, so a check can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.checks.base import Context, describe

NO_SEAT_SESSION = "no session on seat0"  # logind answered: no one at the screen


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def console_user(ctx: Context) -> tuple[str | None, str]:
    """The user signed in at the machine's own screen (seat0), or None and why not."""
    res = ctx.runner.run(["loginctl", "list-sessions", "--no-legend"], timeout=10)
    if not res.ok:
        return None, describe(res)
    for line in res.stdout.splitlines():
        fields = line.split()
        # SESSION UID USER SEAT [TTY ...]
        if len(fields) >= 4 and fields[3] == "seat0":
            return fields[2], ""
    return None, NO_SEAT_SESSION


def accounts(ctx: Context) -> list[Account] | None:
    """/etc/passwd's accounts; lines that aren't seven fields with numeric ids are skipped."""
    text = ctx.runner.read("/etc/passwd")
    if text is None:
        return None
    out = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[2].isdigit() and fields[3].isdigit():
            out.append(Account(fields[0], int(fields[2]), int(fields[3]), fields[5]))
    return out


def home(ctx: Context, user: str) -> str | None:
    for account in accounts(ctx) or []:
        if account.name == user:
            return account.home
    return None


def groups(ctx: Context) -> dict[str, tuple[int, list[str]]] | None:
    """/etc/group: name -> (gid, members listed on its line)."""
    text = ctx.runner.read("/etc/group")
    if text is None:
        return None
    out: dict[str, tuple[int, list[str]]] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[2].isdigit():
            members = [m.strip() for m in fields[3].split(",") if m.strip()]
            out[fields[0]] = (int(fields[2]), members)
    return out


def locked(ctx: Context, today_days: int) -> set[str] | None:
    """Accounts that can't sign in with a password: /etc/shadow's hash starts with ! or *
    (passwd -l, or never given one), or the account expired. None: shadow unreadable."""
    text = ctx.runner.read("/etc/shadow")
    if text is None:
        return None
    out = set()
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 2:
            continue
        expired = len(fields) >= 8 and fields[7].isdigit() and int(fields[7]) <= today_days
        if fields[1].startswith(("!", "*")) or expired:
            out.add(fields[0])
    return out

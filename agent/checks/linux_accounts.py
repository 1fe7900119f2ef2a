"""Linux accounts: who can administer the device, who is signed in, automatic sign-in, guest.

Administrators are the accounts that can become root with their own password: members of
sudo, wheel and admin (and any group sudoers lets run commands as root), such users, and
uid-0 accounts other than root (root itself is built in and left out). Accounts locked in
/etc/shadow can't sign in and are left out too, but listed, when shadow can be read.
Automatic sign-in is read from each display manager's own files (GDM, LightDM, SDDM) and
getty's; the guest account exists only in LightDM.
"""

from __future__ import annotations

import configparser
import re

from agent.checks.base import Context
from agent.checks.judge import judge_accounts
from agent.checks.linux_usb import config_files
from agent.checks.linux_users import NO_SEAT_SESSION, console_user, groups, locked
from agent.checks.linux_users import accounts as passwd_accounts
from agent.report import CheckResult

ADMIN_GROUPS = ("sudo", "wheel", "admin")
GREETERS = ("gdm", "Debian-gdm", "gdm-greeter", "lightdm", "sddm")  # login screens' accounts
# A user specification: "who host = [(runas)] [TAGS:] commands". Any rule that runs commands
# as root makes an administrator, not only "ALL": `pupil ALL=(root) /usr/bin/vim` is a root
# shell one `:!sh` away, and most programs have such an escape.
_SUDO_RULE = re.compile(r"^(\S+)\s+[^=\s]+\s*=\s*(?:\(([^)]*)\))?\s*(\S.*)$")
GDM_FILES = ("/etc/gdm3/custom.conf", "/etc/gdm3/daemon.conf", "/etc/gdm/custom.conf")
LIGHTDM_DIRS = ("/etc/lightdm/lightdm.conf.d", "/usr/share/lightdm/lightdm.conf.d")
SDDM_DIRS = ("/etc/sddm.conf.d", "/usr/lib/sddm/sddm.conf.d")
GETTY_DIR = "/etc/systemd/system/getty@tty1.service.d"
# the programs that show each display manager is installed
DM_PROGRAMS = {"gdm": ("gdm3", "gdm"), "lightdm": ("lightdm",), "sddm": ("sddm",)}


_INCLUDE = re.compile(r"^[#@]include(dir)?\s+(\S+)\s*$")
_MAX_INCLUDES = 50  # sudo's own limit on nesting is far lower; a loop stops here


def _sudoers_texts(ctx: Context, main: str) -> list[str]:
    """The main file's text and every file it includes (@include, @includedir and their #
    forms, relative paths from the including file's folder), and /etc/sudoers.d's files
    even if not included (reading more can only show more administrators)."""
    texts: list[str] = []
    queue = [(main, False), ("/etc/sudoers.d", True)]
    seen: set[str] = set()
    while queue and len(seen) < _MAX_INCLUDES:
        path, is_dir = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        if is_dir:
            names = ctx.runner.listdir(path) or []
            # sudo skips names with a '.' or ending in '~' in an includedir
            queue += [(f"{path}/{n}", False) for n in names if "." not in n and not n.endswith("~")]
            continue
        text = ctx.runner.read(path)
        if text is None:
            continue
        texts.append(text)
        for line in text.splitlines():
            m = _INCLUDE.match(line.strip())
            if m:
                target = m.group(2)
                if not target.startswith("/"):
                    target = f"{path.rsplit('/', 1)[0]}/{target}"
                queue.append((target, bool(m.group(1))))
    return texts


def _as_root(runas: str | None) -> bool:
    """The rule's "(runas)" lets its commands run as root: none given means root."""
    if runas is None:
        return True
    users = runas.split(":", 1)[0]
    names = {u.strip() for u in users.split(",")} if users.strip() else {"root"}
    return bool(names & {"ALL", "root", "#0"})


def _sudoers(ctx: Context) -> tuple[set[str], set[str]] | None:
    """Groups and users sudoers lets run anything as root; None when /etc/sudoers can't be
    read."""
    if ctx.runner.read("/etc/sudoers") is None:
        return None
    admin_groups: set[str] = set()
    users: set[str] = set()
    for text in _sudoers_texts(ctx, "/etc/sudoers"):
        for line in text.splitlines():
            line = line.strip()
            if re.match(r"#(?!\d)", line):  # a comment ("#1000" is a user by uid)
                continue
            m = _SUDO_RULE.match(line)
            if not m or m.group(1).startswith("Defaults") or m.group(1).endswith("_Alias"):
                continue
            if not _as_root(m.group(2)):
                continue
            for who in m.group(1).split(","):  # "alice,%staff ALL=(ALL) ALL"
                (admin_groups if who.startswith("%") else users).add(who.lstrip("%"))
    return admin_groups, users


def administrators(ctx: Context) -> tuple[list[str] | None, dict[str, object]]:
    """The enabled administrator accounts (None: couldn't read) and what they came from."""
    people, table = passwd_accounts(ctx), groups(ctx)
    if people is None or table is None:
        return None, {"admins_source": "/etc/passwd or /etc/group unreadable"}
    sudo = _sudoers(ctx)
    admin_groups = set(ADMIN_GROUPS) | (sudo[0] if sudo else set())
    by_gid = {gid: name for name, (gid, _) in table.items()}
    for g in list(admin_groups):  # "%#27 ALL=(ALL) ALL" names a group by its gid
        if g.startswith("#") and g[1:].isdigit() and int(g[1:]) in by_gid:
            admin_groups.add(by_gid[int(g[1:])])
    names = {a.name for a in people if a.uid == 0}
    for group in admin_groups & set(table):
        gid, members = table[group]
        names |= set(members) | {a.name for a in people if a.gid == gid}
    by_uid = {a.uid: a.name for a in people}
    for who in sudo[1] if sudo else set():  # "#1001 ALL=..." names a user by uid
        number = who[1:]
        names.add(by_uid.get(int(number), who) if who.startswith("#") and number.isdigit() else who)
    names.discard("root")
    shut = locked(ctx, int(ctx.now.timestamp() // 86400))
    ev: dict[str, object] = {
        "admin_groups": sorted(admin_groups & set(table)),
        "sudoers": "read" if sudo is not None else "/etc/sudoers not found or unreadable",
        "shadow_read": shut is not None,
        "locked_admins": sorted(names & shut) if shut is not None else [],
    }
    return sorted(names - (shut or set())), ev


def _ini(text: str) -> configparser.ConfigParser | None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return parser


def _installed(ctx: Context) -> set[str]:
    programs = set(ctx.runner.listdir("/usr/sbin") or []) | set(
        ctx.runner.listdir("/usr/bin") or []
    )
    return {dm for dm, names in DM_PROGRAMS.items() if programs & set(names)}


def _read_all(ctx: Context, paths: list[str]) -> list[tuple[str, configparser.ConfigParser | None]]:
    out = []
    for path in paths:
        text = ctx.runner.read(path)
        if text is not None:
            out.append((path, _ini(text)))
    return out


def _setting(
    files: list[tuple[str, configparser.ConfigParser | None]], sections: tuple[str, ...], key: str
) -> tuple[str | None, str] | None:
    """The last file's value of key in any of the sections (later files override), and
    where; None for a file that isn't valid INI makes the answer None too."""
    value: tuple[str | None, str] = (None, "")
    for path, parser in files:
        if parser is None:
            return None
        for section in sections:
            if parser.has_option(section, key):
                value = (parser.get(section, key).strip(), path)
    return value


def sign_in(ctx: Context) -> tuple[bool | None, bool | None, list[str]]:
    """Automatic sign-in and guest account, each None when unreadable, and the sources."""
    installed = _installed(ctx)
    auto: list[bool | None] = []
    guest: bool | None = False
    seen: list[str] = []
    gdm = _read_all(ctx, list(GDM_FILES))
    if gdm or "gdm" in installed:
        for key in ("AutomaticLoginEnable", "TimedLoginEnable"):
            got = _setting(gdm, ("daemon",), key)
            auto.append(None if got is None else (got[0] or "").lower() in ("true", "1"))
        seen.append(
            "GDM: " + (", ".join(p for p, _ in gdm) or "no custom.conf (GDM's default: off)")
        )
    lightdm = _read_all(ctx, _conf_d(ctx, LIGHTDM_DIRS) + ["/etc/lightdm/lightdm.conf"])
    if lightdm or "lightdm" in installed:
        sections = ("SeatDefaults", "Seat:*", "Seat:seat0")
        user = _setting(lightdm, sections, "autologin-user")
        auto.append(None if user is None else bool(user[0]))
        allow = _setting(lightdm, sections, "allow-guest")
        if allow is None:
            guest = None
        elif allow[0] is None:  # LightDM allows a guest by default where its script is installed
            guest = "guest-account" in (ctx.runner.listdir("/usr/sbin") or [])
        else:
            guest = allow[0].lower() == "true"
        seen.append("LightDM: " + (", ".join(p for p, _ in lightdm) or "no lightdm.conf"))
    sddm = _read_all(ctx, _conf_d(ctx, SDDM_DIRS) + ["/etc/sddm.conf"])
    if sddm or "sddm" in installed:
        user = _setting(sddm, ("Autologin",), "User")
        auto.append(None if user is None else bool(user[0]))
        seen.append("SDDM: " + (", ".join(p for p, _ in sddm) or "no sddm.conf"))
    for name in ctx.runner.listdir(GETTY_DIR) or []:
        text = ctx.runner.read(f"{GETTY_DIR}/{name}") or ""
        if re.search(r"^ExecStart=.*agetty.*(--autologin|\s-a\s)", text, re.M):
            auto.append(True)
            seen.append(f"getty: {GETTY_DIR}/{name} signs in automatically")
    if not seen:
        seen.append("no display manager (GDM, LightDM, SDDM) installed")
    autologin = True if True in auto else (None if None in auto else False)
    return autologin, guest, seen


def _conf_d(ctx: Context, dirs: tuple[str, ...]) -> list[str]:
    """conf.d files, system ones first so /etc's override them (the order the DMs read)."""
    files = config_files(ctx, dirs, ".conf") or {}
    return sorted(files.values(), key=lambda p: (p.startswith("/etc"), p.rsplit("/", 1)[-1]))


def accounts_check(ctx: Context) -> CheckResult:
    admins, ev = administrators(ctx)
    user, why = console_user(ctx)
    autologin, guest, sources = sign_in(ctx)
    if user in GREETERS:  # the login screen's own session: no one is signed in
        ev["no_user"], user = f"the login screen ({user})", ""
    elif user is None:
        ev["no_user"] = why
        if why == NO_SEAT_SESSION:
            user = ""  # logind says no one is at the screen: nothing to judge in that part
    return judge_accounts(
        "accounts",
        ctx,
        user=user,
        admins=admins,
        autologin=autologin,
        guest=guest,
        sign_in_sources=sources,
        **ev,
    )

"""Linux software: the desktop applications a user can start, not every package.

A package list holds thousands of libraries no school approves one by one; the applications
menu is what pupils and staff see. Its entries are the .desktop files of the system, of
Flatpak and of Snap; the name is the entry's untranslated Name=, and entries hidden from the
menu (NoDisplay=true, Hidden=true) or not applications (Type=Link) are left out.
"""

from __future__ import annotations

from agent.checks.base import Context
from agent.checks.judge import judge_software
from agent.report import CheckResult

SOURCES = {
    "/usr/share/applications": "system",
    "/usr/local/share/applications": "local",
    "/var/lib/flatpak/exports/share/applications": "flatpak",
    "/var/lib/snapd/desktop/applications": "snap",
}


def desktop_entry(text: str) -> str | None:
    """The application's name from a .desktop file, or None when it isn't a shown app."""
    section, values = "", dict[str, str]()
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Desktop Entry" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), value.strip())
    if values.get("Type", "Application") != "Application":
        return None
    if values.get("NoDisplay", "").lower() == "true" or values.get("Hidden", "").lower() == "true":
        return None
    return values.get("Name") or None


def applications(ctx: Context) -> tuple[list[str], dict[str, int]] | None:
    """Application names and how many came from each source; None: no folder could be read."""
    names: list[str] = []
    counts: dict[str, int] = {}
    read_any = False
    for folder, source in SOURCES.items():
        files = ctx.runner.listdir(folder)
        if files is None:
            continue
        read_any = True
        found = 0
        for file in files:
            if not file.endswith(".desktop"):
                continue
            name = desktop_entry(ctx.runner.read(f"{folder}/{file}") or "")
            if name:
                names.append(name)
                found += 1
        counts[source] = found
    return (names, counts) if read_any else None


def software(ctx: Context) -> CheckResult:
    found = applications(ctx)
    if found is None:
        return judge_software(
            "software", None, ctx, sources="no applications folder (" + ", ".join(SOURCES) + ")"
        )
    names, counts = found
    return judge_software("software", names, ctx, sources=counts)

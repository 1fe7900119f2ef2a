"""Browser and OS from a User-Agent header, for the check record (pure).

Only the names and major versions the governors' report needs ("Chrome 131", "iPadOS"); the
header itself is not kept. Order matters: Edge and Opera say "Chrome" too, Chrome says
"Safari", and every iOS browser is Safari's engine under another name.
"""

from __future__ import annotations

import re

_BROWSERS: tuple[tuple[str, str], ...] = (
    ("Edge", r"\bEdg(?:e|A|iOS)?/(\d+)"),
    ("Opera", r"\bOPR/(\d+)"),
    ("Samsung Internet", r"\bSamsungBrowser/(\d+)"),
    ("Firefox", r"\b(?:Firefox|FxiOS)/(\d+)"),
    ("Headless Chrome", r"\bHeadlessChrome/(\d+)"),
    ("Chrome", r"\b(?:Chrome|CriOS)/(\d+)"),
    ("Safari", r"\bVersion/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/"),
)


def browser_of(agent: str) -> str | None:
    """E.g. "Chrome 131"; None when the header names no browser we know."""
    for name, pattern in _BROWSERS:
        found = re.search(pattern, agent)
        if found:
            return f"{name} {found.group(1)}"
    return None


def os_of(agent: str) -> str | None:
    """E.g. "Windows 10/11", "ChromeOS", "iPadOS 17", "Android 14", "macOS", "Linux".

    An iPad on iPadOS 13+ asks for desktop sites and says "Macintosh": the check page's
    device type (chosen by the person) tells those apart, this can't.
    """
    if "CrOS" in agent:
        return "ChromeOS"
    found = re.search(r"\((iPad|iPhone|iPod)[^)]*? OS (\d+)", agent)
    if found:
        return f"{'iPadOS' if found.group(1) == 'iPad' else 'iOS'} {found.group(2)}"
    found = re.search(r"Android (\d+)", agent)
    if found:
        return f"Android {found.group(1)}"
    found = re.search(r"Windows NT (\d+\.\d+)", agent)
    if found:
        names = {"10.0": "10/11", "6.3": "8.1", "6.2": "8", "6.1": "7"}
        return f"Windows {names.get(found.group(1), found.group(1))}"
    if "Mac OS X" in agent or "Macintosh" in agent:
        return "macOS"
    if "Linux" in agent or "X11" in agent:
        return "Linux"
    return None


__all__ = ["browser_of", "os_of"]

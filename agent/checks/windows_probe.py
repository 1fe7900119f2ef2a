"""How the Windows checks ask: PowerShell printing JSON, and `reg query`, read back the same
way whatever the language of Windows.

JSON keys, registry value names and numbers are the same in every Windows language; error
text isn't, so anything that is not the JSON or value we asked for comes out as "couldn't
read" (None) with why, and the check says unknown.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from agent.checks.base import Context, clip, describe


def powershell(script: str) -> list[str]:
    return ["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", script]


def ps_json(ctx: Context, script: str) -> tuple[Any, str]:
    """Run a PowerShell snippet and decode its JSON; on trouble return (None, why)."""
    res = ctx.runner.run(powershell(script), timeout=120)
    if not res.ok:
        return None, f"PowerShell failed ({describe(res)})"
    try:
        return json.loads(res.stdout.lstrip("\ufeff")), ""
    except ValueError:
        return None, f"PowerShell printed something that isn't JSON: {clip(res.stdout, 120)!r}"


def rows(data: Any) -> list[dict[str, Any]]:
    """ConvertTo-Json prints one object bare and several as a list."""
    items = data if isinstance(data, list) else [data]
    return [r for r in items if isinstance(r, dict)]


def flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in (1, "1", "True", "true"):
        return True
    if value in (0, "0", "False", "false"):
        return False
    return None


_VALUE = re.compile(r"^\s{4}(\S.*?)\s{4}(REG_\w+)\s{4}(.*?)\s*$")


def reg_tree(ctx: Context, key: str, *args: str) -> tuple[dict[str, dict[str, str]] | None, str]:
    """`reg query KEY [args]` as {key path: {value name: value}}; a missing key is {} (nothing
    set), output we don't recognise is None. Key paths are as reg prints them (HKEY_...)."""
    res = ctx.runner.run(["reg", "query", key, *args], timeout=20)
    if res.returncode == 1 and not res.stdout.strip():
        return {}, f"{key} not present"
    if not res.ok:
        return None, describe(res)
    tree: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in res.stdout.splitlines():
        if line.startswith("HKEY_"):
            current = tree.setdefault(line.strip(), {})
        elif (m := _VALUE.match(line)) and current is not None:
            current[m.group(1)] = m.group(3)
    if not tree or key.split("\\", 1)[1].upper() not in res.stdout.upper():
        return None, f"reg printed something we don't recognise: {clip(res.stdout, 120)!r}"
    return tree, ""


def reg_values(ctx: Context, key: str, *args: str) -> tuple[dict[str, str] | None, str]:
    """`reg query` output as {name: value} for the key itself (subkeys' values ignored)."""
    tree, why = reg_tree(ctx, key, *args)
    if tree is None:
        return None, why
    wanted = key.split("\\", 1)[1].upper()
    for path, values in tree.items():
        if path.upper().endswith(wanted):
            return values, why
    return {}, why


def number(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None


def when(value: Any) -> str | None:
    """ISO text, or Windows PowerShell 5's "/Date(ms)/", as ISO text in UTC."""
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"/Date\((-?\d+)\)/", value)
    if m:
        return datetime.fromtimestamp(int(m.group(1)) / 1000, UTC).isoformat()
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()

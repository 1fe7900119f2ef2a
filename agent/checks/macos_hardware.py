"""macOS hardware: how old the Mac's model is, and whether a configuration profile blocks
external disks (USB mass storage).

A Mac doesn't say when it was made; its model identifier (`system_profiler
SPHardwareDataType`) says which model it is, and Apple's "Identify your Mac" pages say
when each model came out. The table below is small on purpose: the Apple silicon Macs and
the last Intel ones a school may still have; any other identifier is "unknown", never a
guess. A model sold for years after it came out makes a Mac look older than it is, so the
reason says the age is the model's.
"""

from __future__ import annotations

import plistlib
import re
from datetime import date
from xml.parsers.expat import ExpatError

from agent.checks.base import Context, clip, describe
from agent.checks.judge import Kind, judge_hardware_age, judge_removable_storage
from agent.report import CheckResult

# Model identifier -> the year Apple introduced the model, from Apple's support pages
# "Identify your MacBook Air model", "Identify your MacBook Pro model", "Identify your iMac
# model", "Identify your Mac mini model", "Identify your Mac Studio model" and "Identify your
# Mac Pro model" (support.apple.com). Add a row when a new model comes out.
MODEL_YEAR: dict[str, int] = {
    # MacBook Air
    "MacBookAir8,1": 2018,
    "MacBookAir8,2": 2019,
    "MacBookAir9,1": 2020,
    "MacBookAir10,1": 2020,  # M1
    "Mac14,2": 2022,  # M2
    "Mac14,15": 2023,  # 15-inch M2
    "Mac15,12": 2024,  # 13-inch M3
    "Mac15,13": 2024,  # 15-inch M3
    "Mac16,12": 2025,  # 13-inch M4
    "Mac16,13": 2025,  # 15-inch M4
    # MacBook Pro
    "MacBookPro15,1": 2018,
    "MacBookPro15,2": 2018,
    "MacBookPro16,1": 2019,
    "MacBookPro16,2": 2020,
    "MacBookPro16,3": 2020,
    "MacBookPro16,4": 2019,
    "MacBookPro17,1": 2020,  # 13-inch M1
    "MacBookPro18,1": 2021,
    "MacBookPro18,2": 2021,
    "MacBookPro18,3": 2021,
    "MacBookPro18,4": 2021,
    "Mac14,7": 2022,  # 13-inch M2
    "Mac14,5": 2023,
    "Mac14,6": 2023,
    "Mac14,9": 2023,
    "Mac14,10": 2023,
    "Mac15,3": 2023,  # 14-inch M3
    "Mac15,6": 2023,
    "Mac15,7": 2023,
    "Mac15,8": 2023,
    "Mac15,9": 2023,
    "Mac15,10": 2023,
    "Mac15,11": 2023,
    "Mac16,1": 2024,  # 14-inch M4
    "Mac16,5": 2024,
    "Mac16,6": 2024,
    "Mac16,7": 2024,
    "Mac16,8": 2024,
    # iMac
    "iMac20,1": 2020,
    "iMac20,2": 2020,
    "iMac21,1": 2021,  # 24-inch M1
    "iMac21,2": 2021,
    "Mac15,4": 2023,  # 24-inch M3
    "Mac15,5": 2023,
    "Mac16,2": 2024,  # 24-inch M4
    "Mac16,3": 2024,
    # Mac mini
    "Macmini8,1": 2018,
    "Macmini9,1": 2020,  # M1
    "Mac14,3": 2023,  # M2
    "Mac14,12": 2023,  # M2 Pro
    "Mac16,10": 2024,  # M4
    "Mac16,11": 2024,  # M4 Pro
    # Mac Studio and Mac Pro
    "Mac13,1": 2022,
    "Mac13,2": 2022,
    "Mac14,13": 2023,
    "Mac14,14": 2023,
    "MacPro7,1": 2019,
    "Mac14,8": 2023,
}

SYSTEMUISERVER = "/Library/Managed Preferences/com.apple.systemuiserver.plist"


def _field(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*{name}:\s*(.+?)\s*$", text, re.M)
    return m.group(1) if m else None


def hardware_age(ctx: Context) -> CheckResult:
    cid = "hardware_age"
    res = ctx.runner.run(["system_profiler", "SPHardwareDataType"], timeout=60)
    if not res.ok:
        return judge_hardware_age(
            cid, ctx, made=None, kind=None, basis=f"system_profiler failed ({describe(res)})"
        )
    name = _field(res.stdout, "Model Name")
    ident = _field(res.stdout, "Model Identifier")
    number = _field(res.stdout, "Model Number")
    kind: Kind | None = None
    if name is not None:
        kind = "laptop" if name.startswith("MacBook") else "desktop"
    ev = {"model_name": name, "model_identifier": ident, "model_number": number}
    if ident is None:
        basis = "no Model Identifier in system_profiler's output"
        return judge_hardware_age(cid, ctx, made=None, kind=kind, basis=basis, **ev)
    year = MODEL_YEAR.get(ident)
    if year is None:
        basis = f"model {ident} is not in the agent's table of Mac models"
        return judge_hardware_age(cid, ctx, made=None, kind=kind, basis=basis, **ev)
    # the model's year, taken at mid-year: Apple's pages give the year, not the day
    basis = f"{ident} is a model introduced in {year}"
    return judge_hardware_age(cid, ctx, made=date(year, 7, 1), kind=kind, basis=basis, **ev)


def _mount_controls(ctx: Context) -> tuple[list[str] | None, str]:
    """The `harddisk-external` actions of the managed mount-controls, [] when no profile sets
    them, None when the managed preferences can't be read."""
    res = ctx.runner.run(["plutil", "-convert", "xml1", "-o", "-", SYSTEMUISERVER], timeout=10)
    if not res.ok:
        missing = "No such file" in res.stderr or "does not exist" in res.stderr
        return ([] if missing else None), clip(res.stderr or res.stdout, 200)
    try:
        data = plistlib.loads(res.stdout.encode())
    except (plistlib.InvalidFileException, ExpatError, ValueError, TypeError) as exc:
        return None, f"unreadable: {exc}"
    controls = data.get("mount-controls") if isinstance(data, dict) else None
    if not isinstance(controls, dict):
        return [], "no mount-controls"
    actions = controls.get("harddisk-external", [])
    actions = [actions] if isinstance(actions, str) else actions
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        return None, "harddisk-external is not a list of actions"
    return actions, f"harddisk-external: {actions}"


def _profiles_listed(ctx: Context) -> tuple[bool | None, int | None, str]:
    """Whether the installed configuration profiles could be listed (root only), and how many."""
    res = ctx.runner.run(["profiles", "show", "-type", "configuration"], timeout=30)
    text = (res.stdout + res.stderr).strip()
    if not res.ok:
        return None, None, clip(text, 200)
    if re.search(r"There are no configuration profiles installed for user", text):
        return None, None, clip(text, 200)  # not root: only the user's own were listed
    if "There are no configuration profiles installed" in text:
        return True, 0, clip(text, 200)
    m = re.search(r"There (?:are|is) (\d+) configuration profiles? installed", text)
    if m:
        return True, int(m.group(1)), clip(text.splitlines()[0], 200)
    return None, None, clip(text, 200)


def removable_storage(ctx: Context) -> CheckResult:
    """External disks denied by a configuration profile (com.apple.systemuiserver
    mount-controls, harddisk-external: deny). Read-only or "authenticate" still let a disk
    mount, so they are not a block. A Disk Management declaration (macOS 15) isn't read."""
    cid = "removable_storage"
    actions, detail = _mount_controls(ctx)
    listed, count, listing = _profiles_listed(ctx)
    ev = {"mount_controls": detail, "profiles": listing, "profile_count": count}
    how = "configuration profile, com.apple.systemuiserver mount-controls"
    if actions and "deny" in actions:
        return judge_removable_storage(
            cid, ctx, blocked=True, how=how + " harddisk-external deny", **ev
        )
    if actions:
        how = f"{how} harddisk-external {'/'.join(actions)}, not deny"
        return judge_removable_storage(cid, ctx, blocked=False, how=how, **ev)
    if actions is None:
        how = f"the managed preferences couldn't be read: {detail}"
        return judge_removable_storage(cid, ctx, blocked=None, how=how, **ev)
    if listed is None:
        how = "no mount-controls profile found, and the profiles can't be listed without root"
        return judge_removable_storage(cid, ctx, blocked=None, how=how, **ev)
    how = f"no profile sets mount-controls for external disks; {count} profiles installed"
    return judge_removable_storage(cid, ctx, blocked=False, how=how, **ev)

"""Linux hardware age: the firmware's date and the chassis type from SMBIOS (/sys/class/dmi).

The firmware (BIOS/UEFI) release date is the best date a PC gives about itself; a firmware
update moves it later, so an old machine with new firmware looks younger, never older. A
virtual machine or container reports its host's (or no) firmware, so its age is unknown.
"""

from __future__ import annotations

from datetime import date, datetime

from agent.checks.base import Context, clip
from agent.checks.judge import chassis_kind, judge_hardware_age
from agent.report import CheckResult

DMI = "/sys/class/dmi/id"
# sys_vendor / product_name words of hypervisors
_VIRTUAL = ("qemu", "vmware", "innotek", "virtualbox", "xen", "parallels", "bochs", "kvm")
_CONTAINER_MARKS = ("/.dockerenv", "/run/.containerenv", "/run/systemd/container")


def _dmi(ctx: Context, name: str) -> str | None:
    value = ctx.runner.read(f"{DMI}/{name}")
    return None if value is None else value.strip()


def _virtual(vendor: str, product: str) -> bool:
    both = f"{vendor} {product}".lower()
    hyperv = "microsoft" in both and "virtual machine" in both
    return hyperv or any(word in both for word in _VIRTUAL)


def hardware_age(ctx: Context) -> CheckResult:
    cid = "hardware_age"
    raw = {n: _dmi(ctx, n) for n in ("bios_date", "chassis_type", "sys_vendor", "product_name")}
    ev = {"dmi": {k: clip(v, 80) for k, v in raw.items() if v is not None}}
    if all(v is None for v in raw.values()):
        marks = [m for m in _CONTAINER_MARKS if ctx.runner.read(m) is not None]
        why = (
            f"a container ({', '.join(marks)}): its hardware is the host's"
            if marks
            else f"no firmware information in {DMI}"
        )
        return judge_hardware_age(cid, ctx, made=None, kind=None, basis=why, **ev)
    chassis = raw["chassis_type"]
    kind = chassis_kind([int(chassis)]) if chassis and chassis.isdigit() else None
    if _virtual(raw["sys_vendor"] or "", raw["product_name"] or ""):
        why = "a virtual machine: its hardware's age is the host's"
        return judge_hardware_age(cid, ctx, made=None, kind=kind, basis=why, **ev)
    made: date | None = None
    try:
        made = datetime.strptime(raw["bios_date"] or "", "%m/%d/%Y").date()
    except ValueError:
        made = None
    basis = "firmware date" if made else f"{DMI}/bios_date missing or not MM/DD/YYYY"
    return judge_hardware_age(cid, ctx, made=made, kind=kind, basis=basis, **ev)

"""The DfE standard's further device checks on Windows: hardware age, removable storage,
installed software, local administrators and sign-in, and the local password policy.

Each reads values that are the same in every Windows language: CIM properties printed as
JSON, registry values, SIDs (the Administrators group is S-1-5-32-544 in any language; the
built-in Administrator and Guest end in -500 and -501) and the security policy that
`secedit /export` writes as INI keys. Group names, `net accounts` and error text are
translated, so they are never read. Judged by agent/checks/judge.py, like every platform.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from agent.checks.base import Check, Context, clip, describe, unknown
from agent.checks.judge import (
    chassis_kind,
    judge_accounts,
    judge_hardware_age,
    judge_password_policy,
    judge_removable_storage,
    judge_software,
)
from agent.checks.windows_probe import number, powershell, ps_json, reg_tree, reg_values, rows
from agent.report import CheckResult

HARDWARE = (
    "$b=Get-CimInstance Win32_BIOS;$c=Get-CimInstance Win32_ComputerSystem;"
    "$e=@(Get-CimInstance Win32_SystemEnclosure);"
    "[pscustomobject]@{ReleaseDate=if($b.ReleaseDate){$b.ReleaseDate.ToString('yyyy-MM-dd',"
    "[Globalization.CultureInfo]::InvariantCulture)};BIOSVersion=$b.SMBIOSBIOSVersion;"
    "Manufacturer=$c.Manufacturer;Model=$c.Model;"
    "ChassisTypes=@($e|ForEach-Object{$_.ChassisTypes})} | ConvertTo-Json"
)
USBSTOR = r"HKLM\SYSTEM\CurrentControlSet\Services\USBSTOR"
UASPSTOR = r"HKLM\SYSTEM\CurrentControlSet\Services\UASPStor"  # USB 3 drives (UAS) use this
STORAGE_POLICY = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices"
REMOVABLE_DISKS = "{53f5630d-b6bf-11d0-94f2-00a0c91efb8b}"  # "Removable Disks" device class
SOFTWARE = (
    "$p=@('HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*',"
    "'HKLM:\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*');"
    "$n=(Get-CimInstance Win32_ComputerSystem).UserName;$h=$null;"
    "if($n){try{$s=([Security.Principal.NTAccount]$n).Translate("
    "[Security.Principal.SecurityIdentifier]).Value;"
    '$h=Test-Path "Registry::HKEY_USERS\\$s";'
    '$p+="Registry::HKEY_USERS\\$s\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*"'
    "}catch{$h=$false}};"
    "[pscustomobject]@{UserHive=$h;Apps=@(Get-ItemProperty $p -ErrorAction SilentlyContinue|"
    "Where-Object{$_.DisplayName}|ForEach-Object{[pscustomobject]@{Name=$_.DisplayName;"
    "SystemComponent=$_.SystemComponent;Parent=$_.ParentKeyName}})} | ConvertTo-Json -Depth 3"
)
ACCOUNTS = (
    "$c=Get-CimInstance Win32_ComputerSystem;$m=$null;$x=$null;"
    "try{$m=@(Get-LocalGroupMember -SID 'S-1-5-32-544' -ErrorAction Stop|ForEach-Object{"
    "[pscustomobject]@{Name=$_.Name;SID=[string]$_.SID;Source=[string]$_.PrincipalSource}})}"
    "catch{$x=$_.FullyQualifiedErrorId};"
    "$u=@(Get-LocalUser|ForEach-Object{[pscustomobject]@{Name=$_.Name;SID=[string]$_.SID;"
    "Enabled=$_.Enabled}});"
    "$w=Get-ItemProperty 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon';"
    "[pscustomobject]@{Computer=$c.Name;UserName=$c.UserName;Members=$m;MembersError=$x;"
    "Users=$u;AutoAdminLogon=[string]$w.AutoAdminLogon;"
    "DefaultPassword=($null -ne $w.DefaultPassword)} | ConvertTo-Json -Depth 3"
)
SECURITY_POLICY = (
    "$f=Join-Path $env:TEMP ('schoolgate-'+[guid]::NewGuid().ToString('N')+'.inf');"
    "try{secedit.exe /export /cfg $f /areas SECURITYPOLICY /quiet|Out-Null;"
    "if($LASTEXITCODE -ne 0){exit $LASTEXITCODE};Get-Content -LiteralPath $f}"
    "finally{Remove-Item -LiteralPath $f -Force -ErrorAction SilentlyContinue}"
)

VIRTUAL = re.compile(r"virtual machine|vmware|virtualbox|kvm|qemu|hvm domu|parallels", re.I)


def _release_date(value: Any) -> date | None:
    """The firmware's date as our script prints it (yyyy-MM-dd), or as WMI (DMTF
    "20180702000000.000000+000") or ConvertTo-Json ("/Date(ms)/", ISO) would."""
    if not isinstance(value, str):
        return None
    if m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})\d{6}\.\d{6}[+-]\d{3}", value):
        text = "-".join(m.groups())
    elif m := re.fullmatch(r"/Date\((-?\d+)\)/", value):
        return datetime.fromtimestamp(int(m.group(1)) / 1000).date()
    else:
        text = value[:10]
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def hardware_age(ctx: Context) -> CheckResult:
    cid = "hardware_age"
    basis = "firmware date"
    data, why = ps_json(ctx, HARDWARE)
    if not isinstance(data, dict):
        return judge_hardware_age(cid, ctx, made=None, kind=None, basis=why or basis)
    chassis: list[Any] = data["ChassisTypes"] if isinstance(data.get("ChassisTypes"), list) else []
    model = f"{data.get('Manufacturer') or ''} {data.get('Model') or ''}".strip()
    ev = {
        "model": model,
        "bios_version": data.get("BIOSVersion"),
        "chassis_types": chassis,
        "note": "Win32_BIOS ReleaseDate: a firmware update makes the device look younger",
    }
    if VIRTUAL.search(model):
        return unknown(
            cid, "A virtual machine: its firmware date says nothing of the hardware.", **ev
        )
    made = _release_date(data.get("ReleaseDate"))
    if made is None:
        basis = f"{basis}: missing or odd, {clip(str(data.get('ReleaseDate')), 40)!r}"
    return judge_hardware_age(
        cid,
        ctx,
        made=made,
        kind=chassis_kind(c for c in chassis if isinstance(c, int)),
        basis=basis,
        **ev,
    )


def _denied(values: dict[str, str], name: str) -> bool:
    return number(values.get(name)) == 1


def removable_storage(ctx: Context) -> CheckResult:
    """Blocked by the Group Policy (all removable storage, or Removable Disks denied both read
    and write), or by both USB storage drivers disabled (Start = 4)."""
    cid = "removable_storage"
    policy, why_p = reg_tree(ctx, STORAGE_POLICY, "/s")
    usb, why_u = reg_values(ctx, USBSTOR, "/v", "Start")
    uas, why_a = reg_values(ctx, UASPSTOR, "/v", "Start")
    usb_start = None if usb is None else number(usb.get("Start"))
    uas_start = None if uas is None else number(uas.get("Start"))
    deny_all = deny_read = deny_write = False
    for path, values in (policy or {}).items():
        if path.upper().endswith("REMOVABLESTORAGEDEVICES") and _denied(values, "Deny_All"):
            deny_all = True
        if path.lower().endswith(REMOVABLE_DISKS):
            deny_read, deny_write = _denied(values, "Deny_Read"), _denied(values, "Deny_Write")
    ev = {
        "policy_deny_all": deny_all if policy is not None else None,
        "removable_disks_deny_read": deny_read if policy is not None else None,
        "removable_disks_deny_write": deny_write if policy is not None else None,
        "usbstor_start": usb_start,
        "uaspstor_start": uas_start,
    }
    if deny_all:
        how = "Group Policy: All Removable Storage classes: Deny all access"
        return judge_removable_storage(cid, ctx, blocked=True, how=how, **ev)
    if deny_read and deny_write:
        how = "Group Policy: Removable Disks: Deny read and write access"
        return judge_removable_storage(cid, ctx, blocked=True, how=how, **ev)
    uas_off = uas == {} or uas_start == 4  # no UAS driver, or disabled
    if usb_start == 4 and uas_off:
        how = "the USB storage drivers are disabled (USBSTOR and UASPStor Start = 4)"
        return judge_removable_storage(cid, ctx, blocked=True, how=how, **ev)
    unread = [w for data, w in ((policy, why_p), (usb, why_u), (uas, why_a)) if data is None]
    if unread:
        how = f"couldn't read the registry: {'; '.join(unread)}"
        return judge_removable_storage(cid, ctx, blocked=None, how=how, **ev)
    if deny_read or deny_write:
        only = (
            "Deny_Read (writing still allowed)"
            if deny_read
            else "Deny_Write (reading still allowed)"
        )
        how = f"the Removable Disks policy sets only {only}"
    elif usb_start == 4:
        how = "USBSTOR is disabled but USB 3 drives (UASPStor) still work"
    else:
        how = "no removable storage policy, USBSTOR driver enabled"
    return judge_removable_storage(cid, ctx, blocked=False, how=how, **ev)


def software(ctx: Context) -> CheckResult:
    """Programs in Add/Remove Programs (64- and 32-bit, and the signed-in user's); Windows'
    own components (SystemComponent = 1) and updates (a ParentKeyName) left out."""
    cid = "software"
    data, why = ps_json(ctx, SOFTWARE)
    if not isinstance(data, dict) or not isinstance(data.get("Apps"), list | dict):
        return judge_software(cid, None, ctx, why=why or "unexpected answer")
    names = [
        str(a["Name"]).strip()
        for a in rows(data["Apps"])
        if isinstance(a.get("Name"), str)
        and number(str(a.get("SystemComponent"))) != 1
        and not a.get("Parent")
    ]
    user_hive = data.get("UserHive")
    ev = {
        "source": "Uninstall registry keys (Store apps not listed)",
        "user_apps_read": user_hive if isinstance(user_hive, bool) else None,
    }
    return judge_software(cid, [n for n in names if n], ctx, **ev)


def _short(name: str, computer: str) -> str:
    """A local account without the computer's name in front; others keep their domain."""
    prefix, sep, rest = name.partition("\\")
    return rest if sep and computer and prefix.casefold() == computer.casefold() else name


def accounts(ctx: Context) -> CheckResult:
    cid = "accounts"
    data, why = ps_json(ctx, ACCOUNTS)
    if not isinstance(data, dict):
        return judge_accounts(cid, ctx, user=None, admins=None, autologin=None, guest=None, why=why)
    computer = str(data.get("Computer") or "")
    users = {str(u.get("SID")): u for u in rows(data.get("Users")) if u.get("SID")}
    guest_rows = [u for u in users.values() if str(u.get("SID")).endswith("-501")]
    guest = flag_enabled(guest_rows[0]) if guest_rows else (None if not users else False)
    admins: list[str] | None = None
    disabled: list[str] = []
    members = data.get("Members")
    if isinstance(members, list | dict):
        admins = []
        for m in rows(members):
            name, sid = _short(str(m.get("Name") or ""), computer), str(m.get("SID") or "")
            local = users.get(sid)
            if local is not None and flag_enabled(local) is False:
                disabled.append(name)  # a disabled local account can't sign in (unread: kept)
            elif name:
                admins.append(name)
    raw_user = data.get("UserName")
    user = _short(raw_user, computer) if isinstance(raw_user, str) and raw_user else None
    if "UserName" in data and raw_user is None:
        user = ""  # Win32_ComputerSystem answered: no one signed in at the console
    for a in admins or []:
        if user is not None and a.casefold() == user.casefold():
            user = a  # Windows names are case-blind
    logon = data.get("AutoAdminLogon")
    autologin = None if not isinstance(logon, str) else logon.strip() == "1"
    ev: dict[str, Any] = {"disabled_admins": disabled}
    if data.get("MembersError"):
        ev["admins_error"] = clip(str(data["MembersError"]), 120)
    if autologin:
        ev["default_password_stored"] = data.get("DefaultPassword") is True  # never its value
    return judge_accounts(
        cid, ctx, user=user, admins=admins, autologin=autologin, guest=guest, **ev
    )


def flag_enabled(row: dict[str, Any]) -> bool | None:
    value = row.get("Enabled")
    return value if isinstance(value, bool) else None


def _system_access(text: str) -> dict[str, str]:
    """The [System Access] section of a secedit export: INI keys, the same in any language."""
    out: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip().lstrip("\ufeff")
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().casefold()
        elif section == "system access" and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip('"')
    return out


def password_policy(ctx: Context) -> CheckResult:
    """The local account policy from `secedit /export` (needs SYSTEM or an administrator)."""
    cid = "password_policy"
    res = ctx.runner.run(powershell(SECURITY_POLICY), timeout=120)
    if not res.ok:
        why = f"secedit failed ({describe(res)})"
        return judge_password_policy(cid, ctx, min_length=None, lockout=None, why=why)
    policy = _system_access(res.stdout)
    if not policy:
        why = f"no [System Access] in secedit's export: {clip(res.stdout, 120)!r}"
        return judge_password_policy(cid, ctx, min_length=None, lockout=None, why=why)
    ev = {
        "source": "secedit /export (local accounts; a domain's policy governs domain accounts)",
        "complexity": number(policy.get("PasswordComplexity")),
        "lockout_minutes": number(policy.get("LockoutDuration")),
    }
    return judge_password_policy(
        cid,
        ctx,
        min_length=number(policy.get("MinimumPasswordLength")),
        lockout=number(policy.get("LockoutBadCount")),
        **ev,
    )


CHECKS = (
    Check(
        "hardware_age", "windows", hardware_age, ("laptop_support_years", "tablet_support_years")
    ),
    Check("removable_storage", "windows", removable_storage, ("usb_storage_allowed",)),
    Check("software", "windows", software, ("software_approved", "software_banned")),
    Check("accounts", "windows", accounts, ("admin_accounts_approved",)),
    Check(
        "password_policy",
        "windows",
        password_policy,
        ("password_min_length", "lockout_max_attempts"),
    ),
)

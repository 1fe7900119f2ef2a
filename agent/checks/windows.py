"""Windows probes: PowerShell CIM/Defender/Update cmdlets printed as JSON, and `reg query`
(how they are asked and read back: windows_probe.py; the DfE standard's further checks:
windows_dfe.py).

JSON and registry values are the same in every Windows language; error text isn't, so
anything that is not the JSON or value we asked for comes out unknown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.checks import windows_dfe as dfe
from agent.checks.base import (
    Check,
    Context,
    Pending,
    days_text,
    fail,
    judge_patches,
    ok,
    os_support,
    unknown,
)
from agent.checks.windows_probe import (
    flag,
    number,
    ps_json,
    reg_values,
    rows,
    when,
)
from agent.report import CheckResult

BITLOCKER = (
    "Get-CimInstance -Namespace root/cimv2/security/microsoftvolumeencryption "
    "-ClassName Win32_EncryptableVolume | "
    "Select-Object DriveLetter,VolumeType,ProtectionStatus,ConversionStatus | ConvertTo-Json"
)
DEFENDER = (
    "Get-MpComputerStatus | Select-Object AMServiceEnabled,AntivirusEnabled,"
    "RealTimeProtectionEnabled,AntivirusSignatureAge,AntivirusSignatureVersion | ConvertTo-Json"
)
FIREWALL = "Get-NetFirewallProfile | Select-Object Name,Enabled | ConvertTo-Json"
OS_INFO = (
    "Get-CimInstance Win32_OperatingSystem | Select-Object Caption,Version,BuildNumber | "
    "ConvertTo-Json"
)
WINDOWS_UPDATE = (
    "$s=(New-Object -ComObject Microsoft.Update.Session).CreateUpdateSearcher();"
    "$u=$s.Search('IsInstalled=0 and IsHidden=0').Updates;"
    "$a=(New-Object -ComObject Microsoft.Update.AutoUpdate);"
    "[pscustomobject]@{Pending=@($u|ForEach-Object{[pscustomobject]@{Title=$_.Title;"
    "KB=@($_.KBArticleIDs);Severity=$_.MsrcSeverity;"
    "Published=if($_.LastDeploymentChangeTime){$_.LastDeploymentChangeTime.ToString('o')};"
    "Categories=@($_.Categories|ForEach-Object{$_.CategoryID})}});"
    "LastSuccess=$a.Results.LastInstallationSuccessDate.ToUniversalTime().ToString('o');"
    "RebootRequired=(Test-Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\"
    "WindowsUpdate\\Auto Update\\RebootRequired');"
    "NoAutoUpdate=(Get-ItemProperty 'HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\"
    "WindowsUpdate\\AU' -ErrorAction SilentlyContinue).NoAutoUpdate} | ConvertTo-Json -Depth 4"
)
SECURITY_UPDATES = "0fa1201d-4330-4fa8-8ae9-b877473b6441"  # the same id in every language
LOCK_POLICY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System"
USER_DESKTOP = r"HKCU\Control Panel\Desktop"


def disk_encryption(ctx: Context) -> CheckResult:
    cid = "disk_encryption"
    data, why = ps_json(ctx, BITLOCKER)
    if data is None:
        return unknown(cid, why)
    volumes = rows(data)
    system = [v for v in volumes if v.get("VolumeType") == 0] or [
        v for v in volumes if str(v.get("DriveLetter", "")).upper() == "C:"
    ]
    ev = {"volumes": volumes[:8]}
    if not system:
        return unknown(cid, "BitLocker reported no operating system volume.", **ev)
    vol = system[0]
    protection, conversion = vol.get("ProtectionStatus"), vol.get("ConversionStatus")
    if protection not in (0, 1, 2) or conversion not in range(0, 6):
        return unknown(cid, "BitLocker's status fields are missing or odd.", **ev)
    if protection == 2:
        return unknown(cid, "BitLocker can't tell the protection status (volume locked?).", **ev)
    if protection == 1 and conversion == 1:
        return ok(
            cid, f"BitLocker protects {vol.get('DriveLetter')} and it is fully encrypted.", **ev
        )
    if protection == 0 and conversion == 1:
        return fail(cid, "BitLocker protection is suspended on the system drive.", **ev)
    return fail(
        cid, f"The system drive isn't fully BitLocker-encrypted (conversion {conversion}).", **ev
    )


def screen_lock(ctx: Context) -> CheckResult:
    """Machine inactivity limit (locks the session), else the user's secure screen saver."""
    cid = "screen_lock"
    t = ctx.thresholds
    policy, why_p = reg_values(ctx, LOCK_POLICY)
    desktop, why_d = reg_values(ctx, USER_DESKTOP)
    if policy is None or desktop is None:
        return unknown(
            cid, f"Couldn't read the registry ({why_d if policy is not None else why_p})."
        )
    inactivity = number(policy.get("InactivityTimeoutSecs"))
    ev: dict[str, object] = {
        "InactivityTimeoutSecs": inactivity,
        **{
            k: desktop.get(k)
            for k in ("ScreenSaveActive", "ScreenSaverIsSecure", "ScreenSaveTimeOut")
        },
    }
    if inactivity is not None and 0 < inactivity <= t.idle_lock_max_s:
        return ok(cid, f"Windows locks after {inactivity} s of inactivity.", **ev)
    saver_on = desktop.get("ScreenSaveActive") == "1" and desktop.get("ScreenSaverIsSecure") == "1"
    saver_s = number(desktop.get("ScreenSaveTimeOut"))
    if saver_on and saver_s is not None and 0 < saver_s <= t.idle_lock_max_s:
        return ok(cid, f"A locking screen saver starts after {saver_s} s.", **ev)
    if saver_on and saver_s is None:
        return unknown(cid, "The screen saver timeout is unreadable.", **ev)
    return fail(cid, f"Nothing locks the screen within {t.idle_lock_max_s} s of inactivity.", **ev)


SEVERE = ("critical", "important")  # MsrcSeverity: the standard's "critical and high-risk"


def _security_update(row: dict[str, Any]) -> Pending | None:
    """A pending update the standard's 14 days apply to: rated Critical or Important by
    Microsoft, or in the Security Updates category; published when Windows Update says."""
    severity = str(row.get("Severity") or "").casefold()
    if severity not in SEVERE and SECURITY_UPDATES not in (row.get("Categories") or []):
        return None
    kbs = [f"KB{k}" for k in row.get("KB") or [] if isinstance(k, str | int)]
    name = str(row.get("Title") or (kbs[0] if kbs else "an unnamed update"))
    published = when(row.get("Published"))
    return Pending(name, datetime.fromisoformat(published) if published else None)


def patches(ctx: Context) -> CheckResult:
    cid = "patches"
    data, why = ps_json(ctx, WINDOWS_UPDATE)
    if not isinstance(data, dict) or not isinstance(data.get("Pending"), list):
        return unknown(cid, why or "Windows Update gave an answer we don't recognise.")
    pending = rows(data["Pending"])
    security = [u for u in map(_security_update, pending) if u is not None]
    no_auto = data.get("NoAutoUpdate")
    ev: dict[str, object] = {
        "manager": "windows-update",
        "pending": len(pending),
        "security": len(security),
        "security_updates": [u.name for u in security][:10],
        "auto_updates": no_auto in (None, 0),
        "last_update": when(data.get("LastSuccess")),
        "reboot_required": flag(data.get("RebootRequired")),
    }
    return judge_patches(cid, ev, ctx, security)


def firewall(ctx: Context) -> CheckResult:
    cid = "firewall"
    data, why = ps_json(ctx, FIREWALL)
    if data is None:
        return unknown(cid, why)
    profiles = {str(p.get("Name")): flag(p.get("Enabled")) for p in rows(data)}
    ev = {"profiles": profiles}
    if not profiles or None in profiles.values():
        return unknown(cid, "Couldn't read every firewall profile.", **ev)
    off = sorted(name for name, on in profiles.items() if not on)
    if off:
        return fail(cid, f"Windows Firewall is off for: {', '.join(off)}.", **ev)
    return ok(cid, "Windows Firewall is on for every profile.", **ev)


def antimalware(ctx: Context) -> CheckResult:
    cid = "antimalware"
    data, why = ps_json(ctx, DEFENDER)
    if not isinstance(data, dict):
        return unknown(cid, why or "Defender gave an answer we don't recognise.")
    flags = {
        k: flag(data.get(k))
        for k in ("AMServiceEnabled", "AntivirusEnabled", "RealTimeProtectionEnabled")
    }
    age = data.get("AntivirusSignatureAge")
    ev: dict[str, object] = {
        **flags,
        "signature_age_days": age,
        "signature_version": data.get("AntivirusSignatureVersion"),
    }
    if None in flags.values() or not isinstance(age, int):
        return unknown(cid, "Defender's status fields are missing or odd.", **ev)
    if not all(flags.values()):
        off = ", ".join(k for k, v in flags.items() if not v)
        return fail(cid, f"Microsoft Defender is not fully on ({off}).", **ev)
    if age > ctx.thresholds.av_signature_max_days:
        return fail(cid, f"Defender signatures are {days_text(age)} old.", **ev)
    return ok(cid, f"Microsoft Defender is on with signatures {days_text(age)} old.", **ev)


def os_supported(ctx: Context) -> CheckResult:
    data, _why = ps_json(ctx, OS_INFO)
    row = data if isinstance(data, dict) else {}
    version = str(row.get("Version") or "")
    return os_support(
        "os_supported",
        "windows" if version else "",
        version,
        ctx,
        caption=str(row.get("Caption") or ""),
    )


CHECKS = (
    Check("disk_encryption", "windows", disk_encryption),
    Check("screen_lock", "windows", screen_lock, ("idle_lock_max_s",)),
    Check("patches", "windows", patches, ("security_update_max_days",)),
    Check("firewall", "windows", firewall),
    Check("antimalware", "windows", antimalware, ("av_signature_max_days",)),
    Check("os_supported", "windows", os_supported, ("min_os_versions", "eol")),
    *dfe.CHECKS,
)

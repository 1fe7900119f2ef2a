"""The Windows sets' outputs for the DfE checks (windows_dfe.py), and where each came from.

A real capture is pasted as published, line endings made CRLF as PowerShell prints them;
everything else is a transcription in the shape the command prints (say so in SOURCES).
"""

# ruff: noqa: E501
import json

from agent.checks import windows_dfe as D
from agent.checks.windows_probe import powershell as ps

MEMO = "https://github.com/mylovemyon/memo/blob/182d873e016fa9a41b80ff962e795bb5b4f532af/tools/impacket/psexec..md"
OSQUERY_4771 = "https://github.com/osquery/osquery/issues/4771"
REG_EN_533 = "https://github.com/adamralph/simple-exec/issues/533"
REG_EN_32 = "https://github.com/automation-stack/node-machine-id/issues/32"
# Found by their text in a code index that named no repository or URL (its file ids given):
# a German console's `REG QUERY 'HKEY_LOCAL_MACHINE\...\FileSystem' /v LongPathsEnabled` pasted in
# a public GitHub note on Windows long paths, and Microsoft's German Azure ATP proxy docs (de-DE,
# 2018) quoting the same message; the Get-LocalGroupMember error in Microsoft's Dynamics 365
# on-premises troubleshooting docs (Test-D365FOConfiguration.ps1) and a NinjaRMM script's README.
REG_DE_MS = "a German console's capture in a public GitHub note (index file 11505923543) and Microsoft's German Azure ATP proxy docs (index file 14495255809)"
LGM_ID_MS = "Microsoft's Dynamics 365 on-premises troubleshooting docs (index file 1351788899) and a NinjaRMM script's README (index file 44561529244)"


def crlf(text):
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def ps51(obj):
    """ConvertTo-Json as Windows PowerShell 5.1 prints it: 4-space indent, two spaces after ':'."""
    return crlf(json.dumps(obj, indent=4, separators=(",", ":  "), ensure_ascii=False)) + "\r\n"


def reg(key, *values):
    lines = ["", key] + [f"    {n}    {t}    {v}" for n, t, v in values] + ["", ""]
    return "\r\n".join(lines)


# Real: reg.exe's messages for a missing key or value (exit 1, on stderr), English as
# published in REG_EN_533 and REG_EN_32, German as a German console printed it (see REG_DE_MS).
REG_MISSING = {
    "rc": 1,
    "stderr": "ERROR: The system was unable to find the specified registry key or value.\r\n",
}
REG_MISSING_DE = {
    "rc": 1,
    "stderr": "FEHLER: Der angegebene Registrierungsschlüssel bzw. Wert wurde nicht gefunden.\r\n",
}

# Real: `secedit /export /cfg a.ini` then `type a.ini` on Windows Server 2016 (10.0.14393),
# all areas exported (our command asks for SECURITYPOLICY only; only [System Access] is read).
SECEDIT_SERVER_2016 = r"""[Unicode]
Unicode=yes
[System Access]
MinimumPasswordAge = 0
MaximumPasswordAge = 42
MinimumPasswordLength = 0
PasswordComplexity = 1
PasswordHistorySize = 0
LockoutBadCount = 0
RequireLogonToChangePassword = 0
ForceLogoffWhenHourExpire = 0
NewAdministratorName = "Administrator"
NewGuestName = "Guest"
ClearTextPassword = 0
LSAAnonymousNameLookup = 0
EnableAdminAccount = 1
EnableGuestAccount = 0
[Event Audit]
AuditSystemEvents = 0
AuditLogonEvents = 0
AuditObjectAccess = 0
AuditPrivilegeUse = 0
AuditPolicyChange = 0
AuditAccountManage = 0
AuditProcessTracking = 0
AuditDSAccess = 0
AuditAccountLogon = 0
[Registry Values]
MACHINE\Software\Microsoft\Windows NT\CurrentVersion\Setup\RecoveryConsole\SecurityLevel=4,0
MACHINE\Software\Microsoft\Windows NT\CurrentVersion\Setup\RecoveryConsole\SetCommand=4,0
MACHINE\Software\Microsoft\Windows NT\CurrentVersion\Winlogon\CachedLogonsCount=1,"10"
MACHINE\Software\Microsoft\Windows NT\CurrentVersion\Winlogon\ForceUnlockLogon=4,0
MACHINE\Software\Microsoft\Windows NT\CurrentVersion\Winlogon\PasswordExpiryWarning=4,5
MACHINE\Software\Microsoft\Windows NT\CurrentVersion\Winlogon\ScRemoveOption=1,"0"
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\ConsentPromptBehaviorAdmin=4,5
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\ConsentPromptBehaviorUser=4,3
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\DisableCAD=4,0
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\DontDisplayLastUserName=4,0
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\EnableInstallerDetection=4,1
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\EnableLUA=4,1
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\EnableSecureUIAPaths=4,1
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\EnableUIADesktopToggle=4,0
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\EnableVirtualization=4,1
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\FilterAdministratorToken=4,0
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\LegalNoticeCaption=1,""
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\LegalNoticeText=7,
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\PromptOnSecureDesktop=4,1
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\ScForceOption=4,0
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\ShutdownWithoutLogon=4,0
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\UndockWithoutLogon=4,1
MACHINE\Software\Microsoft\Windows\CurrentVersion\Policies\System\ValidateAdminCodeSignatures=4,0
MACHINE\Software\Policies\Microsoft\Windows\Safer\CodeIdentifiers\AuthenticodeEnabled=4,0
MACHINE\System\CurrentControlSet\Control\Lsa\AuditBaseObjects=4,0
MACHINE\System\CurrentControlSet\Control\Lsa\CrashOnAuditFail=4,0
MACHINE\System\CurrentControlSet\Control\Lsa\DisableDomainCreds=4,0
MACHINE\System\CurrentControlSet\Control\Lsa\EveryoneIncludesAnonymous=4,0
MACHINE\System\CurrentControlSet\Control\Lsa\FIPSAlgorithmPolicy\Enabled=4,0
MACHINE\System\CurrentControlSet\Control\Lsa\ForceGuest=4,0
MACHINE\System\CurrentControlSet\Control\Lsa\FullPrivilegeAuditing=3,0
MACHINE\System\CurrentControlSet\Control\Lsa\LimitBlankPasswordUse=4,1
MACHINE\System\CurrentControlSet\Control\Lsa\MSV1_0\NTLMMinClientSec=4,536870912
MACHINE\System\CurrentControlSet\Control\Lsa\MSV1_0\NTLMMinServerSec=4,536870912
MACHINE\System\CurrentControlSet\Control\Lsa\NoLMHash=4,1
MACHINE\System\CurrentControlSet\Control\Lsa\RestrictAnonymous=4,0
MACHINE\System\CurrentControlSet\Control\Lsa\RestrictAnonymousSAM=4,1
[Version]
signature="$CHICAGO$"
Revision=1
"""

EN_DFE = [
    (
        ps(D.HARDWARE),
        ps51(
            {
                "ReleaseDate": "2018-07-02",
                "BIOSVersion": "N23ET55W (1.30 )",
                "Manufacturer": "LENOVO",
                "Model": "20KHCTO1WW",
                "ChassisTypes": [10],
            }
        ),
    ),
    (["reg", "query", D.STORAGE_POLICY, "/s"], REG_MISSING),
    (
        ["reg", "query", D.USBSTOR, "/v", "Start"],
        reg(
            "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\USBSTOR",
            ("Start", "REG_DWORD", "0x4"),
        ),
    ),
    (
        ["reg", "query", D.UASPSTOR, "/v", "Start"],
        reg(
            "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\UASPStor",
            ("Start", "REG_DWORD", "0x3"),
        ),
    ),
    (
        ps(D.SOFTWARE),
        ps51(
            {
                "UserHive": True,
                "Apps": [
                    {"Name": "7-Zip 23.01 (x64)", "SystemComponent": None, "Parent": None},
                    {"Name": "Google Chrome", "SystemComponent": None, "Parent": None},
                    {"Name": "Microsoft Edge", "SystemComponent": None, "Parent": None},
                    {
                        "Name": "Microsoft 365 Apps for enterprise - en-us",
                        "SystemComponent": None,
                        "Parent": None,
                    },
                    {"Name": "Microsoft Update Health Tools", "SystemComponent": 1, "Parent": None},
                    {
                        "Name": "Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.38.33130",
                        "SystemComponent": None,
                        "Parent": None,
                    },
                    {"Name": "SMART Notebook", "SystemComponent": None, "Parent": None},
                    {
                        "Name": "Security Update for Microsoft Office (KB5002623)",
                        "SystemComponent": None,
                        "Parent": "Office16.PROPLUS",
                    },
                    {"Name": "Microsoft Teams classic", "SystemComponent": None, "Parent": None},
                ],
            }
        ),
    ),
    (
        ps(D.ACCOUNTS),
        ps51(
            {
                "Computer": "STAFF-LT-042",
                "UserName": "SCHOOL\\j.smith",
                "Members": [
                    {
                        "Name": "STAFF-LT-042\\Administrator",
                        "SID": "S-1-5-21-3623811015-3361044348-30300820-500",
                        "Source": "Local",
                    },
                    {
                        "Name": "STAFF-LT-042\\itadmin",
                        "SID": "S-1-5-21-3623811015-3361044348-30300820-1001",
                        "Source": "Local",
                    },
                    {
                        "Name": "SCHOOL\\Domain Admins",
                        "SID": "S-1-5-21-1004336348-1177238915-682003330-512",
                        "Source": "ActiveDirectory",
                    },
                ],
                "MembersError": None,
                "Users": [
                    {
                        "Name": "Administrator",
                        "SID": "S-1-5-21-3623811015-3361044348-30300820-500",
                        "Enabled": False,
                    },
                    {
                        "Name": "DefaultAccount",
                        "SID": "S-1-5-21-3623811015-3361044348-30300820-503",
                        "Enabled": False,
                    },
                    {
                        "Name": "Guest",
                        "SID": "S-1-5-21-3623811015-3361044348-30300820-501",
                        "Enabled": False,
                    },
                    {
                        "Name": "itadmin",
                        "SID": "S-1-5-21-3623811015-3361044348-30300820-1001",
                        "Enabled": True,
                    },
                    {
                        "Name": "WDAGUtilityAccount",
                        "SID": "S-1-5-21-3623811015-3361044348-30300820-504",
                        "Enabled": False,
                    },
                ],
                "AutoAdminLogon": "0",
                "DefaultPassword": False,
            }
        ),
    ),
    (ps(D.SECURITY_POLICY), crlf(SECEDIT_SERVER_2016)),
]

SOURCES_EN = [
    {
        "command": "password_policy: secedit /export",
        "source": MEMO,
        "version": "Windows Server 2016 (10.0.14393), English; real capture (all areas exported, [Privilege Rights] left out here)",
    },
    {
        "command": "hardware_age: Win32_BIOS ReleaseDate",
        "source": OSQUERY_4771,
        "version": "Windows 10 1803, English; the real ReleaseDate 20180702000000.000000+000 (the issue's CPU-Z screenshot is of an X1 Carbon); model, BIOS version and chassis transcribed",
    },
    {
        "command": "reg query (a missing key): 'ERROR: The system was unable to find the specified registry key or value.'",
        "source": f"real, as published in {REG_EN_533} and {REG_EN_32}",
        "version": "Windows 10 (node-machine-id#32, 2018) and Windows (simple-exec#533, 2023), English",
    },
    {
        "command": "patches, removable_storage, software, accounts and the first six checks",
        "source": "transcribed in the shape each command prints (PowerShell 5.1 ConvertTo-Json, reg query)",
        "version": "Windows 11 Education 23H2",
    },
]

DE_DFE = [
    (
        ps(D.HARDWARE),
        ps51(
            {
                "ReleaseDate": "2022-03-15",
                "BIOSVersion": "1.14.2",
                "Manufacturer": "Dell Inc.",
                "Model": "Latitude 5420",
                "ChassisTypes": [10],
            }
        ),
    ),
    (
        ["reg", "query", D.STORAGE_POLICY, "/s"],
        reg(
            "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\RemovableStorageDevices",
            ("Deny_All", "REG_DWORD", "0x1"),
        ),
    ),
    (["reg", "query", D.USBSTOR, "/v", "Start"], REG_MISSING_DE),
    (["reg", "query", D.UASPSTOR, "/v", "Start"], REG_MISSING_DE),
    (
        ps(D.SOFTWARE),
        ps51(
            {
                "UserHive": False,
                "Apps": [
                    {"Name": "Mozilla Firefox (x64 de)", "SystemComponent": None, "Parent": None},
                    {
                        "Name": "Microsoft 365 Apps for enterprise - de-de",
                        "SystemComponent": None,
                        "Parent": None,
                    },
                    {"Name": "Microsoft Edge", "SystemComponent": None, "Parent": None},
                ],
            }
        ),
    ),
    (
        ps(D.ACCOUNTS),
        ps51(
            {
                "Computer": "LEHRER-PC-07",
                "UserName": "LEHRER-PC-07\\lehrer",
                "Members": None,
                # the real id (LGM_ID_MS): a group holding a SID Windows can't resolve
                "MembersError": "An unspecified error occurred.,Microsoft.PowerShell.Commands.GetLocalGroupMemberCommand",
                "Users": [
                    {
                        "Name": "Administrator",
                        "SID": "S-1-5-21-1437962347-1712328454-2863497236-500",
                        "Enabled": False,
                    },
                    {
                        "Name": "Gast",
                        "SID": "S-1-5-21-1437962347-1712328454-2863497236-501",
                        "Enabled": False,
                    },
                    {
                        "Name": "lehrer",
                        "SID": "S-1-5-21-1437962347-1712328454-2863497236-1001",
                        "Enabled": True,
                    },
                ],
                "AutoAdminLogon": "0",
                "DefaultPassword": False,
            }
        ),
    ),
    (
        ps(D.SECURITY_POLICY),
        crlf(
            SECEDIT_SERVER_2016.replace("MinimumPasswordLength = 0", "MinimumPasswordLength = 12")
            .replace(
                "LockoutBadCount = 0",
                "LockoutBadCount = 10\nResetLockoutCount = 10\nLockoutDuration = 10",
            )
            .replace('NewGuestName = "Guest"', 'NewGuestName = "Gast"')
        ),
    ),
]

SOURCES_DE = [
    {
        "command": "password_policy: secedit /export",
        "source": f"transcribed from the real Server 2016 export ({MEMO}), set to 12 characters and 10 attempts, the guest named Gast",
        "version": "Windows 11 Pro 23H2, German",
    },
    {
        "command": "accounts: Get-LocalGroupMember failing (FullyQualifiedErrorId)",
        "source": f"real id 'An unspecified error occurred.,Microsoft.PowerShell.Commands.GetLocalGroupMemberCommand' as published in {LGM_ID_MS}: a group holding a SID Windows can't resolve ('Failed to compare two elements in the array.'); the rest of the JSON is transcribed. Its first part may be translated on German Windows (no German capture found); the probe only records it",
        "version": "Windows PowerShell 5.1, English",
    },
    {
        "command": "reg query (a missing key): 'FEHLER: Der angegebene Registrierungsschlüssel bzw. Wert wurde nicht gefunden.'",
        "source": f"real: {REG_DE_MS}; found by its text, the index named no repository",
        "version": "Windows 10/11, German",
    },
    {
        "command": "hardware_age, removable_storage, software",
        "source": "transcribed in the shape each command prints",
        "version": "Windows 11 Pro 23H2, German",
    },
]

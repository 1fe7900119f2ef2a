"""The Windows fixture sets; run by make_fixtures.py (or alone: `.venv/bin/python tests/data/agent/fixtures_windows.py`)."""

# ruff: noqa: E501, F403, F405
import json

from fixtures_common import *
from fixtures_windows_dfe import DE_DFE, EN_DFE, SOURCES_DE, SOURCES_EN

from agent.checks import windows as W
from agent.checks.windows_probe import powershell as ps

# ---------------------------------------------------------------- Windows 11


def win(name, commands, note, sources=()):
    """One set; `sources` says where each real output came from (meta.json, README.md)."""
    make(name, "windows", commands, {}, note)
    meta_path = BASE / name / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["sources"] = list(sources)
    meta_path.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


REG_POLICY = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\r\n    ConsentPromptBehaviorAdmin    REG_DWORD    0x5\r\n    EnableLUA    REG_DWORD    0x1\r\n    InactivityTimeoutSecs    REG_DWORD    0x384\r\n    PromptOnSecureDesktop    REG_DWORD    0x1\r\n\r\n"
REG_DESKTOP = "\r\nHKEY_CURRENT_USER\\Control Panel\\Desktop\r\n    ActiveWndTrackTimeout    REG_DWORD    0x0\r\n    ScreenSaveActive    REG_SZ    1\r\n    ScreenSaverIsSecure    REG_SZ    1\r\n    ScreenSaveTimeOut    REG_SZ    600\r\n    WallPaper    REG_SZ    C:\\Windows\\web\\wallpaper\\Windows\\img0.jpg\r\n\r\n"
win(
    "windows-11",
    [
        (
            ps(W.BITLOCKER),
            json.dumps(
                [
                    {
                        "DriveLetter": "C:",
                        "VolumeType": 0,
                        "ProtectionStatus": 1,
                        "ConversionStatus": 1,
                    },
                    {
                        "DriveLetter": "D:",
                        "VolumeType": 1,
                        "ProtectionStatus": 0,
                        "ConversionStatus": 0,
                    },
                ],
                indent=4,
            ).replace("\n", "\r\n")
            + "\r\n",
        ),
        (["reg", "query", W.LOCK_POLICY], REG_POLICY),
        (["reg", "query", W.USER_DESKTOP], REG_DESKTOP),
        (
            ps(W.WINDOWS_UPDATE),
            json.dumps(
                {
                    "Pending": [
                        {
                            "Title": "Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 (Version 1.421.1023.0)",
                            "KB": ["2267602"],
                            "Severity": None,
                            "Published": "2024-11-25T05:06:12.0000000",
                            "Categories": [
                                "e0789628-ce08-4437-be74-2495b842f43b",
                                "8c3fcc84-7410-4a95-8b89-a166a0190486",
                            ],
                        },
                        {
                            "Title": "2024-11 Cumulative Update for Windows 11 Version 23H2 for x64-based Systems (KB5046633)",
                            "KB": ["5046633"],
                            "Severity": "Critical",
                            "Published": "2024-11-12T00:00:00.0000000",
                            "Categories": [
                                "0fa1201d-4330-4fa8-8ae9-b877473b6441",
                                "72e7624a-5b00-45d2-b92f-e561c0a6a160",
                            ],
                        },
                    ],
                    "LastSuccess": "2024-11-19T03:12:40.0000000Z",
                    "RebootRequired": False,
                    "NoAutoUpdate": None,
                },
                indent=4,
            ).replace("\n", "\r\n")
            + "\r\n",
        ),
        (
            ps(W.FIREWALL),
            json.dumps(
                [
                    {"Name": "Domain", "Enabled": 1},
                    {"Name": "Private", "Enabled": 1},
                    {"Name": "Public", "Enabled": 0},
                ],
                indent=4,
            ).replace("\n", "\r\n")
            + "\r\n",
        ),
        (
            ps(W.DEFENDER),
            json.dumps(
                {
                    "AMServiceEnabled": True,
                    "AntivirusEnabled": True,
                    "RealTimeProtectionEnabled": True,
                    "AntivirusSignatureAge": 1,
                    "AntivirusSignatureVersion": "1.421.1012.0",
                },
                indent=4,
            ).replace("\n", "\r\n")
            + "\r\n",
        ),
        (
            ps(W.OS_INFO),
            json.dumps(
                {
                    "Caption": "Microsoft Windows 11 Education",
                    "Version": "10.0.22631",
                    "BuildNumber": "22631",
                },
                indent=4,
            ).replace("\n", "\r\n")
            + "\r\n",
        ),
        *EN_DFE,
    ],
    "Windows 11 Education 23H2 (PowerShell 5.1): BitLocker on C:, 900 s inactivity lock, the November cumulative update (published 12 November) pending, last update 6 days ago, Public firewall profile off, Defender current; 2018 firmware, USBSTOR off but USB 3 (UAS) drives not, the security policy of a default install (no minimum length, no lockout).",
    SOURCES_EN,
)
win(
    "windows-11-de",
    [
        (
            ps(W.BITLOCKER),
            {
                "rc": 1,
                "stderr": "Get-CimInstance : Zugriff verweigert\r\nIn Zeile:1 Zeichen:1\r\n+ Get-CimInstance -Namespace root/cimv2/security/microsoftvolumeencryption ...\r\n    + CategoryInfo          : PermissionDenied: (root/cimv2/secu...ncryptableVolume:String) [Get-CimInstance], CimException\r\n",
            },
        ),
        (
            ["reg", "query", W.LOCK_POLICY],
            {
                "rc": 1,
                "stderr": "FEHLER: Der angegebene Registrierungsschlüssel bzw. Wert wurde nicht gefunden.\r\n",
            },
        ),
        (
            ["reg", "query", W.USER_DESKTOP],
            "\r\nHKEY_CURRENT_USER\\Systemsteuerung\\Desktop\r\n\ufffd\ufffd Bildschirmschoner\ufffd aktiv  1\r\n",
        ),
        (
            ps(W.WINDOWS_UPDATE),
            'Ausnahme beim Aufrufen von "Search" mit 1 Argument(en):  "Ausnahme von HRESULT: 0x8024402C"\r\nIn Zeile:1 Zeichen:1\r\n',
        ),
        (
            ps(W.FIREWALL),
            '[\r\n    {\r\n        "Name":  "Domäne",\r\n        "Enabled":  1\r\n    },\r\n    {\r\n        "Name":  "Priv',
        ),
        (
            ps(W.DEFENDER),
            {
                "rc": 1,
                "stderr": "Get-MpComputerStatus : Der Dienst kann nicht gestartet werden, da er deaktiviert ist oder ihm keine aktivierten Geräte zugeordnet sind.\r\n",
            },
        ),
        (
            ps(W.OS_INFO),
            json.dumps(
                {
                    "Caption": "Microsoft Windows 11 Pro",
                    "Version": "10.0.22631",
                    "BuildNumber": "22631",
                },
                indent=4,
            )
            + "\r\n",
        ),
        *DE_DFE,
    ],
    "German Windows 11 Pro: access denied, German error text, truncated JSON and mojibake must all come out unknown; the DfE checks read JSON, registry values, SIDs and secedit's INI keys, which German Windows prints the same, and say unknown with why where they fail.",
    SOURCES_DE,
)

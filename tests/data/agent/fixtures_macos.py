"""The macOS fixture sets; run by make_fixtures.py (or alone: `.venv/bin/python tests/data/agent/fixtures_macos.py`)."""
# ruff: noqa: E501, F403, F405

from fixtures_common import *

# ---------------------------------------------------------------- macOS
SU = "/Library/Preferences/com.apple.SoftwareUpdate"
XP = "/Library/Apple/System/Library/CoreServices/XProtect.bundle/Contents/Info"
XPM = XP + ".plist"
FW = ["/usr/libexec/ApplicationFirewall/socketfilterfw", "--getglobalstate"]


def mac(name, *, fde, lock, user, idle, su, last, flags, fw, xp_ver, xp_mtime, swvers, note):
    cmds = [
        (["fdesetup", "status"], fde),
        (["sysadminctl", "-screenLock", "status"], lock),
        (["stat", "-f%Su", "/dev/console"], user + "\n"),
        (
            [
                "sudo",
                "-u",
                user,
                "defaults",
                "-currentHost",
                "read",
                "com.apple.screensaver",
                "idleTime",
            ],
            idle,
        ),
        (["softwareupdate", "-l"], su),
        (["defaults", "read", SU, "LastFullSuccessfulDate"], last),
        *[(["defaults", "read", SU, k], v) for k, v in flags.items()],
        (FW, fw),
        (["defaults", "read", XP, "CFBundleShortVersionString"], xp_ver),
        (["stat", "-f%m", XPM], xp_mtime),
        (["sw_vers"], swvers),
    ]
    make(name, "macos", cmds, {}, note)


FLAGS_ON = {
    "AutomaticCheckEnabled": "1\n",
    "AutomaticallyInstallMacOSUpdates": "1\n",
    "CriticalUpdateInstall": "1\n",
}
mac(
    "macos-14",
    fde="FileVault is On.\n",
    lock={
        "stderr": "2024-11-25 10:00:03.412 sysadminctl[2188:61457] screenLock delay is immediate\n"
    },
    user="alice",
    idle="300\n",
    su={
        "stderr": "Software Update Tool\n\nFinding available software\nNo new software available.\n"
    },
    last="2024-11-20 08:12:44 +0000\n",
    flags=FLAGS_ON,
    fw="Firewall is enabled. (State = 1)\n",
    xp_ver="5281\n",
    xp_mtime="1731402000\n",  # 2024-11-12
    swvers="ProductName:\t\tmacOS\nProductVersion:\t\t14.7.1\nBuildVersion:\t\t23H222\n",
    note="macOS 14.7.1 Sonoma, managed well: everything passes; os_supported needs the gateway's EOL table.",
)
mac(
    "macos-15",
    fde="FileVault is Off.\n",
    lock={
        "stderr": "2024-11-25 10:00:03.412 sysadminctl[991:20417] screenLock delay is 300 seconds\n"
    },
    user="dave",
    idle="600\n",
    su={
        "stdout": "Software Update Tool\n\nFinding available software\nSoftware Update found the following new or updated software:\n* Label: macOS Sequoia 15.1.1-24B91\n\tTitle: macOS Sequoia 15.1.1, Version: 15.1.1, Size: 1843291KiB, Recommended: YES, Action: restart, \n* Label: Safari18.1.1VenturaAuto-18.1.1\n\tTitle: Safari, Version: 18.1.1, Size: 160418KiB, Recommended: YES, \n"
    },
    last="2024-10-01 17:40:02 +0000\n",
    flags={
        "AutomaticCheckEnabled": "1\n",
        "AutomaticallyInstallMacOSUpdates": "0\n",
        "CriticalUpdateInstall": "1\n",
    },
    fw="Firewall is disabled. (State = 0)\n",
    xp_ver="5272\n",
    xp_mtime="1722470400\n",  # 2024-08-01
    swvers="ProductName:\t\tmacOS\nProductVersion:\t\t15.1\nBuildVersion:\t\t24B83\n",
    note="macOS 15.1 Sequoia, neglected: FileVault off, 5 min lock delay, 15.1.1 pending since October, firewall off, stale XProtect.",
)
mac(
    "macos-14-de",
    fde="FileVault ist aktiviert.\n",
    lock={
        "stderr": "2024-11-25 10:00:03.412 sysadminctl[2188:61457] Bildschirmsperre: Verz\ufffd\ufffdgerung sofort\n"
    },
    user="erika",
    idle="\ufffd\x00\x00\n",
    su={
        "stderr": "Softwareaktualisierungs-Tool\n\nVerfügbare Software wird gesucht ...\nKeine neue Software verfügbar.\n"
    },
    last="2024-11-20 08:12:44 +0000\n",
    flags=FLAGS_ON,
    fw="Die Firewall ist aktiviert.\n",
    xp_ver={
        "rc": 1,
        "stderr": "2024-11-25 10:00:05.001 defaults[3312:70022] \nThe domain/default pair of (/Library/Apple/System/Library/CoreServices/XProtect.bundle/Contents/Info, CFBundleShortVersionString) does not exist\n",
    },
    xp_mtime="1731402000\n",
    swvers="Produktname:\tmacOS\nProduktversion:\t14,7\n\ufffd\ufffd\n",
    note="German/garbled macOS 14: every check must come out unknown, never pass.",
)

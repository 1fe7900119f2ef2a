"""The macOS fixture sets; run by make_fixtures.py (or alone: `.venv/bin/python tests/data/agent/fixtures_macos.py`)."""
# ruff: noqa: E501, F403, F405

import json

from fixtures_common import *

# ---------------------------------------------------------------- macOS
SU = "/Library/Preferences/com.apple.SoftwareUpdate"
XP = "/Library/Apple/System/Library/CoreServices/XProtect.bundle/Contents/Info"
XPM = XP + ".plist"
FW = ["/usr/libexec/ApplicationFirewall/socketfilterfw", "--getglobalstate"]


LOGIN = "/Library/Preferences/com.apple.loginwindow"
SYSUI = "/Library/Managed Preferences/com.apple.systemuiserver.plist"
ABSENT = "{stamp} defaults[{pid}] \nThe domain/default pair of (/Library/Preferences/com.apple.loginwindow, {key}) does not exist\n"


def absent(key, stamp="2024-11-25 10:00:04.118", pid="3301:70010"):
    """`defaults read` of an unset key: exit 1, the message on stderr (shape: rgcr/m-cli#68)."""
    return {"rc": 1, "stderr": ABSENT.format(stamp=stamp, pid=pid, key=key)}


def primary_groups(user):
    """`dscl . -list /Users PrimaryGroupID` in its shape (name, spaces, id): transcribed."""
    users = [("_mbsetupuser", 248), ("_spotlight", 89), ("daemon", 1), ("itadmin", 20)]
    users += [("nobody", -2), ("root", 0), (user, 20)]
    return "".join(f"{n:<31} {g}\n" for n, g in users)


def mac(
    name,
    *,
    fde,
    lock,
    user,
    idle,
    su,
    last,
    flags,
    fw,
    xp_ver,
    xp_mtime,
    swvers,
    note,
    hw,
    profiles,
    sysui,
    admins,
    autologin,
    guest,
    pwpolicy,
    apps,
    utilities,
    sources,
):
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
        (["softwareupdate", "--list"], su),
        (["defaults", "read", SU, "LastFullSuccessfulDate"], last),
        *[(["defaults", "read", SU, k], v) for k, v in flags.items()],
        (FW, fw),
        (["defaults", "read", XP, "CFBundleShortVersionString"], xp_ver),
        (["stat", "-f%m", XPM], xp_mtime),
        (["sw_vers"], swvers),
        (["system_profiler", "SPHardwareDataType"], hw),
        (["profiles", "show", "-type", "configuration"], profiles),
        (["plutil", "-convert", "xml1", "-o", "-", SYSUI], sysui),
        (["dscl", ".", "-read", "/Groups/admin", "GroupMembership"], admins),
        (["dscl", ".", "-list", "/Users", "PrimaryGroupID"], primary_groups(user)),
        (["defaults", "read", LOGIN, "autoLoginUser"], autologin),
        (["defaults", "read", LOGIN, "GuestEnabled"], guest),
        (["pwpolicy", "-getaccountpolicies"], pwpolicy),
    ]
    # a bundle is a folder; PkgInfo keeps it in git (an empty folder would not be)
    files = {f"/Applications/{a}.app/Contents/PkgInfo": "APPL????" for a in apps}
    files |= {f"/Applications/Utilities/{a}.app/Contents/PkgInfo": "APPL????" for a in utilities}
    make(name, "macos", cmds, files, note)
    meta_path = BASE / name / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["sources"] = sources
    meta_path.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- real outputs (see README.md)
# system_profiler SPHardwareDataType, macOS 14.6.1 (23G93), MacBook Pro Mac14,10: published
# by its owner in a public GitHub README (user sueszli); serial and UUIDs replaced.
HW_MAC14_10 = """Hardware:

    Hardware Overview:

      Model Name: MacBook Pro
      Model Identifier: Mac14,10
      Model Number: Z174001ABD/A
      Chip: Apple M2 Pro
      Total Number of Cores: 12 (8 performance and 4 efficiency)
      Memory: 16 GB
      System Firmware Version: 10151.140.19
      OS Loader Version: 10151.140.19
      Serial Number (system): [redacted]
      Hardware UUID: [redacted]
      Provisioning UDID: [redacted]
      Activation Lock Status: Disabled

"""
# MacBook Air MacBookAir9,1 (Intel, 2020): github.com/BryanChasko/HeraldStack
# docs/hardware/macbook.md, as published there (its owner redacted the serial and UUIDs).
HW_AIR9_1 = """Hardware:

    Model Name: MacBook Air
    Model Identifier: MacBookAir9,1
    Processor Name: Dual-Core Intel Core i3
    Processor Speed: 1.1 GHz
    Number of Processors: 1
    Total Number of Cores: 2
    L2 Cache (per Core): 512 KB
    L3 Cache: 4 MB
    Hyper-Threading Technology: Enabled
    Memory: 8 GB
    System Firmware Version: 2075.120.2.0.0
    OS Loader Version: 583~1350
    Serial Number (system): [REDACTED]
    Hardware UUID: [REDACTED]
    Provisioning UDID: [REDACTED]
    Activation Lock Status: Enabled
"""
# A German-region Mac, macOS 13.1 (22C65), MacBook Pro MacBookPro18,3: the Hardware part of
# github.com/bluuuk/data-management-system 13.02.2023/system.md (its Software part says
# "Time since boot: 1 Tag, 6 Stunden und 2 Minuten": labels stay English, values German).
HW_PRO18_3 = """Hardware:

    Hardware Overview:

      Model Name: MacBook Pro
      Model Identifier: MacBookPro18,3
      Chip: Apple M1 Pro
      Total Number of Cores: 8 (6 performance and 2 efficiency)
      Memory: 16 GB
      System Firmware Version: 8419.60.44
      OS Loader Version: 8419.60.44
      Activation Lock Status: Disabled

"""
# pwpolicy -getaccountpolicies on macOS 14 Sonoma (2023-09-28), lockout from a profile:
# github.com/usnistgov/macos_security/issues/311. The text is quoted up to the second
# policy's parameters; the rest of that dict and the closing tags are completed here.
PW_AUTH_311 = """\t<key>policyCategoryAuthentication</key>
\t<array>
\t\t<dict>
\t\t\t<key>policyContent</key>
\t\t\t<string>policyAttributeFailedAuthentications &lt; policyAttributeMaximumFailedAuthentications</string>
\t\t\t<key>policyIdentifier</key>
\t\t\t<string>ProfilePayload:2e42cfb6-c259-45c5-8660-39da3a427b55:maxFailedAttempts</string>
\t\t\t<key>policyParameters</key>
\t\t\t<dict>
\t\t\t\t<key>policyAttributeMaximumFailedAuthentications</key>
\t\t\t\t<integer>10</integer>
\t\t\t</dict>
\t\t</dict>
\t\t<dict>
\t\t\t<key>policyContent</key>
\t\t\t<string>(policyAttributeFailedAuthentications &lt; policyAttributeMaximumFailedAuthentications) OR (policyAttributeCurrentTime &gt; (policyAttributeLastFailedAuthenticationTime + autoEnableInSeconds))</string>
\t\t\t<key>policyIdentifier</key>
\t\t\t<string>ProfilePayload:2e42cfb6-c259-45c5-8660-39da3a427b55:minutesUntilFailedLoginReset</string>
\t\t\t<key>policyParameters</key>
\t\t\t<dict>
\t\t\t\t<key>autoEnableInSeconds</key>
\t\t\t\t<integer>900</integer>
\t\t\t\t<key>policyAttributeMaximumFailedAuthentications</key>
\t\t\t\t<integer>10</integer>
\t\t\t</dict>
\t\t</dict>
\t</array>
"""
# A minimum length from a profile, in the shape of github.com/kolide/launcher/issues/579's
# output (ProfilePayload:...:minLength, "policyAttributePassword matches '.{N,}+'"); the
# figure 12 and the UUID are this set's, and the many-language descriptions are left out.
PW_LENGTH_12 = """\t<key>policyCategoryPasswordContent</key>
\t<array>
\t\t<dict>
\t\t\t<key>policyContent</key>
\t\t\t<string>policyAttributePassword matches '.{12,}+'</string>
\t\t\t<key>policyIdentifier</key>
\t\t\t<string>ProfilePayload:7d1c3a52-5b0e-4c61-9a51-0f2a0c8e44d1:minLength</string>
\t\t</dict>
\t</array>
"""
# macOS 15 Sequoia with Jamf Connect (2025-05-06): github.com/usnistgov/macos_security/issues/480
# (and Jamf-Concepts/jamf-compliance-editor#21): the built-in "^$|.{4,}+" rule, which lets a
# password be empty; quoted up to its policyContent, closed here, descriptions left out.
PW_SEQUOIA_480 = """<key>policyCategoryPasswordContent</key>
<array>
<dict>
<key>policyContent</key>
<string>policyAttributePassword matches '^$|.{4,}+'</string>
</dict>
</array>
"""


def pwpolicy(*parts):
    head = '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n<dict>\n'
    return "Getting global account policies\n" + head + "".join(parts) + "</dict>\n</plist>\n"


# The managed preference a Restrictions profile writes (Apple's documented mount-controls
# keys; transcribed, as `plutil -convert xml1 -o -` prints it).
SYSUI_DENY = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
\t<key>mount-controls</key>
\t<dict>
\t\t<key>harddisk-external</key>
\t\t<array>
\t\t\t<string>deny</string>
\t\t\t<string>eject</string>
\t\t</array>
\t</dict>
</dict>
</plist>
"""
NO_SYSUI = {
    "rc": 1,
    "stderr": "/Library/Managed Preferences/com.apple.systemuiserver.plist: file does not exist or is not readable or is not a regular file (Error Domain=NSCocoaErrorDomain Code=260)\n",
}
APPS_SCHOOL = [
    "Safari",
    "Google Chrome",
    "Microsoft Word",
    "Microsoft PowerPoint",
    "Keynote",
    "Pages",
    "Numbers",
    "GarageBand",
    "iMovie",
    "Self Service",
]
UTILITIES = ["Activity Monitor", "Disk Utility", "Terminal", "System Information"]


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
    hw=HW_MAC14_10,
    profiles="There are 2 configuration profiles installed\n",
    sysui=SYSUI_DENY,
    admins="GroupMembership: root itadmin\n",
    autologin=absent("autoLoginUser"),
    guest="0\n",
    pwpolicy=pwpolicy(PW_AUTH_311, PW_LENGTH_12),
    apps=APPS_SCHOOL,
    utilities=UTILITIES,
    sources=[
        {
            "command": "system_profiler SPHardwareDataType",
            "source": "public GitHub README by user sueszli (found by its text; the index names no repository), serial and UUIDs replaced",
            "version": "macOS 14.6.1 (23G93), Mac14,10",
        },
        {
            "command": "pwpolicy -getaccountpolicies",
            "source": "https://github.com/usnistgov/macos_security/issues/311 (lockout part, closing tags completed) + minimum length transcribed in the shape of https://github.com/kolide/launcher/issues/579",
            "version": "macOS 14.0 Sonoma",
        },
        {
            "command": "defaults read ... autoLoginUser (absent)",
            "source": "transcribed in the shape of https://github.com/rgcr/m-cli/issues/68 (timestamp line, then 'The domain/default pair of (...) does not exist')",
            "version": "any",
        },
        {
            "command": "softwareupdate --list",
            "source": "transcribed ('No new software available.' on stderr)",
            "version": "macOS 14",
        },
        {
            "command": "profiles show -type configuration, plutil of com.apple.systemuiserver, dscl, /Applications",
            "source": "transcribed (dscl in the shape 'GroupMembership: root NAME' published for macOS 15.6.1)",
            "version": "macOS 14",
        },
    ],
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
    hw=HW_AIR9_1,
    profiles="There are no configuration profiles installed\n",
    sysui=NO_SYSUI,
    admins="GroupMembership: root dave itadmin\n",
    autologin="dave\n",
    guest="1\n",
    pwpolicy=pwpolicy(PW_SEQUOIA_480),
    apps=[*APPS_SCHOOL[:4], "Tor Browser", "Steam", "uTorrent Web"],
    utilities=UTILITIES,
    sources=[
        {
            "command": "system_profiler SPHardwareDataType",
            "source": "https://github.com/BryanChasko/HeraldStack/blob/HEAD/docs/hardware/macbook.md (as published, redacted by its owner)",
            "version": "not stated there (firmware 2075.120.2.0.0), MacBookAir9,1",
        },
        {
            "command": "pwpolicy -getaccountpolicies",
            "source": "https://github.com/usnistgov/macos_security/issues/480 (the built-in '^$|.{4,}+' rule; closed here, descriptions left out)",
            "version": "macOS 15 Sequoia",
        },
        {
            "command": "softwareupdate --list",
            "source": "transcribed ('* Label:' / tab 'Title: ..., Recommended: YES, Action: restart,' as in https://github.com/Macjutsu/super/issues/151)",
            "version": "macOS 15.1",
        },
        {
            "command": "profiles, plutil, dscl, defaults values, /Applications",
            "source": "transcribed",
            "version": "macOS 15",
        },
    ],
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
    hw=HW_PRO18_3,
    profiles={"rc": 1},
    sysui=NO_SYSUI,
    admins="GroupMembership: root itadmin\n",
    autologin=absent("autoLoginUser"),
    guest=absent("GuestEnabled"),
    pwpolicy=pwpolicy(PW_AUTH_311),
    apps=APPS_SCHOOL,
    utilities=[],
    sources=[
        {
            "command": "system_profiler SPHardwareDataType",
            "source": "https://github.com/bluuuk/data-management-system/blob/HEAD/13.02.2023/system.md (Hardware part; German region: labels English, values German)",
            "version": "macOS 13.1 (22C65), MacBookPro18,3",
        },
        {
            "command": "pwpolicy -getaccountpolicies",
            "source": "https://github.com/usnistgov/macos_security/issues/311 (lockout part only, closing tags completed): the plist is the same in every language",
            "version": "macOS 14.0 Sonoma",
        },
        {
            "command": "profiles show -type configuration",
            "source": "stand-in: exit 1 with no output (not run as root); no published output found",
            "version": "macOS 14",
        },
        {
            "command": "defaults read ... (absent keys)",
            "source": "transcribed in the shape of https://github.com/rgcr/m-cli/issues/68; defaults is not translated",
            "version": "any",
        },
        {
            "command": "fdesetup, sysadminctl, softwareupdate, socketfilterfw, sw_vers (German/garbled)",
            "source": "transcribed; not real captures, so their German wording is not matched and they stay unknown. No published German output of these tools was found; a German-language Mac audit script (index file 25309345242) greps fdesetup's English 'FileVault is', so a real German Mac likely prints English here: these outputs stand in for broken or unexpected text, not for German macOS",
            "version": "macOS 14 (German)",
        },
    ],
    note="German/garbled macOS 14: every check must come out unknown, never pass.",
)

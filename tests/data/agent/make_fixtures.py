"""Rewrites the fixture sets in this folder: `.venv/bin/python tests/data/agent/make_fixtures.py`.

The outputs are transcribed by hand in the exact shape each command prints (see README.md);
the Windows index keys are built from agent.checks.windows so they follow script edits.
"""
# ruff: noqa: E501

import json
import shutil
import sys
from pathlib import Path

BASE = Path(__file__).resolve().parent
sys.path.insert(0, str(BASE.parents[2]))
from agent.checks import windows as W  # noqa: E402

NOW = "2024-11-25T10:00:00+00:00"


def make(name, platform, commands, files, note):
    d = BASE / name
    if d.exists():
        shutil.rmtree(d)
    (d / "commands").mkdir(parents=True)
    (d / "root").mkdir()
    index = {}
    for i, (argv, spec) in enumerate(commands):
        key = " ".join(argv)
        if isinstance(spec, str):
            spec = {"stdout": spec}
        entry = {"rc": spec.get("rc", 0)}
        slug = (
            f"{i:02d}-"
            + "".join(
                c if c.isalnum() else "_"
                for c in argv[0].split("/")[-1] + "_" + "_".join(argv[1:3])
            )[:40]
        )
        for stream in ("stdout", "stderr"):
            if stream in spec:
                fn = f"{slug}.{stream}.txt"
                data = spec[stream]
                (d / "commands" / fn).write_bytes(
                    data if isinstance(data, bytes) else data.encode()
                )
                entry[stream] = fn
        index[key] = entry
    (d / "commands" / "index.json").write_text(
        json.dumps(index, indent=1, ensure_ascii=False) + "\n"
    )
    for path, content in files.items():
        p = d / "root" / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            p.mkdir(exist_ok=True)
        else:
            p.write_text(content)
    (d / "meta.json").write_text(
        json.dumps({"platform": platform, "now": NOW, "note": note}, indent=1) + "\n"
    )


def sysblock(name, dm_name=None, uuid=None, slaves=()):
    out = {f"/sys/class/block/{name}/dev": "259:0\n", f"/sys/class/block/{name}/slaves": None}
    if dm_name:
        out[f"/sys/class/block/{name}/dm/name"] = dm_name + "\n"
        out[f"/sys/class/block/{name}/dm/uuid"] = uuid + "\n"
    for s in slaves:
        out[f"/sys/class/block/{name}/slaves/{s}"] = ""  # a symlink on a real system
    return out


def gs(user, schema, key):
    return ["runuser", "-u", user, "--", "gsettings", "get", schema, key]


S, SS = "org.gnome.desktop.session", "org.gnome.desktop.screensaver"
NOTFOUND = {"rc": 127, "stderr": "command not found\n"}

# ---------------------------------------------------------------- Ubuntu 24.04: LUKS+LVM, GNOME
ubuntu_apt = """NOTE: This is only a simulation!
      apt-get needs root privileges for real execution.
      Keep also in mind that locking is deactivated,
      so don't depend on the relevance to the real current situation!
Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following packages will be upgraded:
  libssl3t64 openssl snapd
3 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.
Inst libssl3t64 [3.0.13-0ubuntu3.1] (3.0.13-0ubuntu3.4 Ubuntu:24.04/noble-updates, Ubuntu:24.04/noble-security [amd64])
Inst openssl [3.0.13-0ubuntu3.1] (3.0.13-0ubuntu3.4 Ubuntu:24.04/noble-updates [amd64])
Inst snapd [2.63+24.04] (2.65.3+24.04 Ubuntu:24.04/noble-updates [amd64])
Conf libssl3t64 (3.0.13-0ubuntu3.4 Ubuntu:24.04/noble-updates, Ubuntu:24.04/noble-security [amd64])
Conf openssl (3.0.13-0ubuntu3.4 Ubuntu:24.04/noble-updates [amd64])
Conf snapd (2.65.3+24.04 Ubuntu:24.04/noble-updates [amd64])
"""
apt_conf_on = 'APT "";\nAPT::Architecture "amd64";\nAPT::Periodic "";\nAPT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'
make(
    "ubuntu-24.04",
    "linux",
    [
        (
            ["loginctl", "list-sessions", "--no-legend"],
            "      2 1000 alice seat0 tty2     active no  -\n",
        ),
        (gs("alice", S, "idle-delay"), "uint32 300\n"),
        (gs("alice", SS, "lock-enabled"), "true\n"),
        (gs("alice", SS, "lock-delay"), "uint32 0\n"),
        (["apt-get", "--version"], "apt 2.7.14 (amd64)\n"),
        (["apt-get", "-s", "-o", "Debug::NoLocking=true", "upgrade"], ubuntu_apt),
        (["apt-config", "dump"], apt_conf_on),
        (
            ["ufw", "status"],
            "Status: active\n\nTo                         Action      From\n--                         ------      ----\n22/tcp                     ALLOW       Anywhere\n",
        ),
    ],
    {
        "/proc/mounts": "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n/dev/mapper/ubuntu--vg-ubuntu--lv / ext4 rw,relatime 0 0\n/dev/nvme0n1p2 /boot ext4 rw,relatime 0 0\n/dev/nvme0n1p1 /boot/efi vfat rw,relatime 0 0\n",
        **sysblock(
            "dm-0",
            "dm_crypt-0",
            "CRYPT-LUKS2-6f1c2a9e8b7d4c3a9f0e1d2c3b4a5968-dm_crypt-0",
            ["nvme0n1p3"],
        ),
        **sysblock(
            "dm-1",
            "ubuntu--vg-ubuntu--lv",
            "LVM-Xq3wVnRk0aZ1HcXj2yT7uB9eLm4oPs6dK8fG5hJ1iW0vN3bC2xZ7qR4tY6uE9oP1",
            ["dm-0"],
        ),
        **sysblock("nvme0n1p1"),
        **sysblock("nvme0n1p2"),
        **sysblock("nvme0n1p3"),
        "/etc/os-release": 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION="24.04.1 LTS (Noble Numbat)"\nID=ubuntu\nID_LIKE=debian\n',
        "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n",
        "/var/log/apt/history.log": "\nStart-Date: 2024-11-20  09:01:12\nCommandline: /usr/bin/unattended-upgrade\nUpgrade: libc6:amd64 (2.39-0ubuntu8.2, 2.39-0ubuntu8.3)\nEnd-Date: 2024-11-20  09:01:40\n\nStart-Date: 2024-11-22  14:00:01\nCommandline: apt install vim\nInstall: vim:amd64 (2:9.1.0016-1ubuntu7.3)\nEnd-Date: 2024-11-22  14:00:09\n",
    },
    "Ubuntu 24.04 laptop: root on LVM on LUKS, GNOME, ufw, unattended-upgrades, no ClamAV.",
)

# ---------------------------------------------------------------- Debian 12: plain root, KDE, old security updates
debian_apt = """Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following packages will be upgraded:
  libssl3 openssl
2 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.
Inst libssl3 [3.0.14-1~deb12u2] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst openssl [3.0.14-1~deb12u2] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Conf libssl3 (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Conf openssl (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
"""
make(
    "debian-12",
    "linux",
    [
        (
            ["loginctl", "list-sessions", "--no-legend"],
            "      3 1000 bob seat0 tty7\n     c1  115 sddm -    -\n",
        ),
        (["apt-get", "--version"], "apt 2.6.1 (amd64)\n"),
        (["apt-get", "-s", "-o", "Debug::NoLocking=true", "upgrade"], debian_apt),
        (["apt-config", "dump"], apt_conf_on),
        (["ufw", "status"], NOTFOUND),
        (
            ["nft", "list", "ruleset"],
            "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n\t}\n}\n",
        ),
        (["clamscan", "--version"], "ClamAV 1.0.7/27468/Sun Nov 24 09:28:19 2024\n"),
        (["systemctl", "is-active", "clamav-daemon"], "active\n"),
        (["systemctl", "is-active", "clamd@scan"], {"rc": 4, "stdout": "inactive\n"}),
    ],
    {
        "/proc/mounts": "/dev/sda1 / ext4 rw,relatime,errors=remount-ro 0 0\ntmpfs /run tmpfs rw 0 0\n",
        **sysblock("sda"),
        **sysblock("sda1"),
        "/etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
        "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000:Bob:/home/bob:/bin/bash\n",
        "/home/bob/.config/kscreenlockerrc": "[Daemon]\nAutolock=true\nLockGrace=5\nTimeout=30\n",
        "/var/log/apt/history.log": "Start-Date: 2024-10-01  08:00:00\nCommandline: apt-get upgrade -y\nUpgrade: curl:amd64 (7.88.1-10+deb12u6, 7.88.1-10+deb12u7)\nEnd-Date: 2024-10-01  08:00:31\n",
    },
    "Debian 12 desktop: unencrypted root, KDE locking after 30 min, security updates waiting since October, nftables accepting everything, ClamAV current.",
)

# ---------------------------------------------------------------- Fedora 41: LUKS btrfs, GNOME never locks, dnf
make(
    "fedora-41",
    "linux",
    [
        (["loginctl", "list-sessions", "--no-legend"], "2 1000 carol seat0 tty2 active no -\n"),
        (gs("carol", S, "idle-delay"), "uint32 0\n"),
        (gs("carol", SS, "lock-enabled"), "true\n"),
        (gs("carol", SS, "lock-delay"), "uint32 0\n"),
        (["apt-get", "--version"], NOTFOUND),
        (["dnf", "--version"], "dnf5 version 5.2.6.2\n"),
        (
            ["dnf", "-q", "check-update"],
            {
                "rc": 100,
                "stdout": "\nfirefox.x86_64                 132.0.2-1.fc41         updates\nopenssl-libs.x86_64            1:3.2.2-9.fc41         updates\n",
            },
        ),
        (
            ["dnf", "-q", "updateinfo", "list", "--security"],
            "FEDORA-2024-4a8e0c77b1 Important/Sec. firefox-132.0.2-1.fc41.x86_64\n",
        ),
        (
            ["dnf", "history", "list"],
            "ID Command line              Date and time       Action(s) Altered\n14 dnf upgrade --refresh      2024-11-18 16:20:11                 37\n13 dnf install htop           2024-11-02 10:01:55                  1\n",
        ),
        (
            ["systemctl", "is-enabled", "dnf-automatic-install.timer"],
            {"rc": 1, "stdout": "disabled\n"},
        ),
        (["systemctl", "is-enabled", "dnf-automatic.timer"], {"rc": 1, "stdout": "disabled\n"}),
        (
            ["dnf", "needs-restarting", "-r"],
            {
                "rc": 1,
                "stdout": "Core libraries or services have been updated since boot-up:\n  * kernel\n\nReboot is required to fully utilize these updates.\n",
            },
        ),
        (["ufw", "status"], NOTFOUND),
        (["firewall-cmd", "--state"], "running\n"),
        (["clamscan", "--version"], NOTFOUND),
    ],
    {
        "/proc/mounts": "/dev/mapper/luks-0c3a7f3e-1b2d-4e5f-8a9b-0c1d2e3f4a5b / btrfs rw,seclabel,relatime,compress=zstd:1,ssd,subvol=/root 0 0\n/dev/nvme0n1p2 /boot ext4 rw,seclabel,relatime 0 0\n",
        **sysblock(
            "dm-0",
            "luks-0c3a7f3e-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
            "CRYPT-LUKS2-0c3a7f3e1b2d4e5f8a9b0c1d2e3f4a5b-luks-0c3a7f3e-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
            ["nvme0n1p3"],
        ),
        **sysblock("nvme0n1p2"),
        **sysblock("nvme0n1p3"),
        "/etc/os-release": 'NAME="Fedora Linux"\nVERSION="41 (Workstation Edition)"\nID=fedora\nVERSION_ID=41\nPRETTY_NAME="Fedora Linux 41 (Workstation Edition)"\n',
        "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\ncarol:x:1000:1000:Carol:/home/carol:/bin/bash\n",
    },
    "Fedora 41 Workstation: LUKS btrfs root, GNOME idle-delay 0 (never), dnf-automatic off and a kernel waiting for reboot, firewalld running, no ClamAV.",
)

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

# ---------------------------------------------------------------- Windows 11
ps = W.powershell


def win(name, commands, note):
    make(name, "windows", commands, {}, note)


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
                            "Categories": [
                                "e0789628-ce08-4437-be74-2495b842f43b",
                                "8c3fcc84-7410-4a95-8b89-a166a0190486",
                            ],
                        },
                        {
                            "Title": "2024-11 Cumulative Update for Windows 11 Version 23H2 for x64-based Systems (KB5046633)",
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
    ],
    "Windows 11 Education 23H2 (PowerShell 5.1): BitLocker on C:, 900 s inactivity lock, the November cumulative update pending 6 days, Public firewall profile off, Defender current.",
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
    ],
    "German Windows 11 Pro: access denied, German error text, truncated JSON and mojibake must all come out unknown.",
)
print("ok")

"""The Linux fixture sets; run by make_fixtures.py (or alone: `.venv/bin/python tests/data/agent/fixtures_linux.py`)."""
# ruff: noqa: E501, F403, F405

from fixtures_common import *

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

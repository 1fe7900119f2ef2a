"""The Linux fixture sets; run by make_fixtures.py (or alone: `.venv/bin/python tests/data/agent/fixtures_linux.py`)."""
# ruff: noqa: E501, F403, F405

from fixtures_common import *

# ---------------------------------------------------------------- the DfE checks' files (issue 19)
# Formats: .desktop files per the freedesktop Desktop Entry spec 1.5 as GNOME/KDE/Flatpak/Snap
# install them; PAM stacks as Ubuntu 24.04 (libpam-pwquality 1.4.5), Debian 12 (pam 1.5.2
# defaults) and Fedora 41 (authselect 1.5 "local" profile with-faillock) write them;
# pwquality.conf / faillock.conf as shipped by libpwquality 1.4.5 and pam 1.6 (commented
# defaults); /sys/class/dmi/id as the kernel prints SMBIOS (bios_date MM/DD/YYYY); GDM 46
# custom.conf, SDDM 0.20 sddm.conf.d, USBGuard 1.1 usbguard-daemon.conf and rules.conf.


def desktop(name, exec_, extra=""):
    return f"[Desktop Entry]\nVersion=1.0\nType=Application\nName={name}\nName[de]={name}\nExec={exec_}\nTerminal=false\n{extra}"


def dmi(date, chassis, vendor, product):
    return {
        "/sys/class/dmi/id/bios_date": date + "\n",
        "/sys/class/dmi/id/chassis_type": f"{chassis}\n",
        "/sys/class/dmi/id/sys_vendor": vendor + "\n",
        "/sys/class/dmi/id/product_name": product + "\n",
    }


FAILLOCK_CONF = "# Configuration for locking the user after multiple failed\n# authentication attempts.\n#\n# The directory where the user files with the failure records are kept.\n# dir = /var/run/faillock\n#\n# Deny access if the number of consecutive authentication failures\n# for this user during the recent interval exceeds n tries.\n# The default is 3.\n# deny = 3\n#\n# The length of the interval during which the consecutive\n# authentication failures must happen for the user account\n# lock out is n seconds.\n# The default is 900 (15 minutes).\n# fail_interval = 900\n"
PWQUALITY_CONF = "# Configuration for systemwide password quality limits\n# Defaults:\n#\n# Number of characters in the new password that must not be present in the\n# old password.\n# difok = 1\n#\n# Minimum acceptable size for the new password (plus one if\n# credits are not disabled which is the default). (See pam_cracklib manual.)\n# Cannot be set to lower value than 6.\n# minlen = 8\n#\n# The maximum credit for having digits in the new password. If less than 0\n# it is the minimum number of digits in the new password.\n# dcredit = 0\n"
DEBIAN_COMMON_PASSWORD = '#\n# /etc/pam.d/common-password - password-related modules common to all services\n#\n# here are the per-package modules (the "Primary" block)\npassword\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n# here\'s the fallback if no module succeeds\npassword\trequisite\t\t\tpam_deny.so\npassword\trequired\t\t\tpam_permit.so\n# end of pam-auth-update config\n'
DEBIAN_COMMON_AUTH = '#\n# /etc/pam.d/common-auth - authentication settings common to all services\n#\n# here are the per-package modules (the "Primary" block)\nauth\t[success=1 default=ignore]\tpam_unix.so nullok\n# here\'s the fallback if no module succeeds\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n# end of pam-auth-update config\n'

ubuntu_dfe = {
    **dmi("03/14/2023", 10, "LENOVO", "21HD003UUK"),
    "/etc/modprobe.d/blacklist.conf": "# This file lists those modules which we don't want to be loaded by\n# alias expansion, usually so some other driver will be loaded for the\n# device instead.\n\n# evbug is a debug tool that should be loaded explicitly\nblacklist evbug\n",
    "/etc/modprobe.d/schoolgate-usb-storage.conf": "# School build: no USB mass storage (issue 19). Devices on the approved list are built without this file.\ninstall usb-storage /bin/false\ninstall uas /bin/false\n",
    "/usr/lib/modprobe.d/systemd.conf": "# Set tunnel options\noptions bonding max_bonds=0\noptions dummy numdummies=0\n",
    "/usr/share/applications/libreoffice-writer.desktop": desktop(
        "LibreOffice Writer",
        "libreoffice --writer %U",
        "Icon=libreoffice-writer\nCategories=Office;WordProcessor;\n[Desktop Action NewDocument]\nName=New Document\nExec=libreoffice --writer\n",
    ),
    "/usr/share/applications/org.gnome.Nautilus.desktop": desktop(
        "Files", "nautilus --new-window %U", "DBusActivatable=true\n"
    ),
    "/usr/share/applications/org.gnome.TextEditor.desktop": desktop(
        "Text Editor", "gnome-text-editor %U"
    ),
    "/usr/share/applications/python3.12.desktop": desktop(
        "Python (v3.12)", "/usr/bin/python3.12", "NoDisplay=true\n"
    ),
    "/usr/share/applications/gnome-mimeapps.list": "[Default Applications]\ntext/html=firefox_firefox.desktop\n",
    "/var/lib/snapd/desktop/applications/firefox_firefox.desktop": desktop(
        "Firefox Web Browser",
        "env BAMF_DESKTOP_FILE_HINT=/var/lib/snapd/desktop/applications/firefox_firefox.desktop /snap/bin/firefox %u",
        "X-SnapInstanceName=firefox\n",
    ),
    "/var/lib/flatpak/exports/share/applications/com.valvesoftware.Steam.desktop": desktop(
        "Steam",
        "/usr/bin/flatpak run --branch=stable --arch=x86_64 --command=/app/bin/steam-wrapper com.valvesoftware.Steam %U",
        "X-Flatpak=com.valvesoftware.Steam\n",
    ),
    "/etc/group": "root:x:0:\nadm:x:4:syslog,alice\nsudo:x:27:itadmin\nlpadmin:x:114:alice\nalice:x:1000:\nitadmin:x:1001:\n",
    "/etc/shadow": "root:*:19950:0:99999:7:::\nalice:$y$j9T$Lr3nGq1oK0dc8m2YV7yE8/$Cj5bXyqv0oHf7mJx6nM1b6d7yFQkq0m1yZk6QmU8JbA:20040:0:99999:7:::\nitadmin:$y$j9T$Qz5yX0dN3kB6v8wE1rT2u/$b7N1mZx9cV3kL5qW8eR2tY6uI0oP4aS7dF1gH3jK5lM:19990:0:99999:7:::\n",
    "/etc/sudoers": 'Defaults\tenv_reset\nDefaults\tmail_badpass\nDefaults\tsecure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin"\nDefaults\tuse_pty\n\n# User privilege specification\nroot\tALL=(ALL:ALL) ALL\n\n# Members of the admin group may gain root privileges\n%admin ALL=(ALL) ALL\n\n# Allow members of group sudo to execute any command\n%sudo\tALL=(ALL:ALL) ALL\n\n@includedir /etc/sudoers.d\n',
    "/etc/sudoers.d/README": "#\n# Files in /etc/sudoers.d are parsed in sorted lexical order.\n",
    "/usr/sbin/gdm3": "",
    "/etc/gdm3/custom.conf": "# GDM configuration storage\n#\n# See /usr/share/gdm/gdm.schemas for a list of available options.\n\n[daemon]\n# Uncomment the line below to force the login screen to use Xorg\n#WaylandEnable=false\n\n# Enabling automatic login\n#  AutomaticLoginEnable = true\n#  AutomaticLogin = user1\n\n# Enabling timed login\n#  TimedLoginEnable = true\n#  TimedLogin = user1\n#  TimedLoginDelay = 10\n\n[security]\n\n[xdmcp]\n\n[chooser]\n\n[debug]\n# Uncomment the line below to turn on debugging\n#Enable=true\n",
    "/etc/pam.d/common-password": '#\n# /etc/pam.d/common-password - password-related modules common to all services\n#\n# here are the per-package modules (the "Primary" block)\npassword\trequisite\t\t\tpam_pwquality.so retry=3\npassword\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt\n# here\'s the fallback if no module succeeds\npassword\trequisite\t\t\tpam_deny.so\npassword\trequired\t\t\tpam_permit.so\npassword\toptional\tpam_gnome_keyring.so \n# end of pam-auth-update config\n',
    "/etc/security/pwquality.conf": PWQUALITY_CONF,
    "/etc/security/pwquality.conf.d/50-school.conf": "# School policy: NCSC three random words, at least 12 characters\nminlen = 12\n",
    "/etc/pam.d/common-auth": '#\n# /etc/pam.d/common-auth - authentication settings common to all services\n#\n# here are the per-package modules (the "Primary" block)\nauth\trequisite\t\t\tpam_faillock.so preauth\nauth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\t[default=die]\t\t\tpam_faillock.so authfail\n# here\'s the fallback if no module succeeds\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\nauth\tsufficient\t\t\tpam_faillock.so authsucc\n# end of pam-auth-update config\n',
    "/etc/security/faillock.conf": FAILLOCK_CONF + "deny = 5\nunlock_time = 600\n",
}

debian_dfe = {
    **dmi("06/12/2017", 3, "Dell Inc.", "OptiPlex 7050"),
    "/etc/modprobe.d/usb-storage.conf": "blacklist usb-storage\n",
    "/lib/modprobe.d/aliases.conf": "# Aliases to tell insmod/modprobe which modules to use\nalias net-pf-1 unix\n",
    "/sys/module/usb_storage/refcnt": "0\n",  # a directory on a real system: the module is loaded
    "/usr/share/applications/firefox-esr.desktop": desktop(
        "Firefox ESR", "/usr/lib/firefox-esr/firefox-esr %u", "Categories=Network;WebBrowser;\n"
    ),
    "/usr/share/applications/org.kde.dolphin.desktop": desktop("Dolphin", "dolphin %u"),
    "/usr/share/applications/org.kde.konsole.desktop": desktop("Konsole", "konsole"),
    "/usr/share/applications/org.qbittorrent.qBittorrent.desktop": desktop(
        "qBittorrent", "qbittorrent %U", "Categories=Network;FileTransfer;P2P;Qt;\n"
    ),
    "/usr/share/applications/vlc.desktop": desktop(
        "VLC media player", "/usr/bin/vlc --started-from-file %U"
    ),
    "/usr/share/applications/kde-mimeapps.list": "[Added Associations]\n",
    "/etc/group": "root:x:0:\nsudo:x:27:bob,olduser\nusers:x:100:bob\nbob:x:1000:\nolduser:x:1001:\n",
    "/etc/shadow": "root:$y$j9T$aB3cD4eF5gH6iJ7kL8mN9/$oP1qR2sT3uV4wX5yZ6aB7cD8eF9gH0iJ1kL2mN3oP4q:19600:0:99999:7:::\nbob:$y$j9T$Zz9yY8xX7wW6vV5uU4tT3/$sS2rR1qQ0pP9oO8nN7mM6lL5kK4jJ3iI2hH1gG0fF9e:19650:0:99999:7:::\nolduser:!$y$j9T$Mm1nN2oO3pP4qQ5rR6sS7/$tT8uU9vV0wW1xX2yY3zZ4aA5bB6cC7dD8eE9fF0gG1h:19700:0:99999:7:::\n",
    "/usr/bin/sddm": "",
    "/etc/sddm.conf.d/autologin.conf": "[Autologin]\nUser=bob\nSession=plasma\n",
    "/usr/lib/sddm/sddm.conf.d/00-debian.conf": "[General]\nNumlock=none\n",
    "/etc/pam.d/common-password": DEBIAN_COMMON_PASSWORD,
    "/etc/pam.d/common-auth": DEBIAN_COMMON_AUTH,
}

fedora_dfe = {
    **dmi("09/05/2024", 10, "Framework", "Laptop 13 (AMD Ryzen 7040Series)"),
    "/etc/modprobe.d/firewalld-sysctls.conf": "install nf_conntrack /usr/sbin/modprobe --ignore-install nf_conntrack $CMDLINE_OPTS && /usr/sbin/sysctl --quiet --pattern 'net[.]netfilter[.]nf_conntrack.*' --system\n",
    "/usr/lib/modprobe.d/dist-blacklist.conf": "# watchdog drivers\nblacklist i8xx_tco\n",
    "/etc/usbguard/usbguard-daemon.conf": "# Rule set file path.\nRuleFile=/etc/usbguard/rules.conf\n\n# Implicit policy target.\n#\n# How to treat devices that don't match any rule in the policy.\n#\n# * allow  - authorize the device\n# * block  - block the device\n# * reject - remove the device node from the system\n#\nImplicitPolicyTarget=block\n\nPresentDevicePolicy=apply-policy\nPresentControllerPolicy=keep\nInsertedDevicePolicy=apply-policy\n",
    "/etc/usbguard/rules.conf": 'allow id 1d6b:0002 serial "0000:c1:00.3" name "xHCI Host Controller" hash "jEP/6WzviqdJ5VSeTUY8PatCNBKeaREvo2OqdplND/o=" with-interface 09:00:00 with-connect-type ""\nallow id 32ac:0012 serial "" name "HDMI Expansion Card" with-interface { 11:00:00 03:00:00 } with-connect-type "hotplug"\nallow id 27c6:609c serial "UIDC7E6E11C_XXXX_MOC_B0" name "Goodix USB2.0 MISC" with-interface ff:00:00 with-connect-type "hardwired"\n',
    "/usr/share/applications/org.mozilla.firefox.desktop": desktop("Firefox", "firefox %u"),
    "/usr/share/applications/org.gnome.Nautilus.desktop": desktop(
        "Files", "nautilus --new-window %U"
    ),
    "/usr/share/applications/org.gnome.Ptyxis.desktop": desktop("Ptyxis", "ptyxis --new-window"),
    "/usr/share/applications/org.gnome.Settings.desktop": desktop(
        "Settings", "gnome-control-center", "Categories=GNOME;GTK;Settings;\n"
    ),
    "/usr/share/applications/nm-applet.desktop": desktop(
        "Network", "nm-applet", "NoDisplay=true\n"
    ),
    "/var/lib/flatpak/exports/share/applications/com.github.micahflee.torbrowser-launcher.desktop": desktop(
        "Tor Browser",
        "/usr/bin/flatpak run --branch=stable --arch=x86_64 --command=torbrowser-launcher com.github.micahflee.torbrowser-launcher %u",
        "X-Flatpak=com.github.micahflee.torbrowser-launcher\n",
    ),
    "/etc/group": "root:x:0:\nwheel:x:10:carol\ncarol:x:1000:\n",
    "/etc/shadow": "root:!:20000:0:99999:7:::\ncarol:$y$j9T$Kk2lL3mM4nN5oO6pP7qQ8/$rR9sS0tT1uU2vV3wW4xX5yY6zZ7aA8bB9cC0dD1eE2f:20010:0:99999:7:::\n",
    "/usr/sbin/gdm": "",
    "/etc/gdm/custom.conf": "# GDM configuration storage\n\n[daemon]\n\n[security]\n\n[xdmcp]\n\n[chooser]\n\n[debug]\n# Uncomment the line below to turn on debugging\n#Enable=true\n",
    "/etc/pam.d/system-auth": "# Generated by authselect\n# Do not modify this file manually, use authselect instead. Any user changes will be lost.\n# You can stop authselect from managing your configuration by calling 'authselect opt-out'.\n# See authselect(8) for more details.\n\nauth        required                                     pam_env.so\nauth        required                                     pam_faildelay.so delay=2000000\nauth        required                                     pam_faillock.so preauth silent\nauth        sufficient                                   pam_unix.so nullok\nauth        required                                     pam_faillock.so authfail\nauth        required                                     pam_deny.so\n\naccount     required                                     pam_faillock.so\naccount     required                                     pam_unix.so\n\npassword    requisite                                    pam_pwquality.so\npassword    sufficient                                   pam_unix.so yescrypt shadow nullok use_authtok\npassword    required                                     pam_deny.so\n\nsession     optional                                     pam_keyinit.so revoke\nsession     required                                     pam_limits.so\n-session    optional                                     pam_systemd.so\nsession     required                                     pam_unix.so\n",
    "/etc/security/pwquality.conf": PWQUALITY_CONF,
    "/etc/security/faillock.conf": FAILLOCK_CONF,
}
fedora_advisories = "Name                   Type     Severity                   Package                   Issued\nFEDORA-2024-4a8e0c77b1 security Important firefox-132.0.2-1.fc41.x86_64 2024-11-08 01:52:13\nFEDORA-2024-9f21c3d5e0 security Moderate  openssl-libs-1:3.2.2-9.fc41.x86_64 2024-11-19 02:11:40\n"

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
        "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\nitadmin:x:1001:1001:IT Admin,,,:/home/itadmin:/bin/bash\n",
        **ubuntu_dfe,
        "/var/log/apt/history.log": "\nStart-Date: 2024-11-20  09:01:12\nCommandline: /usr/bin/unattended-upgrade\nUpgrade: libc6:amd64 (2.39-0ubuntu8.2, 2.39-0ubuntu8.3)\nEnd-Date: 2024-11-20  09:01:40\n\nStart-Date: 2024-11-22  14:00:01\nCommandline: apt install vim\nInstall: vim:amd64 (2:9.1.0016-1ubuntu7.3)\nEnd-Date: 2024-11-22  14:00:09\n",
    },
    "Ubuntu 24.04 laptop: root on LVM on LUKS, GNOME, ufw, unattended-upgrades, no ClamAV; 2023 firmware, usb-storage and uas refused in modprobe.d, Steam from Flathub beside the approved apps, itadmin the only sudoer, pwquality minlen 12, faillock deny 5. Formats: Ubuntu 24.04 (apt 2.7, GNOME 46, libpam-pwquality 1.4.5, pam 1.5.3).",
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
        "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000:Bob:/home/bob:/bin/bash\nolduser:x:1001:1001:Old User:/home/olduser:/bin/bash\n",
        **debian_dfe,
        "/home/bob/.config/kscreenlockerrc": "[Daemon]\nAutolock=true\nLockGrace=5\nTimeout=30\n",
        "/var/log/apt/history.log": "Start-Date: 2024-10-01  08:00:00\nCommandline: apt-get upgrade -y\nUpgrade: curl:amd64 (7.88.1-10+deb12u6, 7.88.1-10+deb12u7)\nEnd-Date: 2024-10-01  08:00:31\n",
    },
    "Debian 12 desktop: unencrypted root, KDE locking after 30 min, security updates waiting since October, nftables accepting everything, ClamAV current; 2017 OptiPlex, usb-storage blacklisted but uas not (and loaded), qBittorrent installed, bob signed in and a sudoer (olduser locked), SDDM signs bob in automatically, Debian's default PAM (pam_unix minlen 6, no lockout). Formats: Debian 12 (apt 2.6, KDE Plasma 5.27, SDDM 0.19, pam 1.5.2).",
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
            fedora_advisories,
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
        (["systemctl", "is-active", "usbguard"], "active\n"),
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
        **fedora_dfe,
    },
    "Fedora 41 Workstation: LUKS btrfs root, GNOME idle-delay 0 (never), dnf-automatic off and a kernel waiting for reboot, firewalld running, no ClamAV; dnf5 advisories with Issued dates (firefox Important, 17 days), 2024 Framework laptop, USBGuard blocking, Tor Browser from Flathub, carol in wheel, pwquality at its default 8, faillock's default 3. Formats: Fedora 41 (dnf5 5.2 advisory list columns, authselect 1.5 local with-faillock, GDM 47, USBGuard 1.1).",
)

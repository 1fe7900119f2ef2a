#!/bin/sh
# Install or upgrade Schoolgate on this machine (Debian 12/13, Ubuntu 24.04,
# Raspberry Pi OS). Run it as root from a checkout of Schoolgate:
#
#   deploy/install.sh [--python PATH] [--wheels DIR] [--no-apt] [--start] [--root DIR]
#
# Safe to run again: it upgrades the code, keeps the school's configuration and
# data, runs the store migrations and restarts services that were running.
#
#   /opt/schoolgate/venv       the code (a link to venvs/<time>: the previous one stays)
#   /etc/schoolgate            configuration: schoolgate.env, school.yaml, lists, secrets/
#   /var/lib/schoolgate        data: store, CA, list index, logs, backups
#   /etc/systemd/system        schoolgate, schoolgate-web, schoolgate-lists.timer,
#                              schoolgate-illegal-feeds.timer, schoolgate-backup.timer
#   /usr/local/bin/schoolgate  the command, with this installation's settings
#
# Options:
#   --python PATH  the Python (3.12 or newer) to build the virtual environment with
#   --wheels DIR   install from the wheels in DIR only (no index): an offline install
#   --no-apt       never apt-get install anything (python3, python3-venv, logrotate)
#   --start        start (or restart) the gateway and the web app at the end
#   --root DIR     install into the Debian root DIR (an image or chroot being built):
#                  the source and wheels are copied in and this script runs there
#                  under chroot; /proc and the network must already work inside.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=""
WHEELS=""
USE_APT=1
START=0
ROOT=""
ARGS_FOR_ROOT=""

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }
say() { printf '%s\n' "schoolgate install: $*"; }
die() { printf '%s\n' "schoolgate install: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --python) PYTHON=${2:?--python needs a path}; ARGS_FOR_ROOT="$ARGS_FOR_ROOT --python $2"; shift 2 ;;
    --wheels) WHEELS=${2:?--wheels needs a folder}; shift 2 ;;
    --no-apt) USE_APT=0; ARGS_FOR_ROOT="$ARGS_FOR_ROOT --no-apt"; shift ;;
    --start) START=1; ARGS_FOR_ROOT="$ARGS_FOR_ROOT --start"; shift ;;
    --root) ROOT=${2:?--root needs a folder}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "run me as root (sudo $0)"

# --- into another root: copy ourselves in and run there ----------------------
if [ -n "$ROOT" ]; then
  [ -x "$ROOT/bin/sh" ] || die "$ROOT does not look like a Debian root (no /bin/sh)"
  stage=/var/tmp/schoolgate-install
  rm -rf "$ROOT$stage"
  mkdir -p "$ROOT$stage/src"
  # The checkout without its local state (virtual environment, var/, git).
  tar -C "$SRC" --exclude=./.venv --exclude=./var --exclude=./.git --exclude=./build \
      --exclude='*.egg-info' --exclude='*.so' --exclude=__pycache__ --exclude=.mypy_cache \
      --exclude=.ruff_cache --exclude=.pytest_cache --exclude=.hypothesis -cf - . \
    | tar -C "$ROOT$stage/src" -xf -
  if [ -n "$WHEELS" ]; then
    mkdir -p "$ROOT$stage/wheels"
    cp "$WHEELS"/*.whl "$ROOT$stage/wheels/"
    ARGS_FOR_ROOT="$ARGS_FOR_ROOT --wheels $stage/wheels"
  fi
  status=0
  # A clean environment: nothing of this machine's (pip settings, say) leaks in.
  # ARGS_FOR_ROOT holds separate words on purpose.
  # shellcheck disable=SC2086
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    chroot "$ROOT" /bin/sh "$stage/src/deploy/install.sh" $ARGS_FOR_ROOT || status=$?
  rm -rf "$ROOT$stage"
  exit "$status"
fi

OPT=/opt/schoolgate
ETC=/etc/schoolgate
VAR=/var/lib/schoolgate
USER_NAME=schoolgate
have() { command -v "$1" >/dev/null 2>&1; }
systemd_running() { [ -d /run/systemd/system ]; }

apt_install() {
  [ "$USE_APT" = 1 ] && have apt-get || return 1
  say "installing $* (apt-get)"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- 1. Python 3.12 or newer, with venv ---------------------------------------
py_headers() {  # a C compiler and this Python's headers, to build the C part
  have gcc && "$1" -c 'import os, sysconfig, sys
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null
}

py_ok() {  # usable: 3.12+, and able to make a venv with pip in it
  "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}
py_new_enough() {
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}
find_python() {
  for c in python3.13 python3.12 python3; do
    p=$(command -v "$c" 2>/dev/null) || continue
    if py_new_enough "$p"; then echo "$p"; return 0; fi
  done
  return 1
}
no_python() {
  have_py=$(python3 --version 2>/dev/null || echo "no python3")
  cat >&2 <<EOF
schoolgate install: Schoolgate needs Python 3.12 or newer; this system has $have_py.
Debian 12 and Raspberry Pi OS 12 (bookworm) ship Python 3.11 only. Either:
  - upgrade the system to Debian 13 (trixie) / Raspberry Pi OS 13, or use
    Ubuntu 24.04, which ship Python 3.12 or newer, then run this script again; or
  - put a separate Python in /opt/schoolgate/python with uv (it downloads a
    prebuilt CPython from the python-build-standalone project):
      apt-get install pipx
      pipx run uv python install --install-dir /opt/schoolgate/python 3.13
      $0 --python "\$(ls -d /opt/schoolgate/python/cpython-3.13*/bin/python3.13 | tail -n 1)"
  - or build one with pyenv (PYENV_ROOT=/opt/schoolgate/pyenv pyenv install 3.13)
    and pass its bin/python3.13 with --python.
EOF
  exit 1
}

if [ -n "$PYTHON" ]; then
  py_new_enough "$PYTHON" || die "$PYTHON is not Python 3.12 or newer"
else
  PYTHON=$(find_python) || {
    # Debian 13 and Ubuntu 24.04 have a new enough python3 in their archive.
    if [ "$USE_APT" = 1 ] && have apt-get && have apt-cache; then
      [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
      cand=$(apt-cache policy python3 | awk '/Candidate:/ {print $2}')
      case "$cand" in
        3.1[2-9]*|3.[2-9][0-9]*) apt_install python3 python3-venv ;;
        *) no_python ;;
      esac
      PYTHON=$(find_python) || no_python
    else
      no_python
    fi
  }
fi
ver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if ! py_ok "$PYTHON"; then
  # Debian splits venv/ensurepip into python3.X-venv.
  apt_install "python$ver-venv" || true
  py_ok "$PYTHON" || die "$PYTHON cannot make a virtual environment: install python$ver-venv"
fi
say "using $PYTHON ($("$PYTHON" --version 2>&1))"
# Built from source, the content scan's piece memory is compiled C (proxy_addons/core/content/_piece_memo.c):
# it needs a compiler and Python's headers. Without them it installs and runs in Python, slower;
# `schoolgate doctor` says which.
if [ -z "$WHEELS" ] && ! py_headers "$PYTHON"; then
  apt_install gcc libc6-dev "python$ver-dev" \
    || say "no C compiler or Python headers: the content scan will run in Python (slower)"
fi
have logrotate || apt_install logrotate || say "logrotate is not installed: logs under $VAR/log won't rotate"

# --- 2. the system user -------------------------------------------------------
if ! getent group "$USER_NAME" >/dev/null; then
  groupadd --system "$USER_NAME"
fi
if ! getent passwd "$USER_NAME" >/dev/null; then
  nologin=$(command -v nologin || echo /usr/sbin/nologin)
  useradd --system --gid "$USER_NAME" --home-dir "$VAR" --no-create-home \
    --shell "$nologin" --comment "Schoolgate gateway" "$USER_NAME"
  say "created the system user $USER_NAME"
fi

# --- 3. folders, owners and modes ---------------------------------------------
install -d -m 0755 -o root -g root "$OPT" "$OPT/venvs" "$OPT/share"
install -d -m 0750 -o root -g "$USER_NAME" "$ETC" "$ETC/secrets" "$ETC/lists"
install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$VAR" "$VAR/index" "$VAR/log" \
  "$VAR/run" "$VAR/backups" "$VAR/lists" "$VAR/illegal"
install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$VAR/ca"

# --- 4. the code: a new virtual environment, swapped in when it works ---------
stamp=$(date -u +%Y%m%d%H%M%S)
new="$OPT/venvs/$stamp"
say "building $new"
trap 'rm -rf "$new"' EXIT  # a half-built one goes; the one in use stays
"$PYTHON" -m venv "$new"
if [ -n "$WHEELS" ]; then
  "$new/bin/pip" install -q --no-index --find-links "$WHEELS" schoolgate
else
  "$new/bin/pip" install -q --upgrade pip
  "$new/bin/pip" install -q "$SRC"
fi
"$new/bin/schoolgate" --help >/dev/null || die "the new installation in $new does not run"
"$new/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' \
  || die "the new installation in $new does not have Python 3.12 or newer"
trap - EXIT
ln -sfn "venvs/$stamp" "$OPT/venv.new"
mv -T "$OPT/venv.new" "$OPT/venv"
# Keep the new one and the one before it (to go back: point venv at it).
set -- "$OPT"/venvs/*  # oldest first: the names are times
while [ $# -gt 2 ]; do rm -rf "$1"; shift; done
say "$(cat "$OPT/venv/lib"/python3*/site-packages/schoolgate-*.dist-info/METADATA 2>/dev/null \
  | awk '/^Version:/ {print "schoolgate " $2}') in $OPT/venv -> venvs/$stamp"

# Reference copies of what ships with this version (overwritten on upgrade):
# the example configuration to compare with, firewall rules, docs.
rm -rf "$OPT/share/examples" "$OPT/share/deploy" "$OPT/share/docs"
cp -R "$SRC/policies" "$OPT/share/examples"
cp -R "$SRC/deploy" "$OPT/share/deploy"
cp -R "$SRC/docs" "$OPT/share/docs"
chmod -R u=rwX,go=rX "$OPT/share"

# --- 5. configuration: copied only where absent -------------------------------
copy_absent() {  # copy_absent FROM TO: files of FROM missing in TO (never overwrite)
  (cd "$1" && find . -path ./lists/ut1 -prune -o -type d -print) | while read -r d; do
    [ -d "$2/$d" ] || install -d -m 0750 -o root -g "$USER_NAME" "$2/$d"
  done
  (cd "$1" && find . -path ./lists/ut1 -prune -o -type f -print) | while read -r f; do
    if [ ! -e "$2/$f" ] && [ ! -L "$2/$f" ]; then
      install -m 0640 -o root -g "$USER_NAME" "$1/$f" "$2/$f"
    fi
  done
}
[ -e "$ETC/schoolgate.env" ] || install -m 0640 -o root -g "$USER_NAME" \
  "$SRC/deploy/etc/schoolgate.env" "$ETC/schoolgate.env"
[ -e "$ETC/list-updates.yaml" ] || install -m 0640 -o root -g "$USER_NAME" \
  "$SRC/deploy/etc/list-updates.yaml" "$ETC/list-updates.yaml"
# The example policy (school.yaml) and everything it refers to: lists, phrases,
# check suites, the OS end-of-life table.
copy_absent "$SRC/policies" "$ETC"
# The UT1 lists are data the list updater replaces: they live under /var/lib,
# seeded with the shipped selection, and the policy reaches them by a link.
if [ ! -e "$VAR/lists/ut1" ]; then
  cp -R "$SRC/policies/lists/ut1" "$VAR/lists/ut1"
fi
[ -e "$ETC/lists/ut1" ] || [ -L "$ETC/lists/ut1" ] || ln -s "$VAR/lists/ut1" "$ETC/lists/ut1"

# Owners and modes, every run: the configuration is root's and readable by the
# service's group only; the data is the service's; nothing is world-readable.
chown -R -h root:"$USER_NAME" "$ETC"
chmod -R g-w,o-rwx "$ETC"
chown -R -h "$USER_NAME":"$USER_NAME" "$VAR"
chmod -R u+rwX,g-w,o-rwx "$VAR"   # the service may replace what it owns (the list updater does)
chmod 0700 "$VAR/ca" "$VAR/backups"
[ ! -e "$VAR/ca/mitmproxy-ca.pem" ] || chmod 0600 "$VAR/ca/mitmproxy-ca.pem"
[ ! -d "$VAR/tls" ] || chmod 0700 "$VAR/tls"

# --- 6. the command, systemd units, log rotation ------------------------------
cat > /usr/local/bin/schoolgate <<EOF
#!/bin/sh
# Installed by Schoolgate's deploy/install.sh: runs Schoolgate with this
# installation's settings ($ETC/schoolgate.env). Run by root, commands run as
# the $USER_NAME user, so that what they write stays the service's; doctor and
# restore run as root (doctor only reads; restore puts back $ETC too).
umask 027  # as the units' UMask: nothing it writes is world-readable
if [ -r $ETC/schoolgate.env ]; then set -a; . $ETC/schoolgate.env; set +a; fi
if [ "\$(id -u)" = 0 ]; then
  case "\${1:-}" in
    doctor|restore) ;;
    tunnel) exec setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups \\
      --inh-caps=+net_admin --ambient-caps=+net_admin -- $OPT/venv/bin/schoolgate "\$@" ;;
    *) exec runuser -u $USER_NAME -- $OPT/venv/bin/schoolgate "\$@" ;;
  esac
fi
exec $OPT/venv/bin/schoolgate "\$@"
EOF
chmod 0755 /usr/local/bin/schoolgate

install -d -m 0755 /etc/systemd/system
added=""  # units new to this machine: enabled below (an upgrade leaves the admin's choices)
for unit in "$SRC"/deploy/systemd/*.service "$SRC"/deploy/systemd/*.timer; do
  name=$(basename "$unit")
  [ -e "/etc/systemd/system/$name" ] || added="$added $name"
  install -m 0644 "$unit" /etc/systemd/system/
done
if [ -d /etc/logrotate.d ] || have logrotate; then
  install -d -m 0755 /etc/logrotate.d
  install -m 0644 "$SRC/deploy/logrotate/schoolgate" /etc/logrotate.d/schoolgate
fi

# --- 7. the store: migrate to this version's schema ---------------------------
units="schoolgate.service schoolgate-web.service"
timers="schoolgate-lists.timer schoolgate-illegal-feeds.timer schoolgate-backup.timer"
was_active=""
if systemd_running; then
  systemctl daemon-reload
  # An upgrade: the services stop while the store is migrated, and start again
  # on the new code below.
  for unit in $units; do
    if systemctl is-active --quiet "$unit"; then was_active="$was_active $unit"; fi
  done
  # shellcheck disable=SC2086
  [ -z "$was_active" ] || systemctl stop $was_active
fi
say "migrating the store"
/usr/local/bin/schoolgate store upgrade
# The policy and its lists, as this version reads them.
if out=$(/usr/local/bin/schoolgate policy check "$ETC/school.yaml" 2>&1); then
  say "$(printf '%s\n' "$out" | tail -n 1)"
else
  printf '%s\n' "$out" >&2
  say "WARNING: the policy above has problems: the gateway will not start until they are fixed"
fi

# The web app's HTTPS certificate, from the school's CA (docs/install.md): issued
# once the CA exists, and again when fewer than 30 days are left. Not when the
# school gave its own (SCHOOLGATE_WEB_CERT in schoolgate.env).
if [ -e "$VAR/ca/mitmproxy-ca.pem" ] && ! grep -q '^SCHOOLGATE_WEB_CERT=.' "$ETC/schoolgate.env"; then
  /usr/local/bin/schoolgate ca server-cert --if-due --policy "$ETC/school.yaml" ||
    say "WARNING: no HTTPS certificate for the web app: run 'schoolgate ca server-cert'"
fi

# --- 8. services --------------------------------------------------------------
# Enabled (at boot) when first installed: the gateway, the web app and the timers
# (oneshot services like schoolgate-lists.service are started by their timers).
to_enable=""
for name in $added; do
  case " $units $timers " in *" $name "*) to_enable="$to_enable $name" ;; esac
done
if [ -n "$to_enable" ] && have systemctl; then
  # shellcheck disable=SC2086
  systemctl enable $to_enable >/dev/null 2>&1 || say "could not enable$to_enable (no systemd here?)"
fi
if systemd_running; then
  systemctl daemon-reload
  for name in $to_enable; do
    case "$name" in *.timer) systemctl start "$name" ;; esac
  done
  if [ "$START" = 1 ]; then
    # shellcheck disable=SC2086
    systemctl restart $units
  elif [ -n "$was_active" ]; then
    # shellcheck disable=SC2086
    systemctl start $was_active
  fi
else
  say "systemd is not running here (a chroot or container): units installed, not started"
fi

# School devices' tunnels (docs/offsite.md): schoolgate-tunnel is enabled and
# (re)started only when the policy has devices.tunnel, with WireGuard's tools
# (wireguard-go too where the kernel has no WireGuard); otherwise it is left off.
if "$OPT/venv/bin/python" -c 'import sys; from pathlib import Path
from proxy_addons.core.policy.load import load_policy
sys.exit(load_policy(Path(sys.argv[1])).devices.tunnel is None)' "$ETC/school.yaml" 2>/dev/null; then
  have wg || apt_install wireguard-tools || say "WARNING: install wireguard-tools for the tunnels"
  if ! have wireguard-go && ! modprobe -q wireguard 2>/dev/null; then
    apt_install wireguard-go || say "WARNING: no WireGuard in this kernel: install wireguard-go"
  fi
  have systemctl && { systemctl enable schoolgate-tunnel.service >/dev/null 2>&1 ||
    say "could not enable schoolgate-tunnel"; }
  if systemd_running; then systemctl restart schoolgate-tunnel.service; fi
  say "devices.tunnel is set: schoolgate-tunnel is enabled (docs/offsite.md)"
fi

say "done. Next (docs/install.md):"
cat <<EOF
  1. edit $ETC/school.yaml (networks, profiles) and $ETC/schoolgate.env
  2. schoolgate ca init --school "Your School Name"     (docs/ca.md; it also issues
     the web app's HTTPS certificate: add --name for each name staff will type)
  3. systemctl start schoolgate schoolgate-web
  4. schoolgate doctor
EOF

#!/bin/sh
# Obtains LPRng for the LPD tests without installing it: the lprng package
# conflicts with cups-bsd (apt would remove CUPS), so its .deb is unpacked
# into a folder instead (see shared/PEERS.md). Idempotent; run as root.
#
#   sh scripts/lprng.sh            # unpack into /opt/printroute-test/lprng
#
# Afterwards:
#   $ROOT/root/usr/bin/{lpr,lpq,lprm}  clients, used as -P queue@127.0.0.1%PORT
#   $ROOT/root/usr/sbin/lpd            server, run as lpd -F -p PORT (queue "fwd")
#   $ROOT/etc/lprng/lpd.conf           LPRng's config (with printcap, lpd.perms)
#
# LPRng reads its config only from /etc/lprng/lpd.conf (LPD_CONF is ignored
# unless that file allows it). This script never writes there: the tests run
# every LPRng program in a mount namespace of its own (`unshare -m`) in which
# $ROOT/etc/lprng is laid over /etc/lprng, for that process alone (see
# tests/lpd.rs). Whatever /etc/lprng holds on this machine stays as it is.
set -eu

ROOT=/opt/printroute-test/lprng
# Earlier versions of this script wrote this file, marked with MARK; such a
# file is removed (it is the project's own). Any other file there is left alone.
OLD_CONF=/etc/lprng/lpd.conf
MARK="# written by printroute scripts/lprng.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "lprng.sh: run as root (it writes $ROOT)" >&2
    exit 1
fi

if [ ! -x "$ROOT/root/usr/sbin/lpd" ] || [ ! -x "$ROOT/root/usr/bin/lpr" ]; then
    echo "lprng.sh: downloading the lprng package (apt-get download) and unpacking it into $ROOT"
    tmp=$(mktemp -d)
    # apt's download user must be able to write here.
    chmod 0777 "$tmp"
    if ! (cd "$tmp" && apt-get download -q lprng); then
        apt-get update -q
        (cd "$tmp" && apt-get download -q lprng)
    fi
    mkdir -p "$ROOT/root"
    dpkg-deb -x "$tmp"/lprng_*.deb "$ROOT/root"
    rm -rf "$tmp"
fi

if [ -f "$OLD_CONF" ] && head -n 1 "$OLD_CONF" | grep -qxF "$MARK"; then
    rm -f "$OLD_CONF"
    # The folder too, when nothing else is in it (the old script made it).
    rmdir /etc/lprng 2>/dev/null || true
    echo "lprng.sh: removed $OLD_CONF, written by an earlier version of this script"
fi

CONF_DIR=$ROOT/etc/lprng
# Where earlier versions kept the printcap and perms.
rm -f "$ROOT/etc/printcap" "$ROOT/etc/lpd.perms"
mkdir -p "$CONF_DIR" "$ROOT/run" "$ROOT/spool/fwd" "$ROOT/ns"
# lpd drops to user daemon: its lock and spool folders must be daemon's.
chown -R daemon "$ROOT/run" "$ROOT/spool"

cat > "$CONF_DIR/printcap" <<PCAP
# Queue of the downstream LPD printer of the forwarding test: jobs are held
# (ah), so the test can read the control and data files in the spool folder.
fwd:sd=$ROOT/spool/%P:ah:lp=/dev/null:mx=0
PCAP
echo "DEFAULT ACCEPT" > "$CONF_DIR/lpd.perms"

cat > "$CONF_DIR/lpd.conf.tmp" <<LPDCONF
# Written by printroute scripts/lprng.sh; seen as /etc/lprng/lpd.conf only
# inside the tests' mount namespaces.
# Clients send to the host:port they are given, not to a local lpd.
force_localhost@
printcap_path=$CONF_DIR/printcap
lpd_printcap_path=$CONF_DIR/printcap
perms_path=$CONF_DIR/lpd.perms
lockfile=$ROOT/run/lpd
unix_socket_path=off
# One attempt: a refused job must fail the client, not wait for retries.
lpr_send_try=1
send_try=1
connect_timeout=10
LPDCONF
mv "$CONF_DIR/lpd.conf.tmp" "$CONF_DIR/lpd.conf"

echo "lprng.sh: LPRng ready in $ROOT (config in $CONF_DIR, never in /etc/lprng)"

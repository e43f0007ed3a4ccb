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
#   /etc/lprng/lpd.conf                LPRng reads its config only from there
#                                      (LPD_CONF is ignored unless that file
#                                      allows it), so this script writes it.
set -eu

ROOT=/opt/printroute-test/lprng
CONF=/etc/lprng/lpd.conf
MARK="# written by printroute scripts/lprng.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "lprng.sh: run as root (it writes $CONF and $ROOT)" >&2
    exit 1
fi

if [ ! -x "$ROOT/root/usr/sbin/lpd" ] || [ ! -x "$ROOT/root/usr/bin/lpr" ]; then
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

mkdir -p "$ROOT/etc" "$ROOT/run" "$ROOT/spool/fwd"
# lpd drops to user daemon: its lock and spool folders must be daemon's.
chown -R daemon "$ROOT/run" "$ROOT/spool"

cat > "$ROOT/etc/printcap" <<PCAP
# Queue of the downstream LPD printer of the forwarding test: jobs are held
# (ah), so the test can read the control and data files in the spool folder.
fwd:sd=$ROOT/spool/%P:ah:lp=/dev/null:mx=0
PCAP
echo "DEFAULT ACCEPT" > "$ROOT/etc/lpd.perms"

if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    echo "lprng.sh: $CONF exists and was not written by this script; not touching it" >&2
    exit 1
fi
mkdir -p "$(dirname "$CONF")"
cat > "$CONF" <<LPDCONF
$MARK
# Clients send to the host:port they are given, not to a local lpd.
force_localhost@
printcap_path=$ROOT/etc/printcap
lpd_printcap_path=$ROOT/etc/printcap
perms_path=$ROOT/etc/lpd.perms
lockfile=$ROOT/run/lpd
unix_socket_path=off
# One attempt: a refused job must fail the client, not wait for retries.
lpr_send_try=1
send_try=1
connect_timeout=10
LPDCONF

echo "LPRng ready in $ROOT"

#!/usr/bin/env bash
# End-to-end RAW and LPD figures, with a peer measured in the same run:
#  1. 10,000 jobs of 4 KiB from 8 clients of two tenants (distinct loopback
#     sources), over RAW and over LPD -> jobs/s, p50/p99 time to acknowledgement
#  2. one 1 GiB job over RAW and over LPD -> MiB/s, against socat writing the
#     same stream into a file and syncing it
# and the daemon's peak RSS for each. Loopback only; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-10000}
# SPOOL_SYNC=filesystem measures one syncfs per commit group (global.spool-sync).
BIG=${BIG:-1GiB}
work=$(mktemp -d /var/tmp/printroute-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet --bins --examples
# PRINTROUTE_BIN measures another build of the daemon (scripts/bench-crypt.sh).
bin=${PRINTROUTE_BIN:-target/release/printroute}
load=target/release/examples/loadgen

cat > "$work/bench.toml" <<TOML
[global]
data-dir = "$work/data"
spool-sync = "${SPOOL_SYNC:-files}"
[global.limits]
max-job-size = "2 GiB"
spool-quota = "100 GiB"
max-connections = 1024
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:19100"]
[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:19515"]
[tenant.a]
ranges = ["127.0.1.0/24"]
device.sink = { uri = "socket://127.0.1.250:19101" }
workflow.direct = { steps = [{ step = "forward", devices = ["sink"] }] }
input = [{ listener = "raw", workflow = "direct" }, { listener = "lpd", workflow = "direct" }]
[tenant.b]
ranges = ["127.0.2.0/24"]
device.sink = { uri = "socket://127.0.2.250:19102" }
workflow.direct = { steps = [{ step = "forward", devices = ["sink"] }] }
input = [{ listener = "raw", workflow = "direct" }, { listener = "lpd", workflow = "direct" }]
TOML

$load --sink 127.0.1.250:19101 >/dev/null &
$load --sink 127.0.2.250:19102 >/dev/null &

start_daemon() {
    rm -rf "$work/data"
    $bin serve --announce --config "$work/bench.toml" > "$work/daemon.out" 2> "$work/daemon.log" &
    daemon=$!
    for _ in $(seq 100); do grep -q '^ready' "$work/daemon.out" 2>/dev/null && return; sleep 0.1; done
    echo "daemon did not start"; cat "$work/daemon.log"; exit 1
}
peak_rss() {
    awk '/VmHWM/ {printf "%s MiB", $2/1024}' /proc/$daemon/status
    # user + system CPU time of the daemon so far (fields 14 and 15, in clock ticks)
    awk -v hz="$(getconf CLK_TCK)" '{printf ", CPU %.2f s\n", ($14 + $15) / hz}' /proc/$daemon/stat
}
stop_daemon() { kill -TERM $daemon; wait $daemon || true; }

echo "== $JOBS RAW jobs of 4 KiB, 8 clients (4 from tenant a, 4 from tenant b)"
start_daemon
$load --addr 127.0.0.1:19100 --jobs $((JOBS / 2)) --size 4KiB --clients 4 --sources 127.0.1.10 --max-seconds 120 > "$work/a.txt" &
la=$!
$load --addr 127.0.0.1:19100 --jobs $((JOBS / 2)) --size 4KiB --clients 4 --sources 127.0.2.10 --max-seconds 120 > "$work/b.txt"
wait $la
echo "tenant a: $(cat "$work/a.txt")"
echo "tenant b: $(cat "$work/b.txt")"
echo "daemon peak RSS: $(peak_rss)"
stop_daemon

if [[ -z ${RAW_ONLY:-} ]]; then
echo "== $JOBS LPD jobs of 4 KiB, 8 clients (4 from tenant a, 4 from tenant b)"
start_daemon
$load --protocol lpd --addr 127.0.0.1:19515 --jobs $((JOBS / 2)) --size 4KiB --clients 4 --sources 127.0.1.10 --max-seconds 120 > "$work/a.txt" &
la=$!
$load --protocol lpd --addr 127.0.0.1:19515 --jobs $((JOBS / 2)) --size 4KiB --clients 4 --sources 127.0.2.10 --max-seconds 120 > "$work/b.txt"
wait $la
echo "tenant a: $(cat "$work/a.txt")"
echo "tenant b: $(cat "$work/b.txt")"
echo "daemon peak RSS: $(peak_rss)"
stop_daemon
fi

[[ ${SMALL_ONLY:-} ]] && exit 0
echo "== one $BIG RAW job"
start_daemon
$load --addr 127.0.0.1:19100 --jobs 1 --size "$BIG" --clients 1 --sources 127.0.1.10 --max-seconds 300
echo "daemon peak RSS: $(peak_rss)"
stop_daemon

if [[ -z ${RAW_ONLY:-} ]]; then
echo "== one $BIG LPD job"
start_daemon
$load --protocol lpd --addr 127.0.0.1:19515 --jobs 1 --size "$BIG" --clients 1 --sources 127.0.1.10 --max-seconds 300
echo "daemon peak RSS: $(peak_rss)"
stop_daemon
fi

echo "== peer: socat writing the same stream into a file, then fsync"
# Both directions and a long -t: with -u, socat closes about 1 s after the
# sender's end whether or not its sync is done; this way it closes after it.
socat -t 300 TCP-LISTEN:19103,bind=127.0.0.1,reuseaddr SYSTEM:"cat > $work/socat.out && sync $work/socat.out" &
sleep 0.3
$load --addr 127.0.0.1:19103 --jobs 1 --size "$BIG" --clients 1 --sources 127.0.0.1 --max-seconds 300

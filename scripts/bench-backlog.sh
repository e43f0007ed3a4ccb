#!/usr/bin/env bash
# A device that is down with a large backlog: JOBS (default 100,000) RAW
# jobs of 4 KiB queued for one device that refuses connections, then the
# device comes up. Reports the daemon's RSS before and after queueing (the
# dispatcher keeps DEVICE_QUEUE_WINDOW jobs per device in memory and parks
# the rest), and the time from the device coming up until every job is
# delivered. Loopback only; every phase is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-100000}
LIMIT=${LIMIT:-1800}
work=$(mktemp -d /var/tmp/printroute-backlog.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet --bins --examples
bin=target/release/printroute
load=target/release/examples/loadgen

cat > "$work/bench.toml" <<TOML
[global]
data-dir = "$work/data"
control-socket = "$work/control.sock"
[global.limits]
spool-quota = "100 GiB"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:19110"]
[tenant.a]
ranges = ["127.0.1.0/24"]
device.sink = { uri = "socket://127.0.1.250:19111" }
workflow.direct = { steps = [{ step = "forward", devices = ["sink"] }] }
input = [{ listener = "raw", workflow = "direct" }]
TOML

$bin serve --config "$work/bench.toml" > "$work/daemon.out" 2> "$work/daemon.log" &
daemon=$!
for _ in $(seq 100); do
    [[ -S $work/control.sock ]] && break
    sleep 0.1
done
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$daemon/status; }
rss0=$(rss)
echo "daemon RSS at start: $rss0 MiB"
$load --addr 127.0.0.1:19110 --jobs "$JOBS" --size 4KiB --clients 8 --sources 127.0.1.10 --max-seconds "$LIMIT"
sleep 2
rss1=$(rss)
echo "daemon RSS with $JOBS jobs queued for the down device: $rss1 MiB (added $(awk -v a="$rss1" -v b="$rss0" 'BEGIN {printf "%.1f", a-b}') MiB)"
unfinished() {
    $bin status --json --socket "$work/control.sock" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(n for t in d["tenants"] for s,n in t["jobs"].items() if s in ("pending","processing")))'
}
echo "unfinished before the device comes up: $(unfinished)"
$load --sink 127.0.1.250:19111 >/dev/null &
t0=$(date +%s.%N)
for _ in $(seq "$LIMIT"); do
    left=$(unfinished)
    [[ $left -eq 0 ]] && break
    sleep 1
done
t1=$(date +%s.%N)
echo "all $JOBS delivered $(awk -v a="$t1" -v b="$t0" 'BEGIN {printf "%.1f", a-b}') s after the device came up ($(awk -v a="$t1" -v b="$t0" -v n="$JOBS" 'BEGIN {printf "%.0f", n/(a-b)}') jobs/s); unfinished now: $left"
echo "daemon RSS after delivery: $(rss) MiB; peak $(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$daemon/status) MiB"
kill -TERM $daemon
wait $daemon || true

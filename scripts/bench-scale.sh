#!/usr/bin/env bash
# Scale figures: a config of TENANTS tenants and RANGES ranges (examples/gen_tenants.rs,
# plus tenant `lo` owning 127.0.0.0/8): `check` time, start-up time to READY
# (first start on an empty data dir; second start on the store the first
# left), RELOADS reloads, each after one more tenant is appended to the file,
# timed from SIGHUP to the "config reloaded" log line (and as the daemon logs
# it), RSS and peak RSS, store size. The daemon runs with the unit's
# MALLOC_ARENA_MAX=2 (systemd/printroute.service). Across the
# reloads, examples/conn_probe.rs connects from an address of tenant `lo` again
# and again (bounded: PROBE_MAX connections, PROBE_SECONDS seconds) and
# reports refused or reset connections, which must be 0.
# Run: CARGO_TARGET_DIR=... [TENANTS=..] [RANGES=..] [RELOADS=..] scripts/bench-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TENANTS=${TENANTS:-10000}
RANGES=${RANGES:-1000000}
RELOADS=${RELOADS:-3}
PROBE_MAX=${PROBE_MAX:-100000}
PROBE_SECONDS=${PROBE_SECONDS:-60}
target=${CARGO_TARGET_DIR:-target}
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
work=$(mktemp -d /var/tmp/printroute-scale.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet --bins --examples
bin=${PRINTROUTE_BIN:-$target/release/printroute} # another build to compare with
"$target/release/examples/gen_tenants" "$TENANTS" "$RANGES" "$work/data" --loopback > "$work/big.toml"
echo "config: $(du -h "$work/big.toml" | cut -f1), $TENANTS tenants (+ lo), $RANGES ranges"
for i in 1 2 3; do
    /usr/bin/time -f "check: %e s (CPU user %U s, sys %S s), peak RSS %M KiB" $bin check "$work/big.toml" > /dev/null
done

rss() { awk -v k="$1:" '$1 == k {printf "%.0f MiB", $2/1024}' /proc/$daemon/status; }
# CPU seconds the daemon used so far (user + system): on a shared machine
# steadier than wall time.
tick=$(getconf CLK_TCK)
cpu() { awk -v t="$tick" '{printf "%.2f", ($14 + $15) / t}' /proc/$daemon/stat; }
start() {
    local t0; t0=$(date +%s.%N)
    $bin serve --announce --config "$work/big.toml" > "$work/out" 2> "$work/log" &
    daemon=$!
    for _ in $(seq 1200); do grep -q '^ready' "$work/out" 2>/dev/null && break; sleep 0.02; done
    echo "$1: ready after $(echo "$(date +%s.%N) - $t0" | bc) s (CPU $(cpu) s), RSS $(rss VmRSS), peak $(rss VmHWM)"
}
stop() { kill -TERM $daemon; wait $daemon || true; }

start "first start (empty data dir)"
stop
echo "store: $(du -sh "$work/data/db" | cut -f1) on disk"
start "second start (on the first's store)"
raw=$(awk '$1 == "listening" && $2 == "raw" {print $4; exit}' "$work/out")
# A fresh source address each run: the ports of an earlier run's
# connections may still be in TIME_WAIT.
probe_from=127.$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 2))
"$target/release/examples/conn_probe" "$raw" "$probe_from" "$PROBE_MAX" "$PROBE_SECONDS" "$work/probe-stop" > "$work/probe" 2>&1 &
probe=$!
sleep 1
reload() { # $1: label
    printf '[tenant.added%d]\nranges = ["192.168.%d.0/24"]\n' "$2" "$2" >> "$work/big.toml"
    local before t0 c0 t own
    before=$(grep -c 'config reloaded' "$work/log" || true)
    c0=$(cpu)
    t0=$(date +%s.%N)
    kill -HUP $daemon
    for _ in $(seq 3000); do
        [ "$(grep -c 'config reloaded' "$work/log" || true)" -gt "$before" ] && break
        sleep 0.01
    done
    t=$(echo "$(date +%s.%N) - $t0" | bc)
    own=$(grep -a 'new snapshot in force' "$work/log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | grep -o 'load_ms=.*' || true)
    echo "$1: $t s ($own; daemon CPU $(echo "$(cpu) - $c0" | bc) s), RSS after $(rss VmRSS), peak so far $(rss VmHWM)"
}
for r in $(seq "$RELOADS"); do
    reload "reload $r (under the probe)" "$r"
    sleep 1
done
touch "$work/probe-stop"
wait $probe || true
echo "connections across the reloads (from $probe_from, tenant lo): $(cat "$work/probe")"
reload "reload $((RELOADS + 1)) (quiet)" $((RELOADS + 1))
stop

#!/usr/bin/env bash
# Scale figures: a config of TENANTS tenants and RANGES ranges (examples/gen_tenants.rs):
# `check` time, start-up time to READY (first start creates every tenant's
# collection; second start opens them), reload time, RSS, store size.
set -euo pipefail
cd "$(dirname "$0")/.."
TENANTS=${TENANTS:-10000}
RANGES=${RANGES:-1000000}
work=$(mktemp -d /var/tmp/printroute-scale.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet --bins --examples
bin=target/release/printroute
target/release/examples/gen_tenants "$TENANTS" "$RANGES" "$work/data" > "$work/big.toml"
echo "config: $(du -h "$work/big.toml" | cut -f1), $TENANTS tenants, $RANGES ranges"
/usr/bin/time -f "check: %e s, peak RSS %M KiB" $bin check "$work/big.toml" > /dev/null

start() {
    local t0; t0=$(date +%s.%N)
    $bin serve --config "$work/big.toml" > "$work/out" 2> "$work/log" &
    daemon=$!
    for _ in $(seq 1200); do grep -q '^ready' "$work/out" 2>/dev/null && break; sleep 0.05; done
    echo "$1: ready after $(echo "$(date +%s.%N) - $t0" | bc) s, RSS $(awk '/VmRSS/ {print $2/1024 " MiB"}' /proc/$daemon/status)"
}
stop() { kill -TERM $daemon; wait $daemon || true; }

start "first start (creates the collections)"
stop
echo "store: $(du -sh "$work/data/db" | cut -f1) on disk"
start "second start (opens them)"
t0=$(date +%s.%N)
kill -HUP $daemon
for _ in $(seq 1200); do grep -q 'config reloaded' "$work/log" && break; sleep 0.02; done
echo "reload: $(echo "$(date +%s.%N) - $t0" | bc) s, RSS after $(awk '/VmRSS/ {print $2/1024 " MiB"}' /proc/$daemon/status), peak $(awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$daemon/status)"
stop

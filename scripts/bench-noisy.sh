#!/usr/bin/env bash
# Noisy-neighbour figures, with tenant b alone as the baseline in the same run:
#  0. what the daemon takes: RAW jobs of 4 KiB from 8 clients (examples/loadgen)
#     -> tenant a's flood is set to 10x that (A_RATE overrides)
#  1. tenant b alone: RAW 4 KiB jobs at B_RATE/s for SECONDS_PER_PHASE s, open loop
#  2. the same b load while tenant a floods small jobs, holds slow senders,
#     sends malformed LPD/IPP requests and big jobs (examples/noisy)
# and b's p50/p99 time to acknowledgement in both, with the ratio.
# Loopback only; every load is bounded in count and time.
# The daemon runs with the default per-tenant limits; A_LIMITS overrides
# tenant a's (e.g. A_LIMITS='max-receives = 4'). B_OWN_PORT=1 sends b's jobs
# to a RAW listener a does not use, to tell the shared port's accept queue
# apart from the rest. SECONDS_PER_PHASE, B_RATE, BIG, BIG_COUNT set the
# loads; NOISY_ARGS passes more flags to examples/noisy.
# NFT=1 runs the whole benchmark in a network namespace of its own (as root)
# and, after measuring what the daemon takes, loads the ruleset that
# `printroute export nftables` writes for the bench config there: a's flood
# over its max-connection-rate (A_LIMITS, default 50/s) is then dropped in
# the kernel, before the shared accept queue.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${NFT:-} == 1 && -z ${NFT_NS:-} ]]; then
    ns=printroute-bench-noisy-$$
    ip netns add "$ns"
    trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
    ip netns exec "$ns" ip link set lo up
    status=0
    ip netns exec "$ns" env NFT_NS="$ns" "$0" "$@" || status=$?
    exit $status
fi
SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-30}
B_RATE=${B_RATE:-20}
BIG=${BIG:-200MiB}
BIG_COUNT=${BIG_COUNT:-6}
work=$(mktemp -d /var/tmp/printroute-noisy.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet --bins --examples
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/printroute
load=$target/release/examples/loadgen
noisy=$target/release/examples/noisy

cat > "$work/bench.toml" <<TOML
[global]
data-dir = "$work/data"
[global.limits]
max-job-size = "2 GiB"
spool-quota = "100 GiB"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:19200"]
[[listener]]
name = "raw-b"                          # only b sends here, with B_OWN_PORT=1: a port of its own
protocol = "raw"
bind = ["127.0.0.1:19210"]
[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:19515"]
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:19631"]
[tenant.a]
ranges = ["127.0.1.0/24"]
limits = { ${A_LIMITS:-} }
device.sink = { uri = "socket://127.0.1.250:19201" }
workflow.direct = { steps = [{ step = "forward", devices = ["sink"] }] }
input = [{ listener = "raw", workflow = "direct" }, { listener = "lpd", workflow = "direct" }, { listener = "ipp", workflow = "direct" }]
[tenant.b]
ranges = ["127.0.2.0/24"]
device.sink = { uri = "socket://127.0.2.250:19202" }
workflow.direct = { steps = [{ step = "forward", devices = ["sink"] }] }
input = [{ listener = "raw", workflow = "direct" }, { listener = "raw-b", workflow = "direct" }]
TOML

$load --sink 127.0.1.250:19201 >/dev/null &
$load --sink 127.0.2.250:19202 >/dev/null &

start_daemon() {
    rm -rf "$work/data"
    $bin serve --announce --config "$work/bench.toml" > "$work/daemon.out" 2> "$work/daemon.log" &
    daemon=$!
    for _ in $(seq 100); do grep -q '^ready' "$work/daemon.out" 2>/dev/null && return; sleep 0.1; done
    echo "daemon did not start"; cat "$work/daemon.log"; exit 1
}
stop_daemon() { kill -TERM $daemon; wait $daemon || true; }

if [[ -z ${A_RATE:-} ]]; then
    echo "== what the daemon takes: 5000 RAW jobs of 4 KiB, 8 clients"
    start_daemon
    $load --addr 127.0.0.1:19200 --jobs 5000 --size 4KiB --clients 8 --sources 127.0.1.10 --max-seconds 60 | tee "$work/cap.txt"
    stop_daemon
    cap=$(grep -o '[0-9]* jobs/s' "$work/cap.txt" | grep -o '^[0-9]*')
    A_RATE=$((cap * 10))
fi
if [[ -n ${NFT_NS:-} ]]; then
    $bin export nftables --config "$work/bench.toml" --out "$work/rules.nft"
    nft -f "$work/rules.nft"
    echo "== nftables ruleset loaded in namespace $NFT_NS: SYNs of no tenant reset, each tenant metered at its max-connection-rate"
fi
echo "== tenant b alone, then b while tenant a sends at $A_RATE jobs/s and worse"
start_daemon
$noisy --raw 127.0.0.1:19200 --lpd 127.0.0.1:19515 --ipp 127.0.0.1:19631 \
    --seconds "$SECONDS_PER_PHASE" --b-rate "$B_RATE" --a-rate "$A_RATE" \
    --big "$BIG" --big-count "$BIG_COUNT" --daemon-pid "$daemon" \
    ${B_OWN_PORT:+--b-raw 127.0.0.1:19210} ${NOISY_ARGS:-}
echo "daemon peak RSS: $(awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$daemon/status)"
echo "refusals logged: $(grep -c refused "$work/daemon.log" || true); panics: $(grep -c panicked "$work/daemon.log" || true)"
stop_daemon

#!/usr/bin/env bash
# Idle connections: the release daemon on a generated config (tenant `a`
# 127.0.1.0/24 with max-connections above COUNT and an idle-timeout of an
# hour; tenant `b` 127.0.2.0/24 printing to a local socat; tenant `c`
# 127.0.3.0/24 capped at CAPPED connections), then examples/idle_conns.rs
# holds COUNT idle connections from 200 of a's addresses over the RAW, LPD
# and IPP listeners and reports the daemon's memory per connection, that b's
# job is acknowledged meanwhile and that c's connection past its cap is
# refused. Everything on loopback; bounded by COUNT and MAX_SECONDS.
# Run: CARGO_TARGET_DIR=... [COUNT=..] [SPREAD=raw,lpd,ipp] scripts/bench-conns.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-10000}
CAPPED=${CAPPED:-50}
HOLD=${HOLD:-5}
MAX_SECONDS=${MAX_SECONDS:-300}
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d /var/tmp/printroute-conns.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet --bins --examples
bin=${PRINTROUTE_BIN:-$target/release/printroute} # another build to compare with

mkdir -p "$work/b-printer"
socat -u TCP-LISTEN:9101,bind=127.0.2.50,reuseaddr,fork SYSTEM:"cat > $work/b-printer/job.\$\$" &
cat > "$work/conns.toml" <<EOF
[global]
data-dir = "$work/data"
[global.limits]
idle-timeout = "1h"

[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:0"]
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:0"]

[tenant.a]
ranges = ["127.0.1.0/24"]
limits = { max-connections = $((COUNT + 100)) }
workflow.keep = { steps = [{ step = "store", folder = "$work/out-a" }] }
input = [{ listener = "raw", workflow = "keep" }, { listener = "lpd", workflow = "keep" }, { listener = "ipp", workflow = "keep" }]

[tenant.b]
ranges = ["127.0.2.0/24"]
device.printer = { uri = "socket://127.0.2.50:9101" }
workflow.direct = { steps = [{ step = "forward", devices = ["printer"] }] }
input = [{ listener = "raw", workflow = "direct" }]

[tenant.c]
ranges = ["127.0.3.0/24"]
limits = { max-connections = $CAPPED }
workflow.keep = { steps = [{ step = "store", folder = "$work/out-c" }] }
input = [{ listener = "raw", workflow = "keep" }]
EOF
$bin check "$work/conns.toml"
$bin serve --announce --config "$work/conns.toml" > "$work/out" 2> "$work/log" &
daemon=$!
for _ in $(seq 500); do grep -q '^ready' "$work/out" 2>/dev/null && break; sleep 0.02; done
grep -o 'open-file limit.*' "$work/log" | sed 's/\x1b\[[0-9;]*m//g' | head -1 || true
addr() { awk -v n="$1" '$1 == "listening" && $2 == n {print $4; exit}' "$work/out"; }
# IPP peers that send nothing are closed after the HTTP header timeout (10 s),
# so HOLD stays below it when IPP takes part.
"$target/release/examples/idle_conns" pid=$daemon raw="$(addr raw)" lpd="$(addr lpd)" ipp="$(addr ipp)" \
    count="$COUNT" net=127.0.1 sources=200 other=127.0.2.7 capped=127.0.3.7 capped-max="$CAPPED" \
    hold="$HOLD" max-seconds="$MAX_SECONDS" spread="${SPREAD:-raw,lpd,ipp}"
status=$?
kill -TERM $daemon
wait $daemon || true
exit $status

#!/usr/bin/env bash
# Small jobs at the speed of the disk (issue 14), in one go, with the limits
# measured in the same run:
#  1. RAW: JOBS jobs of 4 KiB from 16 connections of two tenants (8 each,
#     distinct loopback sources) -> jobs/s, p50/p99 time to acknowledgement
#     (the daemon's orderly close, sent after the durable commit)
#  2. LPD: the same jobs over LPD (acknowledgement: the final `\0`)
#  3. IPP Print-Job 4 KiB: scripts/bench-ipp.sh printjob, where that script exists
#  4. the disk's own figure, on the data dir's file system: 4 KiB records
#     appended to one file, one fdatasync per 32 records, and one each
#  5. one BIG (1 GiB) RAW job against socat writing the same stream into a
#     file and syncing it
# with the daemon's peak RSS (VmHWM) after each daemon run.
# Loopback only; every load is bounded in count (JOBS, DISK_RECORDS) and
# time (MAX_SECONDS per run). SMALL_ONLY=1 skips 5. PERF=FILE records the
# daemon under `perf record -g` (PERF_ARGS replaces -g, e.g.
# "--call-graph dwarf") during 1 into FILE. BIN=PATH runs that daemon
# binary instead of the one built here (to compare two builds in one
# session); ONLY=raw|lpd|big runs just that part.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-20000}
CLIENTS=${CLIENTS:-16}
SIZE=${SIZE:-4KiB}
BIG=${BIG:-1GiB}
DISK_RECORDS=${DISK_RECORDS:-20000}
MAX_SECONDS=${MAX_SECONDS:-120}
work=$(mktemp -d /var/tmp/printroute-small.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

[[ -n ${BIN:-} ]] || cargo build --release --quiet --bins --examples
target=${CARGO_TARGET_DIR:-target}
bin=${BIN:-$target/release/printroute}
load=$target/release/examples/loadgen

cat > "$work/bench.toml" <<TOML
[global]
data-dir = "$work/data"
[global.limits]
max-job-size = "2 GiB"
spool-quota = "100 GiB"
max-connections = 1024
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:19300"]
[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:19315"]
[tenant.a]
ranges = ["127.0.1.0/24"]
device.sink = { uri = "socket://127.0.1.250:19301" }
workflow.direct = { steps = [{ step = "forward", devices = ["sink"] }] }
input = [{ listener = "raw", workflow = "direct" }, { listener = "lpd", workflow = "direct" }]
[tenant.b]
ranges = ["127.0.2.0/24"]
device.sink = { uri = "socket://127.0.2.250:19302" }
workflow.direct = { steps = [{ step = "forward", devices = ["sink"] }] }
input = [{ listener = "raw", workflow = "direct" }, { listener = "lpd", workflow = "direct" }]
TOML

$load --sink 127.0.1.250:19301 >/dev/null &
sinks=$!
$load --sink 127.0.2.250:19302 >/dev/null &
sinks="$sinks $!"

start_daemon() {
    rm -rf "$work/data"
    $bin serve --announce --config "$work/bench.toml" > "$work/daemon.out" 2> "$work/daemon.log" &
    daemon=$!
    for _ in $(seq 100); do grep -q '^ready' "$work/daemon.out" 2>/dev/null && return; sleep 0.1; done
    echo "daemon did not start"; cat "$work/daemon.log"; exit 1
}
# The daemon's CPU time (all threads) per job, user and system apart: it
# shows what a change saves even where the disk bounds jobs/s.
cpu_per_job() {
    awk -v hz="$(getconf CLK_TCK)" -v n="$1" \
        '{printf "user %.0f us + system %.0f us per job\n", $14 * 1e6 / hz / n, $15 * 1e6 / hz / n}' /proc/$daemon/stat
}
# The two sinks' CPU time (user + system, clock ticks) so far; with the
# load generator's, what the machine spends per job outside the daemon.
sink_ticks() { for p in $sinks; do cut -d' ' -f14,15 /proc/$p/stat; done | awk '{t += $1 + $2} END {print t}'; }
sink_cpu_per_job() {
    awk -v hz="$(getconf CLK_TCK)" -v n="$2" -v a="$1" -v b="$(sink_ticks)" \
        'BEGIN {printf "sinks (the printers) CPU: %.0f us per job\n", (b - a) * 1e6 / hz / n}'
}
peak_rss() { awk '/VmHWM/ {printf "%.1f MiB\n", $2/1024}' /proc/$daemon/status; }
stop_daemon() { kill -TERM $daemon; wait $daemon || true; }
sources=127.0.1.10,127.0.2.10

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; data dir on $(df --output=source,fstype "$work" | tail -1)"

if [[ ${ONLY:-raw} == raw ]]; then
echo "== RAW: $JOBS jobs of $SIZE, $CLIENTS connections of 2 tenants"
start_daemon
if [[ -n ${PERF:-} ]]; then
    perf record ${PERF_ARGS:--g} -o "$PERF" -p $daemon 2> "$work/perf.log" &
    perf_pid=$!
    sleep 0.5
fi
TIMEFORMAT="load generator CPU: user %U s + system %S s (of %R s)"
sink_before=$(sink_ticks)
time $load --addr 127.0.0.1:19300 --jobs "$JOBS" --size "$SIZE" --clients "$CLIENTS" --sources $sources --max-seconds "$MAX_SECONDS"
if [[ -n ${PERF:-} ]]; then kill -INT $perf_pid; wait $perf_pid || true; fi
echo "daemon peak RSS: $(peak_rss); daemon CPU: $(cpu_per_job "$JOBS")"
# Delivery runs behind intake: wait (bounded) for the sinks to go idle.
for _ in $(seq 50); do a=$(sink_ticks); sleep 0.2; [[ $(sink_ticks) == "$a" ]] && break; done
sink_cpu_per_job "$sink_before" "$JOBS"
stop_daemon
fi

if [[ ${ONLY:-lpd} == lpd ]]; then
echo "== LPD: $JOBS jobs of $SIZE, $CLIENTS connections of 2 tenants"
start_daemon
$load --protocol lpd --addr 127.0.0.1:19315 --jobs "$JOBS" --size "$SIZE" --clients "$CLIENTS" --sources $sources --max-seconds "$MAX_SECONDS"
echo "daemon peak RSS: $(peak_rss); daemon CPU: $(cpu_per_job "$JOBS")"
stop_daemon
fi
if [[ -z ${ONLY:-} ]]; then
echo "== IPP Print-Job"
if [[ -x scripts/bench-ipp.sh ]]; then
    scripts/bench-ipp.sh printjob
else
    echo "scripts/bench-ipp.sh not here yet: skipped"
fi

echo "== the disk: $DISK_RECORDS records of $SIZE appended on the data dir's file system"
$load --disk "$work" --jobs "$DISK_RECORDS" --size "$SIZE" --group 32 --max-seconds "$MAX_SECONDS"
$load --disk "$work" --jobs $((DISK_RECORDS / 4)) --size "$SIZE" --group 1 --max-seconds "$MAX_SECONDS"
fi

[[ ${SMALL_ONLY:-} || ${ONLY:-big} != big ]] && exit 0
echo "== one $BIG RAW job"
start_daemon
$load --addr 127.0.0.1:19300 --jobs 1 --size "$BIG" --clients 1 --sources 127.0.1.10 --max-seconds "$MAX_SECONDS"
echo "daemon peak RSS: $(peak_rss)"
stop_daemon

echo "== peer: socat writing the same stream into a file on the same file system, then fsync"
# Both directions and a long -t: socat closes the connection when the
# command ends, after the sync. (With -u it closes about 1 s after the
# sender's end, whether or not the sync is done: an optimistic peer.)
socat -t "$MAX_SECONDS" TCP-LISTEN:19303,bind=127.0.0.1,reuseaddr SYSTEM:"cat > $work/socat.out && sync $work/socat.out" &
for _ in $(seq 50); do ss -Hltn 'sport = :19303' | grep -q . && break; sleep 0.1; done
$load --addr 127.0.0.1:19303 --jobs 1 --size "$BIG" --clients 1 --sources 127.0.0.1 --max-seconds "$MAX_SECONDS"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

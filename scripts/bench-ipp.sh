#!/usr/bin/env bash
# printroute's IPP printer against a private cupsd, same client for both:
# h2load --h1 (Debian nghttp2-client), 8 connections, POSTing one
# pre-encoded IPP request a bounded number of times (-n). Both are durable:
# printroute commits every job (group commit), cupsd runs with
# `SyncOnClose Yes`.
#
#   scripts/bench-ipp.sh [all|printjob|gpa]
#
#   printjob  Print-Job of 4 KiB, plain and over TLS (PRINT_JOBS plain,
#             a tenth of that over TLS; default 20000): printroute queues
#             them for a device that is down (its intake does not depend on
#             the backlog), cupsd prints them to /dev/null (a raw queue, so
#             its queue stays short: its best case)
#   gpa       Get-Printer-Attributes (a client's poll, and `all`) and Get-Jobs
#             (limit 10, answering job-id and job-uri) plain and over TLS,
#             with an empty queue, then with JOBS (default 100000) more jobs
#             queued for a device that is down (printroute: a socket device
#             on a closed port; cupsd: a stopped raw queue)
#   all       both (the default)
#
# cupsd's backlog: it takes CUPS_REAL_JOBS (default 1000) real Print-Jobs
# into the stopped queue (its intake rate: "cups fill"), is stopped, gets
# the rest written into its spool as it keeps jobs itself (control files,
# documents, job.cache: scripts/cups-backlog.py) and loads them when it
# starts again. Its intake slows as its queue grows (about 97 jobs/s at
# 40,000), so a real fill of 100,000 takes about an hour. Before the GPA
# runs, both servers' queued-job-count, and cupsd's Get-Jobs, must show
# the backlog.
#
# Environment: JOBS, PRINT_JOBS, GPA_N (requests per GPA or Get-Jobs
# figure, default 20000, or fewer for a server that answers fewer than
# GPA_N in GPA_SECONDS, default 10, as a probe of GPA_PROBE requests, default
# 500, shows), CUPS_REAL_JOBS, PRINTROUTE_BIN (default: the release binary under
# CARGO_TARGET_DIR, built first). Loopback only; each h2load run is bounded
# by -n. The last lines are the ratios printroute / cupsd.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all}
case $MODE in all | printjob | gpa) ;; *)
    echo "usage: $0 [all|printjob|gpa]" >&2
    exit 2
    ;;
esac
JOBS=${JOBS:-100000}
CUPS_REAL_JOBS=${CUPS_REAL_JOBS:-1000}
if ((CUPS_REAL_JOBS > JOBS)); then CUPS_REAL_JOBS=$JOBS; fi
PRINT_JOBS=${PRINT_JOBS:-20000}
GPA_N=${GPA_N:-20000}
GPA_SECONDS=${GPA_SECONDS:-10}
GPA_PROBE=${GPA_PROBE:-500}
CONNS=8
if [[ -z ${PRINTROUTE_BIN:-} ]]; then
    cargo build --release --quiet --bins
    PRINTROUTE_BIN=${CARGO_TARGET_DIR:-target}/release/printroute
fi
for tool in h2load cupsd lpadmin cupsdisable openssl python3; do
    command -v "$tool" >/dev/null || {
        echo "$tool missing (apt-get install nghttp2-client cups-daemon cups-client openssl python3)" >&2
        exit 1
    }
done
work=$(mktemp -d /var/tmp/printroute-bench-ipp.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PR_PORT=$(free_port)
CUPS_PORT=$(free_port)

# ---- printroute: one tenant, its printer forwards to a device that is down ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/ipp.key" -out "$work/ipp.pem" 2>/dev/null
cat >"$work/printroute.toml" <<EOF
[global]
data-dir = "$work/printroute"
[global.limits]
max-job-size = "1 MiB"
spool-quota = "100 GiB"
delivery-timeout = "30d"
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:$PR_PORT"]
tls = { cert = "$work/ipp.pem", key = "$work/ipp.key" }
[tenant.a]
name = "A"
ranges = ["127.0.0.1/32"]
device.down = { uri = "socket://127.0.0.1:9" }
workflow.direct = { steps = [{ step = "forward", devices = ["down"] }] }
input = [{ listener = "ipp", workflow = "direct" }]
EOF
"$PRINTROUTE_BIN" serve --announce -c "$work/printroute.toml" >"$work/printroute.out" 2>"$work/printroute.log" &
pids+=($!)

# ---- cupsd: private ServerRoot, SyncOnClose, no job limit, its own self-signed cert ----
mkdir -p "$work/cups"/{spool,tmp,cache,state,log,ppd,ssl}
chmod 755 "$work" "$work/cups"
cat >"$work/cups/cupsd.conf" <<EOF
Listen 127.0.0.1:$CUPS_PORT
ServerName localhost
LogLevel warn
MaxJobs 0
MaxClients 200
Browsing No
DefaultAuthType None
WebInterface No
<Location />
  Order allow,deny
  Allow all
</Location>
<Policy default>
  <Limit All>
    Order deny,allow
    Allow all
  </Limit>
</Policy>
EOF
cat >"$work/cups/cups-files.conf" <<EOF
ServerRoot $work/cups
RequestRoot $work/cups/spool
TempDir $work/cups/tmp
CacheDir $work/cups/cache
StateDir $work/cups/state
ServerKeychain $work/cups/ssl
CreateSelfSignedCerts Yes
ErrorLog $work/cups/log/error_log
AccessLog $work/cups/log/access_log
PageLog $work/cups/log/page_log
Printcap $work/cups/printcap
ServerBin /usr/lib/cups
DataDir /usr/share/cups
FileDevice Yes
SyncOnClose Yes
EOF
start_cupsd() {
    DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent cupsd -f -c "$work/cups/cupsd.conf" -s "$work/cups/cups-files.conf" &
    CUPS_PID=$!
    pids+=("$CUPS_PID")
}
# `lpstat -r` exits 0 while the scheduler is not up yet: read what it says.
cupsd_up() { lpstat -h "127.0.0.1:$CUPS_PORT" -r 2>/dev/null | grep -q 'is running'; }
start_cupsd

for _ in $(seq 300); do
    grep -q '^ready' "$work/printroute.out" 2>/dev/null && cupsd_up && break
    sleep 0.1
done
grep -q '^ready' "$work/printroute.out" || {
    echo "printroute did not start:" >&2
    cat "$work/printroute.log" >&2
    exit 1
}
# A raw queue on a device that is down: stopped, accepting jobs, so they queue.
lpadmin -h "127.0.0.1:$CUPS_PORT" -p down -v socket://127.0.0.1:9 -m raw -E 2>/dev/null # (raw queues: deprecated, still the plain way)
cupsdisable -h "127.0.0.1:$CUPS_PORT" down
lpadmin -h "127.0.0.1:$CUPS_PORT" -p raw -v file:///dev/null -m raw -E 2>/dev/null

# ---- The requests, pre-encoded (RFC 8010) ----
python3 - "$work" "$PR_PORT" "$CUPS_PORT" <<'EOF'
import struct, sys
d, pr, cups = sys.argv[1], sys.argv[2], sys.argv[3]
def attr(tag, name, v):
    return bytes([tag]) + struct.pack('>H', len(name)) + name.encode() + struct.pack('>H', len(v)) + v
def req(uri, op, extra=b'', doc=b''):
    b = b'\x02\x00' + struct.pack('>Hi', op, 1) + b'\x01'
    b += attr(0x47, 'attributes-charset', b'utf-8') + attr(0x48, 'attributes-natural-language', b'en')
    b += attr(0x45, 'printer-uri', uri.encode()) + attr(0x42, 'requesting-user-name', b'bench') + extra
    return b + b'\x03' + doc
# What a client polls before and during every job.
poll = attr(0x44, 'requested-attributes', b'printer-state') + attr(0x44, '', b'printer-state-reasons') \
    + attr(0x44, '', b'printer-is-accepting-jobs') + attr(0x44, '', b'queued-job-count')
doc = attr(0x49, 'document-format', b'application/octet-stream'), b'\x1bE' + bytes(4094)
for name, uri in (('pr', f'ipp://localhost:{pr}/ipp/print'), ('cups', f'ipp://localhost:{cups}/printers/down')):
    open(f'{d}/{name}-gpa', 'wb').write(req(uri, 0x0b, poll))
    open(f'{d}/{name}-gpa-all', 'wb').write(req(uri, 0x0b))
    open(f'{d}/{name}-fill', 'wb').write(req(uri, 0x02, *doc))
    open(f'{d}/{name}-jobs', 'wb').write(req(uri, 0x0a, attr(0x21, 'limit', struct.pack('>i', 10))))
open(f'{d}/pr-print', 'wb').write(req(f'ipp://localhost:{pr}/ipp/print', 0x02, *doc))
open(f'{d}/cups-print', 'wb').write(req(f'ipp://localhost:{cups}/printers/raw', 0x02, *doc))
EOF

# rate SERVER REQUEST N SCHEME: requests/s of N successful requests (h2load's figure).
rate() {
    local server=$1 request=$2 n=$3 scheme=$4 port path out ok
    if [[ $server == pr ]]; then
        port=$PR_PORT path=/ipp/print
    elif [[ $request == print ]]; then
        port=$CUPS_PORT path=/printers/raw
    else
        port=$CUPS_PORT path=/printers/down
    fi
    out=$(h2load --h1 -n "$n" -c "$CONNS" -d "$work/$server-$request" -H 'Content-Type: application/ipp' "$scheme://127.0.0.1:$port$path" 2>&1)
    ok=$(awk '/^requests:/ {print $8}' <<<"$out")
    if [[ $ok != "$n" ]]; then
        echo "h2load $server $request $scheme: only ${ok:-0} of $n succeeded:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk '/^finished in/ {print $4}' <<<"$out"
}
# queued-job-count of a server's printer, from its own answer to the poll request.
queued() {
    local port path
    if [[ $1 == pr ]]; then port=$PR_PORT path=/ipp/print; else port=$CUPS_PORT path=/printers/down; fi
    python3 - "$work/$1-gpa" "http://127.0.0.1:$port$path" <<'EOF'
import struct, sys, urllib.request
body = open(sys.argv[1], 'rb').read()
r = urllib.request.urlopen(urllib.request.Request(sys.argv[2], body, {'Content-Type': 'application/ipp'})).read()
i = r.index(b'queued-job-count') + len(b'queued-job-count')
print(struct.unpack('>i', r[i + 2:i + 6])[0])
EOF
}
declare -A fig=()
# measure KEY SERVER REQUEST N SCHEME
measure() {
    fig[$1]=$(rate "$2" "$3" "$4" "$5")
    printf '  %-40s %12s req/s\n' "$1" "${fig[$1]}"
}
ratio() { awk -v a="${fig[$1]}" -v b="${fig[$2]}" 'BEGIN {printf "%.2f", a / b}'; }
report() { printf '%-44s %6s x  (printroute %s/s, cupsd %s/s)\n' "$1" "$(ratio "$2" "$3")" "${fig[$2]}" "${fig[$3]}"; }

# cups_backlog N: N more jobs for cupsd's stopped queue, written into its
# spool while it is stopped; then cupsd is started again and loads them.
cups_backlog() {
    local t0 t1 keep=()
    kill "$CUPS_PID"
    wait "$CUPS_PID" || true
    for p in "${pids[@]}"; do [[ $p == "$CUPS_PID" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
    t0=$(date +%s.%N)
    python3 scripts/cups-backlog.py fill "$work/cups" down "$1"
    t1=$(date +%s.%N)
    start_cupsd
    until cupsd_up; do
        kill -0 "$CUPS_PID" 2>/dev/null || {
            echo "cupsd did not start again:" >&2
            tail "$work/cups/log/error_log" >&2
            exit 1
        }
        sleep 0.2
    done
    echo "  cupsd: $1 more jobs written into its spool in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", b - a}') s; up with them after $(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}') s"
}

# queries SERVER REQUEST SCHEME: how many requests to time: GPA_N, or what a
# slow server answers in about GPA_SECONDS (after a probe of GPA_PROBE).
queries() {
    local probe
    probe=$(rate "$1" "$2" "$GPA_PROBE" "$3")
    awk -v r="$probe" -v s="$GPA_SECONDS" -v max="$GPA_N" -v min="$GPA_PROBE" \
        'BEGIN {n = int(r * s); if (n > max) n = max; if (n < min) n = min; print n}'
}
gpa_phase() { # LABEL
    echo "Get-Printer-Attributes and Get-Jobs, $1 (n=$GPA_N or ${GPA_SECONDS} s worth, $CONNS connections):"
    local s q scheme label
    for s in pr cups; do
        for q in "gpa http" "gpa-all http" "gpa https" "jobs http" "jobs https"; do
            read -r q scheme <<<"$q"
            label="$s $q"
            if [[ $scheme == https ]]; then label+=" tls"; fi
            measure "$label $1" "$s" "$q" "$(queries "$s" "$q" "$scheme")" "$scheme"
        done
    done
}
printjob_phase() { # N
    echo "Print-Job 4 KiB, durable, $1 jobs each ($CONNS connections):"
    for s in pr cups; do
        measure "$s print" "$s" print "$1" http
        measure "$s print tls" "$s" print "$((($1 + 9) / 10))" https
    done
}

echo "$("$PRINTROUTE_BIN" --version 2>/dev/null | head -1) vs cupsd $(dpkg-query -W -f='${Version}' cups-daemon 2>/dev/null); load average $(cut -d' ' -f1-3 /proc/loadavg)"
case $MODE in
printjob)
    printjob_phase "$PRINT_JOBS"
    ;;
gpa | all)
    gpa_phase "empty queue"
    if [[ $MODE == all ]]; then
        printjob_phase "$PRINT_JOBS"
    fi
    echo "queueing $JOBS jobs for the down device on each:"
    measure "pr fill" pr fill "$JOBS" http
    measure "cups fill" cups fill "$CUPS_REAL_JOBS" http
    if ((JOBS > CUPS_REAL_JOBS)); then
        cups_backlog $((JOBS - CUPS_REAL_JOBS))
    fi
    echo "printroute: $(queued pr) queued (queued-job-count)"
    echo "cupsd: $(python3 scripts/cups-backlog.py holds "http://127.0.0.1:$CUPS_PORT/printers/down")"
    if (($(queued pr) < JOBS || $(queued cups) < JOBS)); then
        echo "a backlog is short of $JOBS jobs" >&2
        exit 1
    fi
    gpa_phase "$JOBS+ jobs queued"
    ;;
esac

echo "---- printroute / cupsd ----"
if [[ $MODE != gpa ]]; then
    report "Print-Job 4 KiB (goal >= 5)" "pr print" "cups print"
    report "Print-Job 4 KiB over TLS" "pr print tls" "cups print tls"
fi
if [[ $MODE != printjob ]]; then
    report "Print-Job 4 KiB, filling (cupsd: its first $CUPS_REAL_JOBS)" "pr fill" "cups fill"
    for phase in "empty queue" "$JOBS+ jobs queued"; do
        report "GPA poll, $phase (goal >= 2)" "pr gpa $phase" "cups gpa $phase"
        report "GPA all, $phase" "pr gpa-all $phase" "cups gpa-all $phase"
        report "GPA poll over TLS, $phase" "pr gpa tls $phase" "cups gpa tls $phase"
        report "Get-Jobs limit 10, $phase" "pr jobs $phase" "cups jobs $phase"
        report "Get-Jobs limit 10 over TLS, $phase" "pr jobs tls $phase" "cups jobs tls $phase"
    done
fi

#!/bin/bash
# Get-Printer-Attributes and Get-Jobs (limit 10) per second against printroute's IPP printer,
# with an empty queue, with exactly 10 jobs queued (Get-Jobs's answer as
# long as with any backlog: what is left is the backlog's cost) and with
# JOBS jobs queued for a device that is down. Before the 10 are queued,
# 10 jobs are printed and canceled: the finished jobs that which-jobs
# completed lists, under every queued one.
#
#   scripts/bench-gpa.sh [JOBS]          (default 100000; release binary)
#
# One h2load --h1 run per figure (8 connections), POSTing one pre-encoded
# IPP request; the backlog is made by h2load POSTing a 4 KiB Print-Job.
# Requests: gpa (a client's poll: state, reasons, queued-job-count),
# gpa-all, jobs (Get-Jobs limit 10: job-id and job-uri), jobs-described
# (Get-Jobs limit 10 asking for job-state and job-name too: reads records),
# jobs-completed (Get-Jobs limit 10, which-jobs completed: none with the
# empty queue, the 10 canceled ones after; reads records).
# The daemon's resident memory (ps -o rss) is shown after each phase.
set -euo pipefail
JOBS=${1:-100000}
N=${N:-40000}
BIN=${PRINTROUTE_BIN:-${CARGO_TARGET_DIR:-target}/release/printroute}
DIR=$(mktemp -d)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$DIR/p.toml" <<EOF
[global]
data-dir = "$DIR/data"
[global.limits]
max-job-size = "1 MiB"
spool-quota = "100 GiB"
delivery-timeout = "30d"
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:$PORT"]
[tenant.a]
name = "A"
ranges = ["127.0.0.1/32"]
device.down = { uri = "socket://127.0.0.1:9" }
workflow.direct = { steps = [{ step = "forward", devices = ["down"] }] }
input = [{ listener = "ipp", workflow = "direct" }]
EOF
"$BIN" serve --announce -c "$DIR/p.toml" > "$DIR/log" 2>&1 & PID=$!
until grep -q '^ready' "$DIR/log"; do sleep 0.1; done
python3 - "$DIR" "$PORT" <<'EOF'
import struct, sys
d, port = sys.argv[1], sys.argv[2]
def attr(tag, name, v):
    return bytes([tag]) + struct.pack('>H', len(name)) + name.encode() + struct.pack('>H', len(v)) + v
def req(op, extra=b'', doc=b''):
    uri = f'ipp://127.0.0.1:{port}/ipp/print'.encode()
    b = b'\x02\x00' + struct.pack('>Hi', op, 1) + b'\x01'
    b += attr(0x47, 'attributes-charset', b'utf-8') + attr(0x48, 'attributes-natural-language', b'en')
    b += attr(0x45, 'printer-uri', uri) + attr(0x42, 'requesting-user-name', b'bench') + extra
    return b + b'\x03' + doc
open(f'{d}/gpa', 'wb').write(req(0x0b, attr(0x44, 'requested-attributes', b'printer-state') + attr(0x44, '', b'queued-job-count') + attr(0x44, '', b'printer-state-reasons')))
open(f'{d}/gpa-all', 'wb').write(req(0x0b))
open(f'{d}/jobs', 'wb').write(req(0x0a, attr(0x21, 'limit', struct.pack('>i', 10))))
open(f'{d}/jobs-completed', 'wb').write(req(0x0a, attr(0x21, 'limit', struct.pack('>i', 10)) + attr(0x44, 'which-jobs', b'completed')))
open(f'{d}/jobs-described', 'wb').write(req(0x0a, attr(0x21, 'limit', struct.pack('>i', 10)) + attr(0x44, 'requested-attributes', b'job-id') + attr(0x44, '', b'job-state') + attr(0x44, '', b'job-name')))
open(f'{d}/print', 'wb').write(req(0x02, attr(0x49, 'document-format', b'application/octet-stream'), b'\x1bE' + bytes(4094)))
for job in range(1, 11):
    open(f'{d}/cancel-{job}', 'wb').write(req(0x08, attr(0x21, 'job-id', struct.pack('>i', job))))
EOF
URL="http://127.0.0.1:$PORT/ipp/print"
rate() { h2load --h1 -n "$2" -c 8 -d "$DIR/$1" -H 'Content-Type: application/ipp' "$URL" | awk '/^finished in/ {print $4, $5} /^requests:/ {print "  " $0}'; }
rss() { echo "daemon RSS $(ps -o rss= -p "$PID") KiB"; }
# One request (a file of $DIR) on its own: its status, and how many jobs it lists.
ask() {
    python3 - "$PORT" "$DIR/$1" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]))
c.request('POST', '/ipp/print', open(sys.argv[2], 'rb').read(), {'Content-Type': 'application/ipp'})
r = c.getresponse().read()
print(f"status {int.from_bytes(r[2:4], 'big'):#06x}, {r.count(b'job-id')} jobs listed")
EOF
}
QUERIES="gpa gpa-all jobs jobs-described jobs-completed"
for q in $QUERIES; do echo "empty queue, $q: $(rate $q $N)"; done
rss
echo "printing 10 jobs: $(rate print 10)"
for job in $(seq 10); do
    r=$(ask cancel-$job)
    [[ $r == "status 0x0000,"* ]] || { echo "Cancel-Job $job: $r" >&2; exit 1; }
done
echo "queueing 10 jobs: $(rate print 10)"
echo "jobs-completed: $(ask jobs-completed)"
for q in $QUERIES; do echo "10 queued, $q: $(rate $q $N)"; done
echo "queueing $((JOBS - 10)) more jobs: $(rate print $((JOBS - 10)))"
echo "jobs-completed: $(ask jobs-completed)"
for q in $QUERIES; do echo "$JOBS queued, $q: $(rate $q $N)"; done
rss

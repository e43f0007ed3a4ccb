#!/usr/bin/env bash
# Admin API figures (issue 16), over HTTPS with a test certificate:
#  1. GET /api/v1/tenants/a/jobs with JOBS (default 10,000) held jobs of the
#     tenant: requests/s and latency, h2load --h1 (4 connections, keep-alive)
#  2. releases: RELEASES (default 2,000) distinct held jobs released through
#     POST .../jobs/ID/release by 4 Python clients on keep-alive
#     connections: releases/s (each release also makes the job print on a
#     discarding RAW device)
#  3. a device change through the API to its first routed job: PUT a
#     device of the tenant to a new address, then send one RAW job; the time
#     until the new device has it, and how much of it the PUT took
#     (validate the whole config, write the file, reload), ROUNDS times.
# Loopback only; every phase is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-10000}
RELEASES=${RELEASES:-2000}
ROUNDS=${ROUNDS:-10}
work=$(mktemp -d /var/tmp/printroute-api.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet --bins --examples
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/release/printroute
load=$target/release/examples/loadgen
command -v h2load >/dev/null || { echo "h2load missing (Debian nghttp2-client)" >&2; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -keyout "$work/web.key" -out "$work/web.pem" 2>/dev/null
mkdir -p "$work/tenants.d"
cat > "$work/bench.toml" <<TOML
[global]
data-dir = "$work/data"
control-socket = "$work/control.sock"
tenants-dir = "$work/tenants.d"
[global.web]
bind = "127.0.0.1:19631"
tls = { cert = "$work/web.pem", key = "$work/web.key" }
[global.limits]
spool-quota = "100 GiB"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:19120"]
TOML
cat > "$work/tenants.d/a.toml" <<TOML
ranges = ["127.0.1.0/24"]
[device.sink]
uri = "socket://127.0.1.250:19121"
[workflow.held]
steps = [{ step = "hold" }, { step = "forward", devices = ["sink"] }]
[workflow.direct]
steps = [{ step = "forward", devices = ["sink"] }]
[[input]]
listener = "raw"
workflow = "held"
TOML

$bin serve --config "$work/bench.toml" > "$work/daemon.out" 2> "$work/daemon.log" &
daemon=$!
for _ in $(seq 100); do
    [[ -S $work/control.sock ]] && break
    sleep 0.1
done
token=$($bin token create --tenant a --name bench --config "$work/bench.toml" 2>/dev/null)
$load --sink 127.0.1.250:19121 >/dev/null &

echo "== $JOBS held jobs"
$load --addr 127.0.0.1:19120 --jobs "$JOBS" --size 4KiB --clients 8 --sources 127.0.1.10 --max-seconds 600
url=https://127.0.0.1:19631/api/v1/tenants/a/jobs
bytes=$(curl -sk -H "Authorization: Bearer $token" "$url" | wc -c)
listed=$(curl -sk -H "Authorization: Bearer $token" "$url?state=held" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "one job list: $listed held jobs, $bytes bytes of JSON"

echo "== GET job list ($JOBS jobs), h2load --h1 -c 4"
h2load --h1 -n 200 -c 4 -H "Authorization: Bearer $token" "$url" | grep -E "^finished in|^requests:|^status codes:|time for request:"

echo "== release $RELEASES held jobs, 4 clients"
python3 - "$token" "$RELEASES" <<'PY'
import http.client, json, ssl, sys, threading, time
token, n = sys.argv[1], int(sys.argv[2])
ctx = ssl._create_unverified_context()
def conn():
    return http.client.HTTPSConnection("127.0.0.1", 19631, context=ctx, timeout=60)
h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
c = conn(); c.request("GET", "/api/v1/tenants/a/jobs?state=held", headers=h)
ids = [j["id"] for j in json.loads(c.getresponse().read())][:n]
lat, bad = [], []
def worker(part):
    c = conn()
    for i in part:
        t = time.perf_counter()
        c.request("POST", f"/api/v1/tenants/a/jobs/{i}/release", body=b"{}", headers=h)
        r = c.getresponse(); r.read()
        lat.append(time.perf_counter() - t)
        if r.status != 200: bad.append(r.status)
threads = [threading.Thread(target=worker, args=(ids[k::4],)) for k in range(4)]
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
dt = time.perf_counter() - t0
lat.sort()
print(f"released {len(ids)} jobs in {dt:.2f} s: {len(ids)/dt:.0f} releases/s; "
      f"p50 {lat[len(lat)//2]*1000:.1f} ms, p99 {lat[int(len(lat)*0.99)]*1000:.1f} ms; non-200: {len(bad)}")
PY

echo "== device change through the API to its first routed job, $ROUNDS rounds"
python3 - "$token" "$ROUNDS" "$load" <<'PY'
import http.client, json, os, socket, ssl, subprocess, sys, tempfile, time
token, rounds, load = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl._create_unverified_context()
h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
def api(method, path, body=None):
    c = http.client.HTTPSConnection("127.0.0.1", 19631, context=ctx, timeout=60)
    c.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=h)
    r = c.getresponse(); data = r.read(); c.close()
    return r.status, data
# A device of its own, so that jobs still queued for the sink (the
# releases above) do not follow it to its new addresses.
for method, path, body in [
    ("PUT", "/api/v1/tenants/a/devices/moved", {"uri": "socket://127.0.1.251:19199"}),
    ("PUT", "/api/v1/tenants/a/workflows/direct", {"steps": [{"step": "forward", "devices": ["moved"]}]}),
    ("PUT", "/api/v1/tenants/a/inputs", [{"listener": "raw", "workflow": "direct"}]),
]:
    s, b = api(method, path, body)
    assert s in (200, 201), b
puts, totals = [], []
for k in range(rounds):
    port = 19200 + k
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.1.251", port)); srv.listen(8); srv.settimeout(60)
    t0 = time.perf_counter()
    s, b = api("PUT", "/api/v1/tenants/a/devices/moved", {"uri": f"socket://127.0.1.251:{port}"})
    assert s == 200, b
    t1 = time.perf_counter()
    j = socket.socket(); j.bind(("127.0.1.10", 0)); j.connect(("127.0.0.1", 19120))
    j.sendall(b"%!PS\nshowpage\n"); j.shutdown(socket.SHUT_WR); j.recv(1); j.close()
    d, _ = srv.accept(); got = d.recv(64); t2 = time.perf_counter()
    d.close(); srv.close()
    assert got.startswith(b"%!PS"), got
    puts.append(t1 - t0); totals.append(t2 - t0)
puts.sort(); totals.sort()
print(f"PUT device (validate, write, reload): median {puts[len(puts)//2]*1000:.1f} ms, max {puts[-1]*1000:.1f} ms")
print(f"PUT start to first byte of the next job at the new device: median {totals[len(totals)//2]*1000:.1f} ms, max {totals[-1]*1000:.1f} ms")
PY
grep -c "new snapshot in force" "$work/daemon.log" | sed 's/^/reloads: /'
echo "daemon peak RSS: $(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$daemon/status) MiB"
kill -TERM $daemon
wait $daemon || true

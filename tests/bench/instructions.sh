#!/usr/bin/env bash
# Instructions per request of portcullis on an `auth = "none"` route, under callgrind: a figure
# that does not move with the machine's load (unlike req/s and CPU time), for comparing builds.
#
#   tests/bench/instructions.sh [BINARY]     (default: target/release/portcullis)
#   SECONDS_MEASURED=5 KEEP_WORKDIR=1 tests/bench/instructions.sh
#
# Needs valgrind (callgrind_control, callgrind_annotate), nginx, wrk, curl, python3. Binds only
# 127.0.0.1 on free ports and stops everything it started. Prints requests, instructions and
# instructions/request; `callgrind_annotate WORKDIR/callgrind.out` shows where they go.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:-$ROOT/target/release/portcullis}
SECS=${SECONDS_MEASURED:-5}
for tool in valgrind callgrind_control callgrind_annotate nginx wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is missing (apt-get install -y valgrind nginx wrk curl python3)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "instructions.sh: no binary at $BIN (cargo build --release)" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP_WORKDIR:-0}" = 1 ]; then echo "workdir: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); PORT=$(free_port); ADMIN=$(free_port)

mkdir -p "$WORK/logs"
cat >"$WORK/static.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/static.pid;
error_log $WORK/logs/static.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
EOF
cat >"$WORK/portcullis.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
admin_listen = "127.0.0.1:$ADMIN"

[[route]]
name = "bench-none"
path = "/"
upstream = "http://127.0.0.1:$UP"
auth = "none"
EOF

taskset -c 1 nginx -p "$WORK" -e "$WORK/logs/static.log" -c "$WORK/static.conf" >/dev/null 2>&1 &
PIDS+=($!)
RUST_LOG=warn taskset -c 1 valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$WORK/callgrind.out" "$BIN" run --config "$WORK/portcullis.toml" \
    >"$WORK/logs/portcullis.log" 2>&1 &
VG=$!
PIDS+=("$VG")
for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$ADMIN/healthz" && break
    kill -0 "$VG" 2>/dev/null || { tail -20 "$WORK/logs/portcullis.log" >&2; exit 1; }
    sleep 0.2
done
count() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^portcullis_requests_total/ {s += $2} END {print s + 0}'; }

taskset -c 0 wrk -t1 -c64 -d2s "http://127.0.0.1:$PORT/" >/dev/null # warm-up: pools, caches
before=$(count)
callgrind_control -i on "$VG" >/dev/null 2>&1
taskset -c 0 wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$PORT/" >"$WORK/wrk.out"
callgrind_control -i off "$VG" >/dev/null 2>&1
after=$(count)
kill -TERM "$VG"
wait "$VG" 2>/dev/null || true
grep -q "Non-2xx" "$WORK/wrk.out" && { echo "instructions.sh: non-2xx answers:" >&2; cat "$WORK/wrk.out" >&2; exit 1; }

total=$(callgrind_annotate "$WORK/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
n=$((after - before))
[ "$n" -gt 0 ] || { echo "instructions.sh: no requests counted" >&2; exit 1; }
echo "requests=$n instructions=$total instructions/request=$((total / n))"

#!/usr/bin/env bash
# gRPC and HTTP/2-upstream benchmark, on loopback (see tests/bench/README.md, "gRPC"):
#
#   1. gRPC unary calls (portcullis.test.Echo/Who, a prepared gRPC request body sent by h2load
#      over h2c) to a real grpcio server (tests/support/grpc/server.py): direct, and through
#      portcullis (`upstream = "h2c://…"`, `auth = "none"`).
#   2. The same route to an nginx upstream answering 200 "ok", over HTTP/1.1
#      (`upstream = "http://…"`) and over HTTP/2 (`upstream = "h2c://…"`, the same nginx); the
#      client speaks h2c to portcullis in both.
#
# Each row: h2load -c CONNECTIONS -m STREAMS for DURATION after WARMUP, h2load pinned to
# LOAD_CPU, servers and portcullis to PROXY_CPU. CPU = utime+stime of the portcullis process per
# request (of the gRPC server for the direct row).
#
#   PORTCULLIS_BIN=target/release/portcullis bash tests/bench/grpc.sh
#
# Environment: PORTCULLIS_BIN (default target/release/portcullis, else target/debug/portcullis),
# PORTCULLIS_PYTHON (a python with grpcio + grpcio-tools; default the venv tests/run.sh makes),
# DURATION (10s), WARMUP (2s), CONNECTIONS (8), STREAMS (16), LOAD_CPU (0), PROXY_CPU (1),
# KEEP_WORKDIR=1 keeps the temp folder.
# Needs: h2load (Debian nghttp2-client), nginx, taskset.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-8}
STREAMS=${STREAMS:-16}
LOAD_CPU=${LOAD_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
PY=${PORTCULLIS_PYTHON:-${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/venv-tests/bin/python}
BIN=${PORTCULLIS_BIN:-}
if [ -z "$BIN" ]; then
  BIN=$ROOT/target/release/portcullis
  [ -x "$BIN" ] || BIN=$ROOT/target/debug/portcullis
fi
for tool in h2load nginx taskset; do
  command -v "$tool" >/dev/null || { echo "grpc.sh: $tool is missing (apt-get install -y nghttp2-client nginx util-linux)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "grpc.sh: no portcullis binary at $BIN (cargo build --release)" >&2; exit 1; }
"$PY" -c 'import grpc, grpc_tools' 2>/dev/null || { echo "grpc.sh: $PY lacks grpcio/grpcio-tools (bash tests/run.sh creates the venv)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-grpc-bench.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${KEEP_WORKDIR:-0}" = 1 ] && echo "workdir: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "grpc.sh: nothing listens on port $1" >&2; exit 1
}

# --- the gRPC server -----------------------------------------------------------------------
mkdir "$WORK/stubs"
"$PY" -m grpc_tools.protoc -I "$ROOT/tests/support/grpc" --python_out="$WORK/stubs" \
  --grpc_python_out="$WORK/stubs" echo.proto
taskset -c "$PROXY_CPU" "$PY" "$ROOT/tests/support/grpc/server.py" --stubs "$WORK/stubs" >"$WORK/grpc.out" 2>&1 &
GRPC_PID=$!; PIDS+=("$GRPC_PID")
for _ in $(seq 1 100); do grep -q READY "$WORK/grpc.out" && break; sleep 0.1; done
GRPC_PORT=$(awk '/READY/{print $2}' "$WORK/grpc.out")
[ -n "$GRPC_PORT" ] || { echo "grpc.sh: server.py did not start:"; cat "$WORK/grpc.out"; exit 1; } >&2

# Who(Req{text: "hi"}): the 5-byte gRPC frame header, then the protobuf message.
printf '\x00\x00\x00\x00\x04\x0a\x02hi' >"$WORK/who.bin"

# --- nginx: one server, HTTP/1.1 and h2c ------------------------------------------------------
H1_PORT=$(free_port); H2_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$H1_PORT; location / { return 200 "ok"; } }
  server { listen 127.0.0.1:$H2_PORT http2; location / { return 200 "ok"; } }
}
EOF
taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=("$!")
wait_port "$H1_PORT"; wait_port "$H2_PORT"

# --- portcullis ----------------------------------------------------------------------------
P_PORT=$(free_port)
cat >"$WORK/portcullis.toml" <<EOF
[server]
listen = "127.0.0.1:$P_PORT"

[[route]]
name = "grpc"
path = "/portcullis.test.Echo"
upstream = "h2c://127.0.0.1:$GRPC_PORT"
auth = "none"

[[route]]
name = "h1"
path = "/h1"
upstream = "http://127.0.0.1:$H1_PORT"
auth = "none"

[[route]]
name = "h2"
path = "/h2"
upstream = "h2c://127.0.0.1:$H2_PORT"
auth = "none"
EOF
RUST_LOG=warn taskset -c "$PROXY_CPU" "$BIN" run --config "$WORK/portcullis.toml" 2>"$WORK/portcullis.log" &
P_PID=$!; PIDS+=("$P_PID")
wait_port "$P_PORT"

# --- rows ----------------------------------------------------------------------------------
HZ=$(getconf CLK_TCK)
rows=()
# run NAME URL PID [h2load args...]: one measured h2load run; the CPU of PID per request.
run() {
  local name=$1 url=$2 pid=$3; shift 3
  local t0 t1 out reqs rps
  # warm-up (not measured)
  taskset -c "$LOAD_CPU" h2load -c "$CONNECTIONS" -m "$STREAMS" -D "${WARMUP%s}" "$@" "$url" >/dev/null
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c "$LOAD_CPU" h2load -c "$CONNECTIONS" -m "$STREAMS" -D "${DURATION%s}" "$@" "$url")
  t1=$(cpu_ticks "$pid")
  echo "$out" >"$WORK/row-${#rows[@]}.h2load"
  reqs=$(echo "$out" | awk '/^requests:/{print $8}')
  rps=$(echo "$out" | awk '/^finished in/{gsub(",","",$4); print $4}')
  local failed; failed=$(echo "$out" | awk '/^requests:/{print $10}')
  local status; status=$(echo "$out" | awk '/^status codes:/{print $3}')
  local cpu_us; cpu_us=$(awk -v d="$((t1 - t0))" -v hz="$HZ" -v n="$reqs" 'BEGIN{ if (n > 0) printf "%.1f", d / hz * 1e6 / n; else print "-" }')
  rows+=("| $name | $rps | $cpu_us | $reqs | $failed | $status × 2xx |")
  echo "$name: $rps req/s, $cpu_us µs CPU/req ($reqs ok, $failed failed, $status 2xx)" >&2
}
GRPC_ARGS=(-d "$WORK/who.bin" -H "content-type: application/grpc" -H "te: trailers")
run "gRPC unary, direct (grpcio server CPU)" "http://127.0.0.1:$GRPC_PORT/portcullis.test.Echo/Who" "$GRPC_PID" "${GRPC_ARGS[@]}"
run "gRPC unary, through portcullis (h2c upstream)" "http://127.0.0.1:$P_PORT/portcullis.test.Echo/Who" "$P_PID" "${GRPC_ARGS[@]}"
run "GET, HTTP/1.1 upstream (nginx)" "http://127.0.0.1:$P_PORT/h1/x" "$P_PID"
run "GET, HTTP/2 upstream (nginx, h2c)" "http://127.0.0.1:$P_PORT/h2/x" "$P_PID"

echo
echo "portcullis: $BIN; h2load -c $CONNECTIONS -m $STREAMS, $DURATION after $WARMUP warm-up"
echo "| row | req/s | CPU µs/req | requests | failed | answers |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"

#!/usr/bin/env bash
# Throughput / latency / CPU-per-request benchmark: portcullis vs. nginx as a plain reverse proxy,
# both in front of the same static upstream, on loopback. See tests/bench/README.md.
#
#   tests/bench/bench.sh                     # builds target/release/portcullis first
#   PORTCULLIS_BIN=path/to/portcullis tests/bench/bench.sh
#   DURATION=30s CONNECTIONS=128 tests/bench/bench.sh
#   BENCH_DRY_RUN=1 tests/bench/bench.sh     # no portcullis: its row measures the nginx proxy
#                                            # again (tests the script itself)
#
# Environment:
#   DURATION      wrk measurement duration per target (default 10s)
#   WARMUP        wrk warm-up duration per target, not measured (default 2s)
#   CONNECTIONS   wrk connections (default 64); wrk uses one thread
#   LOAD_CPU      CPU that wrk is pinned to (default 0)
#   PROXY_CPU     CPU that the proxies and the upstream are pinned to (default 1)
#   TARGETS       targets to run, in order (default "static nginx-proxy portcullis-none")
#   KEEP_WORKDIR  1 = keep the temporary folder (configs, logs, raw wrk output)
#
# Needs: wrk, nginx, taskset, getconf, curl; cargo unless PORTCULLIS_BIN is set.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
LOAD_CPU=${LOAD_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
TARGETS=${TARGETS:-static nginx-proxy portcullis-none}
BASELINE=nginx-proxy
DRY_RUN=${BENCH_DRY_RUN:-0}
CLK_TCK=$(getconf CLK_TCK)

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] error: $*" >&2; exit 1; }

for tool in wrk nginx taskset getconf curl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y wrk nginx util-linux curl)"
done
[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 CPUs; wrk and the proxy will share one"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")
STARTED_PIDS=()

WRK_PID=
cleanup() {
    local pid
    if [ -n "$WRK_PID" ]; then kill -TERM "$WRK_PID" 2>/dev/null || true; fi
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        # wait up to 5 s, then SIGKILL
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP_WORKDIR:-0}" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ helpers

# free_ports N: N distinct free loopback TCP ports
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# wait_http URL PID NAME LOG: until URL answers 200 (max 15 s) or PID dies
wait_http() {
    local url=$1 pid=$2 name=$3 logf=$4
    for _ in $(seq 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during startup; last lines of $logf:"
            tail -n 30 "$logf" >&2 || true
            exit 1
        fi
        if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" = 200 ]; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not answer 200 on $url within 15 s; last lines of $logf:"
    tail -n 30 "$logf" >&2 || true
    exit 1
}

# proc_tree PID: PID and its direct children (nginx master + workers; portcullis has none)
proc_tree() {
    echo "$1"
    pgrep -P "$1" || true
}

# cpu_ticks PID: utime+stime (all threads) of PID and its direct children, in clock ticks
cpu_ticks() {
    local total=0 p stat rest
    for p in $(proc_tree "$1"); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${stat##*) }                # fields from 3 on ("comm" may contain spaces)
        # shellcheck disable=SC2086
        set -- $rest                      # $1 = field 3 (state) → utime = $12, stime = $13
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# mem_kb PID FIELD: sum of FIELD (VmRSS, VmHWM) in kB over PID and its direct children
mem_kb() {
    local total=0 p v
    for p in $(proc_tree "$1"); do
        v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# to_ms VALUE: wrk latency ("812.00us", "1.23ms", "1.01s", "2.00m") → milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# ------------------------------------------------------------------ servers

# start_static: nginx answering 200 "ok\n" on STATIC_PORT; sets STATIC_PID
start_static() {
    local dir=$WORK/static
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$STATIC_PORT;
        location / { return 200 "ok\n"; }
    }
}
EOF
    taskset -c "$PROXY_CPU" nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" \
        >"$dir/logs/stdout.log" 2>&1 &
    STATIC_PID=$!
    STARTED_PIDS+=("$STATIC_PID")
    wait_http "http://127.0.0.1:$STATIC_PORT/" "$STATIC_PID" "static nginx" "$dir/logs/error.log"
    log "static upstream: nginx pid $STATIC_PID on 127.0.0.1:$STATIC_PORT"
}

# start_nginx_proxy: nginx reverse proxy to the static upstream on NGINX_PORT; sets NGINX_PID
start_nginx_proxy() {
    local dir=$WORK/nginx-proxy
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream static_upstream {
        server 127.0.0.1:$STATIC_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://static_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    taskset -c "$PROXY_CPU" nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" \
        >"$dir/logs/stdout.log" 2>&1 &
    NGINX_PID=$!
    STARTED_PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" "nginx proxy" "$dir/logs/error.log"
    log "nginx proxy: pid $NGINX_PID on 127.0.0.1:$NGINX_PORT"
}

# start_portcullis: portcullis (release) with one auth=none route to the static upstream on
# PORTCULLIS_PORT; sets PORTCULLIS_PID
start_portcullis() {
    local dir=$WORK/portcullis
    mkdir -p "$dir"
    cat >"$dir/portcullis.toml" <<EOF
[server]
listen = "127.0.0.1:$PORTCULLIS_PORT"

[[route]]
name = "bench-none"
path = "/"
upstream = "http://127.0.0.1:$STATIC_PORT"
auth = "none"
EOF
    RUST_LOG=warn taskset -c "$PROXY_CPU" "$PORTCULLIS_BIN" run --config "$dir/portcullis.toml" \
        >"$dir/portcullis.log" 2>&1 &
    PORTCULLIS_PID=$!
    STARTED_PIDS+=("$PORTCULLIS_PID")
    wait_http "http://127.0.0.1:$PORTCULLIS_PORT/" "$PORTCULLIS_PID" "portcullis" "$dir/portcullis.log"
    log "portcullis: pid $PORTCULLIS_PID on 127.0.0.1:$PORTCULLIS_PORT ($PORTCULLIS_BIN)"
}

# ------------------------------------------------------------------ measurement

# run_wrk TIMEOUT_S WRK_ARGS...: wrk -t1 -cCONNECTIONS pinned to LOAD_CPU, killed after TIMEOUT_S.
# Runs in the background and is waited for, so that SIGINT/SIGTERM reach the EXIT trap at once.
run_wrk() {
    local limit=$1 rc=0
    shift
    timeout "$limit" taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" "$@" &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=
    [ "$rc" -eq 0 ] || die "wrk $* failed (exit $rc)"
}

# results, indexed by target name
declare -A R_RPS R_P50 R_P99 R_CPU_US R_RSS R_HWM R_ERRORS R_REQS
RESULT_ORDER=()

# run_target NAME URL PID [extra wrk args, e.g. -H 'Authorization: Bearer …' or -s script.lua]
#   warms up, then measures URL with wrk (pinned to LOAD_CPU) while reading PID's CPU time
#   (PID and its direct children) and, afterwards, its memory.
run_target() {
    local name=$1 url=$2 pid=$3
    shift 3
    local out=$WORK/wrk-$name.txt secs
    secs=$(awk -v d="$DURATION" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; if (d ~ /h$/) n *= 3600; print int(n) }')

    log "$name: warm-up $WARMUP"
    run_wrk 120 -d"$WARMUP" "$@" "$url" >/dev/null
    log "$name: measuring $DURATION (wrk -t1 -c$CONNECTIONS --latency $* $url)"
    local before after
    before=$(cpu_ticks "$pid")
    run_wrk $((secs + 60)) -d"$DURATION" --latency "$@" "$url" >"$out"
    after=$(cpu_ticks "$pid")

    local reqs rps p50 p99 errors
    reqs=$(awk '/requests in/ { print $1; exit }' "$out")
    rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2; exit }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2; exit }' "$out")")
    # socket errors (connect/read/write/timeout) + non-2xx/3xx responses
    errors=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
                  /Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' "$out")
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { cat "$out" >&2; die "$name: wrk reported no requests"; }

    R_REQS[$name]=$reqs
    R_RPS[$name]=$rps
    R_P50[$name]=$p50
    R_P99[$name]=$p99
    R_ERRORS[$name]=$errors
    R_CPU_US[$name]=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" \
        'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    R_RSS[$name]=$(mem_kb "$pid" VmRSS)
    R_HWM[$name]=$(mem_kb "$pid" VmHWM)
    RESULT_ORDER+=("$name")
    if [ "$errors" -gt 0 ]; then
        log "$name: WARNING $errors errors / non-2xx responses (see $out)"
    fi
}

print_results() {
    echo
    echo "wrk -t1 -c$CONNECTIONS -d$DURATION --latency (warm-up $WARMUP); wrk on CPU $LOAD_CPU," \
        "proxies + upstream on CPU $PROXY_CPU; CPU = utime+stime of the measured process(es)"
    printf '%-18s %12s %10s %10s %14s %10s %10s %8s\n' \
        target req/s p50_ms p99_ms cpu_us/req rss_kB hwm_kB errors
    local n
    for n in "${RESULT_ORDER[@]}"; do
        printf '%-18s %12s %10s %10s %14s %10s %10s %8s\n' "$n" "${R_RPS[$n]}" "${R_P50[$n]}" \
            "${R_P99[$n]}" "${R_CPU_US[$n]}" "${R_RSS[$n]}" "${R_HWM[$n]}" "${R_ERRORS[$n]}"
    done
    echo
    if [ -n "${R_RPS[$BASELINE]:-}" ]; then
        for n in "${RESULT_ORDER[@]}"; do
            case $n in portcullis-*) ;; *) continue ;; esac
            awk -v n="$n" -v b="$BASELINE" -v r1="${R_RPS[$n]}" -v r0="${R_RPS[$BASELINE]}" \
                -v c1="${R_CPU_US[$n]}" -v c0="${R_CPU_US[$BASELINE]}" \
                -v p1="${R_P99[$n]}" -v p0="${R_P99[$BASELINE]}" 'BEGIN {
                    printf "%s / %s:  req/s %.2fx   cpu/req %.2fx   p99 %.2fx\n", n, b,
                        r1 / r0, (c0 > 0 ? c1 / c0 : 0), (p0 > 0 ? p1 / p0 : 0) }'
        done
    fi
    [ "$DRY_RUN" = 1 ] && [ "$needs_portcullis" = 1 ] && echo "(BENCH_DRY_RUN=1: the portcullis-* rows measured the nginx proxy)"
    return 0
}

# ------------------------------------------------------------------ main

needs_portcullis=0
case " $TARGETS " in *" portcullis-"*) needs_portcullis=1 ;; esac

if [ "$needs_portcullis" = 1 ] && [ "$DRY_RUN" != 1 ]; then
    if [ -z "${PORTCULLIS_BIN:-}" ]; then
        log "building release binary (cargo build --release)"
        (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
        PORTCULLIS_BIN=$ROOT/target/release/portcullis
    fi
    [ -x "$PORTCULLIS_BIN" ] || die "PORTCULLIS_BIN=$PORTCULLIS_BIN is not an executable"
fi

read -r STATIC_PORT NGINX_PORT PORTCULLIS_PORT <<<"$(free_ports 3)"
start_static
case " $TARGETS " in *" nginx-proxy "*|*" portcullis-"*) start_nginx_proxy ;; esac
if [ "$needs_portcullis" = 1 ]; then
    if [ "$DRY_RUN" = 1 ]; then
        log "BENCH_DRY_RUN=1: portcullis-* targets measure the nginx proxy instead"
        PORTCULLIS_PORT=$NGINX_PORT
        PORTCULLIS_PID=$NGINX_PID
    else
        start_portcullis
    fi
fi

for target in $TARGETS; do
    case $target in
        static)          run_target static "http://127.0.0.1:$STATIC_PORT/" "$STATIC_PID" ;;
        nginx-proxy)     run_target nginx-proxy "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" ;;
        portcullis-none) run_target portcullis-none "http://127.0.0.1:$PORTCULLIS_PORT/" "$PORTCULLIS_PID" ;;
        # Later targets follow the same pattern, e.g.
        #   portcullis-bearer) run_target portcullis-bearer "http://127.0.0.1:$PORTCULLIS_PORT/api/" \
        #                          "$PORTCULLIS_PID" -H "Authorization: Bearer $TOKEN" ;;
        #   portcullis-login)  run_target portcullis-login "…" "$PORTCULLIS_PID" -H "Cookie: $COOKIE" ;;
        #   apache-oidc)       start_apache; run_target apache-oidc "…" "$APACHE_PID" -s "$WORK/cookie.lua" ;;
        *) die "unknown target $target" ;;
    esac
done

print_results
exit 0

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
#   TARGETS       targets to run, in order (default "static nginx-proxy portcullis-none");
#                 bearer targets (need node): portcullis-bearer (TOKENS distinct RS256 JWTs
#                 round-robin, route requires role admin, validated-token cache on),
#                 portcullis-bearer-nocache (same, token_cache = false: every request verified),
#                 apache-oidc (Apache httpd + mod_auth_openidc, AuthType oauth20, same tokens,
#                 same JWKS, Require claim roles:admin), portcullis-introspect (TOKENS opaque
#                 tokens from tests/provider, RFC 7662 introspection, cache on). E.g.
#                 TARGETS="nginx-proxy portcullis-bearer portcullis-bearer-nocache apache-oidc portcullis-introspect"
#                 login targets (need node, and redis-server for the Redis one): portcullis-login
#                 (a browser session cookie from a real login at tests/provider, cookie store, route
#                 requires role admin), portcullis-login-redis (the same with store = "redis", a
#                 second portcullis process and a local redis-server). E.g.
#                 TARGETS="nginx-proxy portcullis-none portcullis-login portcullis-login-redis"
#                 hyper-floor: a minimal proxy on hyper's server + pooled client and nothing
#                 else (tests/bench/floor.rs), the ceiling of any hyper-based proxy here. E.g.
#                 TARGETS="nginx-proxy hyper-floor portcullis-none"
#                 The same request as an auth target, forwarded without any check: nginx-proxy-bearer
#                 and hyper-floor-bearer (the bearer tokens), nginx-proxy-login and hyper-floor-login
#                 (the session cookie; needs the login setup). What carrying the token or cookie
#                 alone costs, apart from verifying it. hyper-floor-contract and
#                 hyper-floor-contract-bearer: the floor also doing the header work the contract
#                 requires of every proxied request (floor.rs --contract).
#                 TLS targets (need h2load, Debian nghttp2-client), each against nginx-tls-*
#                 (nginx, same static upstream), hyper-floor-tls-* (the floor terminating TLS with
#                 portcullis's rustls configuration) and portcullis-tls-*, all with the same P-256
#                 certificate: *-tls-h2 (h2load, TLS + HTTP/2, TLS_H2_CONNECTIONS × TLS_H2_STREAMS),
#                 *-tls-h1 (h2load --h1, TLS + HTTP/1.1 keep-alive, TLS_H1_CONNECTIONS) and
#                 *-tls-handshake (batches of HANDSHAKE_BATCH new TLS connections with one HTTP/2
#                 request each, for DURATION: req/s = new connections/s, cpu_us/req = per
#                 connection). E.g.
#                 TARGETS="nginx-tls-h2 hyper-floor-tls-h2 portcullis-tls-h2 nginx-tls-h1 hyper-floor-tls-h1 portcullis-tls-h1 nginx-tls-handshake hyper-floor-tls-handshake portcullis-tls-handshake"
#   TLS_H2_CONNECTIONS / TLS_H2_STREAMS   h2 rows: connections (default 32) × streams each (10)
#   TLS_H1_CONNECTIONS  h1-over-TLS rows: keep-alive connections (default 64)
#   HANDSHAKE_BATCH     handshake rows: connections opened at once per h2load run (default 64)
#   TOKENS        distinct tokens for the bearer targets (default 1000)
#   FLOOR_BIN     the hyper-floor binary (default: cargo build --release --example hyper-floor)
#   KEEP_WORKDIR  1 = keep the temporary folder (configs, logs, raw wrk output)
#   CALLGRIND     1 = run portcullis and the floor under valgrind's callgrind (instrumentation on
#                 only while a portcullis-* or hyper-floor* target is measured) and add
#                 instructions/request per row:
#                 load-independent, for comparing builds on the none, bearer and login paths. E.g.
#                 CALLGRIND=1 DURATION=5s TARGETS="portcullis-none portcullis-bearer portcullis-login"
#
# Needs: wrk, nginx, taskset, getconf, curl; cargo unless PORTCULLIS_BIN is set; node for the
# bearer and login targets; apache2 + libapache2-mod-auth-openidc for apache-oidc; redis-server
# for portcullis-login-redis.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
LOAD_CPU=${LOAD_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
TARGETS=${TARGETS:-static nginx-proxy portcullis-none}
TOKENS=${TOKENS:-1000}
TLS_H2_CONNECTIONS=${TLS_H2_CONNECTIONS:-32}
TLS_H2_STREAMS=${TLS_H2_STREAMS:-10}
TLS_H1_CONNECTIONS=${TLS_H1_CONNECTIONS:-64}
HANDSHAKE_BATCH=${HANDSHAKE_BATCH:-64}
# h2load's own warm-up in the steady-state TLS rows: its connections' handshakes happen then,
# outside the measurement (longer under callgrind, where a handshake takes ~50× as long)
H2LOAD_WARMUP=${H2LOAD_WARMUP:-2s}
BASELINE=nginx-proxy
DRY_RUN=${BENCH_DRY_RUN:-0}
CALLGRIND=${CALLGRIND:-0}
VG_WRAP=()
WAIT_TRIES=150
CLK_TCK=$(getconf CLK_TCK)

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] error: $*" >&2; exit 1; }

for tool in wrk nginx taskset getconf curl openssl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y wrk nginx util-linux curl)"
done
[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 CPUs; wrk and the proxy will share one"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")
# a fresh session secret per run (published ones are refused by the proxy)
BENCH_SESSION_SECRET=$(openssl rand -hex 32)
if [ "$CALLGRIND" = 1 ]; then
    for tool in valgrind callgrind_control callgrind_annotate; do
        command -v "$tool" >/dev/null || die "CALLGRIND=1 needs $tool (apt-get install -y valgrind)"
    done
    VG_WRAP=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$WORK/callgrind.out.%p")
    WAIT_TRIES=900
    H2LOAD_WARMUP=${H2LOAD_WARMUP_CALLGRIND:-6s}
fi
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
    for _ in $(seq "$WAIT_TRIES"); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during startup; last lines of $logf:"
            tail -n 30 "$logf" >&2 || true
            exit 1
        fi
        if [ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" = 200 ]; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not answer 200 on $url within $((WAIT_TRIES / 10)) s; last lines of $logf:"
    tail -n 30 "$logf" >&2 || true
    exit 1
}

# proc_tree PID: PID and its direct children (nginx master + workers; portcullis has none)
proc_tree() {
    echo "$1"
    pgrep -P "$1" || true
}

# cpu_ticks PID: utime+stime (all threads) of PID and its direct children, and stime alone, in
# clock ticks ("TOTAL SYSTEM")
cpu_ticks() {
    local total=0 sys=0 p stat rest
    for p in $(proc_tree "$1"); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${stat##*) }                # fields from 3 on ("comm" may contain spaces)
        # shellcheck disable=SC2086
        set -- $rest                      # $1 = field 3 (state) → utime = $12, stime = $13
        total=$((total + ${12} + ${13}))
        sys=$((sys + ${13}))
    done
    echo "$total $sys"
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
        # the bench issuer (bearer targets): discovery and JWKS as static files
        location = /.well-known/openid-configuration { default_type application/json; alias $WORK/issuer/openid-configuration.json; }
        location = /jwks { default_type application/json; alias $WORK/issuer/jwks.json; }
    }
    # the same JWKS over https: mod_auth_openidc refuses an http jwks_uri
    server {
        listen 127.0.0.1:$STATIC_TLS_PORT ssl;
        ssl_certificate $WORK/issuer/tls.crt;
        ssl_certificate_key $WORK/issuer/tls.key;
        location = /jwks { default_type application/json; alias $WORK/issuer/jwks.json; }
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

# start_nginx_proxy [log]: nginx reverse proxy to the static upstream on NGINX_PORT; sets
# NGINX_PID. With `log`: a second instance on NGINX_LOG_PORT whose access_log is on (nginx's
# default: the combined format, one write per request, to a file); sets NGINX_LOG_PID.
start_nginx_proxy() {
    local variant=${1:-} dir=$WORK/nginx-proxy port=$NGINX_PORT access="access_log off;"
    if [ "$variant" = log ]; then
        dir=$WORK/nginx-proxy-log port=$NGINX_LOG_PORT access="access_log $WORK/nginx-proxy-log/logs/access.log;"
    fi
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    $access
    keepalive_requests 1000000;
    upstream static_upstream {
        server 127.0.0.1:$STATIC_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://static_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
$([ "$variant" = log ] || nginx_tls_server)
}
EOF
    taskset -c "$PROXY_CPU" nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" \
        >"$dir/logs/stdout.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/" "$pid" "nginx proxy $variant" "$dir/logs/error.log"
    log "nginx proxy $variant: pid $pid on 127.0.0.1:$port"
    if [ "$variant" = log ]; then NGINX_LOG_PID=$pid; else NGINX_PID=$pid; fi
}

# start_portcullis_log: a second portcullis with the one auth=none route and the access log on
# (RUST_LOG=info, the default; text lines to a file) on PORTCULLIS_LOG_PORT; sets
# PORTCULLIS_LOG_PID
start_portcullis_log() {
    local dir=$WORK/portcullis-log
    mkdir -p "$dir"
    cat >"$dir/portcullis.toml" <<EOF
[server]
listen = "127.0.0.1:$PORTCULLIS_LOG_PORT"

[[route]]
name = "bench-none"
path = "/"
upstream = "http://127.0.0.1:$STATIC_PORT"
auth = "none"
EOF
    RUST_LOG=info taskset -c "$PROXY_CPU" "$PORTCULLIS_BIN" run --config "$dir/portcullis.toml" \
        >"$dir/portcullis.log" 2>&1 &
    PORTCULLIS_LOG_PID=$!
    STARTED_PIDS+=("$PORTCULLIS_LOG_PID")
    wait_http "http://127.0.0.1:$PORTCULLIS_LOG_PORT/" "$PORTCULLIS_LOG_PID" "portcullis (log on)" "$dir/portcullis.log"
    log "portcullis (access log on): pid $PORTCULLIS_LOG_PID on 127.0.0.1:$PORTCULLIS_LOG_PORT"
}

# nginx_tls_server: the TLS rows' server block (nginx-tls-*): the same proxying over TLS with
# the bench's P-256 certificate, HTTP/2 and HTTP/1.1 by ALPN; nothing when no TLS row runs
nginx_tls_server() {
    [ "$needs_tls" = 1 ] || return 0
    cat <<EOF
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl http2;
        ssl_certificate $WORK/tls/tls.crt;
        ssl_certificate_key $WORK/tls/tls.key;
        # nginx 1.22's default lacks TLSv1.3, which rustls (portcullis, the floor) negotiates
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://static_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}

# start_floor_tls: the hyper-floor example terminating TLS on FLOOR_TLS_PORT; sets FLOOR_TLS_PID
start_floor_tls() {
    [ -x "$FLOOR_BIN" ] || die "FLOOR_BIN=$FLOOR_BIN is not an executable"
    mkdir -p "$WORK/floor"
    taskset -c "$PROXY_CPU" "${VG_WRAP[@]}" "$FLOOR_BIN" "127.0.0.1:$FLOOR_TLS_PORT" "127.0.0.1:$STATIC_PORT" \
        --tls "$WORK/tls/tls.crt" "$WORK/tls/tls.key" >"$WORK/floor/tls-stderr.log" 2>&1 &
    FLOOR_TLS_PID=$!
    STARTED_PIDS+=("$FLOOR_TLS_PID")
    wait_http "https://127.0.0.1:$FLOOR_TLS_PORT/" "$FLOOR_TLS_PID" "hyper-floor (TLS)" "$WORK/floor/tls-stderr.log"
    log "hyper-floor (TLS): pid $FLOOR_TLS_PID on 127.0.0.1:$FLOOR_TLS_PORT"
}

# start_floor: the hyper-floor example proxy to the static upstream on FLOOR_PORT; sets FLOOR_PID
start_floor() {
    [ -x "$FLOOR_BIN" ] || die "FLOOR_BIN=$FLOOR_BIN is not an executable"
    mkdir -p "$WORK/floor"
    taskset -c "$PROXY_CPU" "${VG_WRAP[@]}" "$FLOOR_BIN" "127.0.0.1:$FLOOR_PORT" "127.0.0.1:$STATIC_PORT" \
        >"$WORK/floor/stderr.log" 2>&1 &
    FLOOR_PID=$!
    STARTED_PIDS+=("$FLOOR_PID")
    wait_http "http://127.0.0.1:$FLOOR_PORT/" "$FLOOR_PID" "hyper-floor" "$WORK/floor/stderr.log"
    log "hyper-floor: pid $FLOOR_PID on 127.0.0.1:$FLOOR_PORT"
}

# start_floor_contract: the hyper-floor example with --contract on FLOOR_CONTRACT_PORT; sets
# FLOOR_CONTRACT_PID
start_floor_contract() {
    [ -x "$FLOOR_BIN" ] || die "FLOOR_BIN=$FLOOR_BIN is not an executable"
    mkdir -p "$WORK/floor"
    taskset -c "$PROXY_CPU" "${VG_WRAP[@]}" "$FLOOR_BIN" "127.0.0.1:$FLOOR_CONTRACT_PORT" "127.0.0.1:$STATIC_PORT" \
        --contract >"$WORK/floor/contract-stderr.log" 2>&1 &
    FLOOR_CONTRACT_PID=$!
    STARTED_PIDS+=("$FLOOR_CONTRACT_PID")
    wait_http "http://127.0.0.1:$FLOOR_CONTRACT_PORT/" "$FLOOR_CONTRACT_PID" "hyper-floor (contract)" "$WORK/floor/contract-stderr.log"
    log "hyper-floor (contract): pid $FLOOR_CONTRACT_PID on 127.0.0.1:$FLOOR_CONTRACT_PORT"
}

# start_portcullis: portcullis (release) with one auth=none route to the static upstream on
# PORTCULLIS_PORT; sets PORTCULLIS_PID
start_portcullis() {
    local dir=$WORK/portcullis
    mkdir -p "$dir"
    cat >"$dir/portcullis.toml" <<EOF
[server]
listen = "127.0.0.1:$PORTCULLIS_PORT"

EOF
    if [ "$needs_tls" = 1 ]; then
        cat >>"$dir/portcullis.toml" <<EOF
[server.tls]
listen = "127.0.0.1:$PORTCULLIS_TLS_PORT"
cert = "$WORK/tls/tls.crt"
key = "$WORK/tls/tls.key"
redirect_http = false

EOF
    fi
    if [ "$needs_tokens" = 1 ]; then
        cat >>"$dir/portcullis.toml" <<EOF
[providers.bench]
issuer = "$BENCH_ISSUER"
audiences = ["portcullis-api"]

[providers.bench-nocache]
issuer = "$BENCH_ISSUER"
audiences = ["portcullis-api"]
token_cache = false

[[route]]
name = "bench-bearer"
path = "/api"
upstream = "http://127.0.0.1:$STATIC_PORT"
auth = "bearer"
provider = "bench"
require_roles = ["admin"]

[[route]]
name = "bench-bearer-nocache"
path = "/nocache"
upstream = "http://127.0.0.1:$STATIC_PORT"
auth = "bearer"
provider = "bench-nocache"
require_roles = ["admin"]
EOF
    fi
    if [ -n "${OP_ISSUER:-}" ]; then
        cat >>"$dir/portcullis.toml" <<EOF
[providers.op]
issuer = "$OP_ISSUER"
audiences = ["portcullis-api"]
[providers.op.introspection]
client_id = "introspector-basic"
client_secret = "introspector-secret"
cache = "300s"

[[route]]
name = "bench-introspect"
path = "/introspect"
upstream = "http://127.0.0.1:$STATIC_PORT"
auth = "bearer"
provider = "op"
require_roles = ["admin"]
EOF
    fi
    if [ "$needs_login" = 1 ]; then login_config cookie >>"$dir/portcullis.toml"; fi
    cat >>"$dir/portcullis.toml" <<EOF
[[route]]
name = "bench-none"
path = "/"
upstream = "http://127.0.0.1:$STATIC_PORT"
auth = "none"
EOF
    RUST_LOG=warn taskset -c "$PROXY_CPU" "${VG_WRAP[@]}" "$PORTCULLIS_BIN" run --config "$dir/portcullis.toml" \
        >"$dir/portcullis.log" 2>&1 &
    PORTCULLIS_PID=$!
    STARTED_PIDS+=("$PORTCULLIS_PID")
    wait_http "http://127.0.0.1:$PORTCULLIS_PORT/" "$PORTCULLIS_PID" "portcullis" "$dir/portcullis.log"
    log "portcullis: pid $PORTCULLIS_PID on 127.0.0.1:$PORTCULLIS_PORT ($PORTCULLIS_BIN)"
}

# login_config STORE: the provider, [session] and the /login route of the login targets
login_config() {
    cat <<EOF
[providers.login]
issuer = "$OP_ISSUER"
client_id = "web"
client_secret = "web-secret"

[session]
secret = "$BENCH_SESSION_SECRET"
store = "$1"
redis_url = "redis://127.0.0.1:$REDIS_PORT/0"

[[route]]
name = "bench-login"
path = "/login"
upstream = "http://127.0.0.1:$STATIC_PORT"
auth = "login"
provider = "login"
require_roles = ["admin"]

EOF
}

# start_redis: redis-server on REDIS_PORT (no persistence), pinned with the proxies
start_redis() {
    command -v redis-server >/dev/null || die "redis-server not found (apt-get install -y redis-server)"
    taskset -c "$PROXY_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    STARTED_PIDS+=("$REDIS_PID")
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break; sleep 0.1; done
    log "redis: pid $REDIS_PID on 127.0.0.1:$REDIS_PORT"
}

# start_portcullis_redis: a second portcullis with the Redis session store on
# PORTCULLIS_REDIS_PORT; sets PORTCULLIS_REDIS_PID
start_portcullis_redis() {
    local dir=$WORK/portcullis-redis
    mkdir -p "$dir"
    { printf '[server]\nlisten = "127.0.0.1:%s"\n\n' "$PORTCULLIS_REDIS_PORT"; login_config redis
      printf '[[route]]\nname = "bench-none"\npath = "/"\nupstream = "http://127.0.0.1:%s"\nauth = "none"\n' "$STATIC_PORT"
    } >"$dir/portcullis.toml"
    RUST_LOG=warn taskset -c "$PROXY_CPU" "${VG_WRAP[@]}" "$PORTCULLIS_BIN" run --config "$dir/portcullis.toml" \
        >"$dir/portcullis.log" 2>&1 &
    PORTCULLIS_REDIS_PID=$!
    STARTED_PIDS+=("$PORTCULLIS_REDIS_PID")
    wait_http "http://127.0.0.1:$PORTCULLIS_REDIS_PORT/" "$PORTCULLIS_REDIS_PID" "portcullis (redis)" "$dir/portcullis.log"
    log "portcullis (redis store): pid $PORTCULLIS_REDIS_PID on 127.0.0.1:$PORTCULLIS_REDIS_PORT"
}

# login_cookie PORT: logs in as alice at the portcullis on PORT through the provider's login
# form (curl, cookie jar) and prints the session cookie ("name=value")
login_cookie() {
    local port=$1 jar=$WORK/jar.$1 form value code=
    for _ in $(seq 50); do
        form=$(curl -s -c "$jar" -b "$jar" -L -o /dev/null -w '%{url_effective}' -H 'Accept: text/html' \
            "http://127.0.0.1:$port/login/" || true)
        case $form in *"/interaction/"*) break ;; esac
        sleep 0.2   # discovery not loaded yet
    done
    case $form in *"/interaction/"*) ;; *) die "login at portcullis :$port did not reach the provider's form ($form)" ;; esac
    curl -s -c "$jar" -b "$jar" -L -o /dev/null -H 'Accept: text/html' \
        -d 'prompt=login&login=alice&password=x' "$form" || die "login form post failed"
    value=$(awk '$6 == "portcullis" { v = $7 } END { print v }' "$jar")
    [ -n "$value" ] || die "no session cookie after logging in at portcullis :$port"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: portcullis=$value" "http://127.0.0.1:$port/login/")
    [ "$code" = 200 ] || die "portcullis :$port answered $code with the session cookie"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/login/")
    [ "$code" = 401 ] || die "portcullis :$port answered $code without a session"
    echo "portcullis=$value"
}

# mint_jwts: an RSA key, its JWKS + discovery (served by the static nginx) and TOKENS JWTs
mint_jwts() {
    BENCH_ISSUER="http://127.0.0.1:$STATIC_PORT"
    node "$ROOT/tests/bench/mint.mjs" jwt "$WORK/issuer" "$BENCH_ISSUER" "$TOKENS" \
        || die "minting JWTs failed"
    JWT_FILE=$WORK/issuer/tokens.txt
    log "minted $TOKENS RS256 JWTs for issuer $BENCH_ISSUER"
}

# start_op: the test OpenID provider (tests/provider) on LOAD_CPU, and TOKENS opaque tokens
start_op() {
    local dir=$WORK/op
    mkdir -p "$dir"
    [ -d "$ROOT/tests/provider/node_modules" ] \
        || (cd "$ROOT/tests/provider" && npm ci --no-audit --no-fund --loglevel=error) \
        || die "npm ci in tests/provider failed"
    PORT=0 STATE_DIR=$dir LOG_REQUESTS=0 ACCESS_TOKEN_TTL=14400 STORE_SIZE=$((TOKENS * 4 + 10000)) \
        CLIENT_REDIRECT_URIS="http://127.0.0.1:$PORTCULLIS_PORT/.auth/callback,http://127.0.0.1:$PORTCULLIS_REDIS_PORT/.auth/callback" \
        taskset -c "$LOAD_CPU" node "$ROOT/tests/provider/provider.mjs" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    OP_PID=$!
    STARTED_PIDS+=("$OP_PID")
    for _ in $(seq 300); do
        grep -q '^READY ' "$dir/stdout.log" 2>/dev/null && break
        kill -0 "$OP_PID" 2>/dev/null || { tail -n 20 "$dir/stderr.log" >&2; die "provider exited"; }
        sleep 0.1
    done
    OP_ISSUER=$(awk '/^READY / { print $2; exit }' "$dir/stdout.log")
    [ -n "$OP_ISSUER" ] || die "provider did not print READY"
    log "test provider: pid $OP_PID, issuer $OP_ISSUER"
    case " $TARGETS " in *" portcullis-introspect "*)
        node "$ROOT/tests/bench/mint.mjs" opaque "$dir" "$OP_ISSUER" "$TOKENS" || die "minting opaque tokens failed"
        OPAQUE_FILE=$dir/opaque.txt
        log "$TOKENS opaque tokens minted" ;;
    esac
}

# start_apache: Apache httpd (event MPM, one process) + mod_auth_openidc as an OAuth 2.0
# resource server in front of the static upstream: verifies each JWT against the bench JWKS and
# requires the claim roles ∋ admin, like the portcullis bearer route. Sets APACHE_PID.
start_apache() {
    local dir=$WORK/apache mods=/usr/lib/apache2/modules user=""
    mkdir -p "$dir"
    command -v apache2 >/dev/null || die "apache2 not found (apt-get install -y apache2 libapache2-mod-auth-openidc)"
    [ -f "$mods/mod_auth_openidc.so" ] || die "mod_auth_openidc not found (apt-get install -y libapache2-mod-auth-openidc)"
    [ "$(id -u)" = 0 ] && user=$'User www-data\nGroup www-data'
    cat >"$dir/httpd.conf" <<EOF
ServerRoot $dir
ServerName 127.0.0.1
Listen 127.0.0.1:$APACHE_PORT
PidFile $dir/httpd.pid
ErrorLog $dir/error.log
LogLevel warn
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authn_core_module $mods/mod_authn_core.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule authz_user_module $mods/mod_authz_user.so
LoadModule proxy_module $mods/mod_proxy.so
LoadModule proxy_http_module $mods/mod_proxy_http.so
LoadModule auth_openidc_module $mods/mod_auth_openidc.so
$user
ServerLimit 1
StartServers 1
ThreadLimit 128
ThreadsPerChild 128
MaxRequestWorkers 128
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60
OIDCCryptoPassphrase bench-passphrase-0123456789abcdef
OIDCOAuthVerifyJwksUri https://127.0.0.1:$STATIC_TLS_PORT/jwks
OIDCOAuthSSLValidateServer Off
OIDCOAuthAcceptTokenAs header
OIDCOAuthRemoteUserClaim sub
<Location />
    AuthType oauth20
    Require claim roles:admin
</Location>
ProxyPass / http://127.0.0.1:$STATIC_PORT/ keepalive=On
EOF
    taskset -c "$PROXY_CPU" apache2 -d "$dir" -f "$dir/httpd.conf" -DFOREGROUND >"$dir/stdout.log" 2>&1 &
    APACHE_PID=$!
    STARTED_PIDS+=("$APACHE_PID")
    local tok code=
    tok=$(head -n1 "$JWT_FILE")
    for _ in $(seq 150); do
        kill -0 "$APACHE_PID" 2>/dev/null || { cat "$dir/stdout.log" "$dir/error.log" >&2; die "apache exited"; }
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Authorization: Bearer $tok" \
            "http://127.0.0.1:$APACHE_PORT/api/" || true)
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || { tail -n 20 "$dir/error.log" >&2; die "apache + mod_auth_openidc answered $code to the bench token"; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APACHE_PORT/api/")" = 401 ] \
        || die "apache + mod_auth_openidc accepts requests without a token"
    log "apache + mod_auth_openidc: pid $APACHE_PID on 127.0.0.1:$APACHE_PORT"
}

# check_bearer PATH FILE: the portcullis route accepts the file's first token and refuses none
check_bearer() {
    local url="http://127.0.0.1:$PORTCULLIS_PORT$1" tok code=
    tok=$(head -n1 "$2")
    for _ in $(seq 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "$url" || true)
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || die "portcullis $1 answered $code to a valid token (see $WORK/portcullis/portcullis.log)"
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 401 ] || die "portcullis $1 accepts requests without a token"
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

# run_h2load TIMEOUT_S H2LOAD_ARGS...: h2load -t1 pinned to LOAD_CPU, killed after TIMEOUT_S
run_h2load() {
    local limit=$1 rc=0
    shift
    timeout "$limit" taskset -c "$LOAD_CPU" h2load -t1 "$@" &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=
    [ "$rc" -eq 0 ] || die "h2load $* failed (exit $rc)"
}

# run_handshakes SECS URL: h2load runs of HANDSHAKE_BATCH new TLS connections with one request
# each, until SECS have passed; prints each run's output, then "elapsed: SECONDS"
run_handshakes() {
    local secs=$1 url=$2 start now
    start=$(date +%s.%N)
    while :; do
        run_h2load 120 -c"$HANDSHAKE_BATCH" -n"$HANDSHAKE_BATCH" "$url"
        now=$(date +%s.%N)
        awk -v a="$start" -v b="$now" -v s="$secs" 'BEGIN { exit !(b - a < s) }' || break
    done
    awk -v a="$start" -v b="$now" 'BEGIN { printf "elapsed: %.3f\n", b - a }'
}

# load NAME SECONDS DURATION OUT URL [wrk args]: the row's load generator for DURATION into OUT:
# wrk for plain rows, h2load for the *-tls-* rows
load() {
    local name=$1 secs=$2 d=$3 out=$4 url=$5
    shift 5
    case $name in
        *-tls-h2) run_h2load $((secs + 60)) -c"$TLS_H2_CONNECTIONS" -m"$TLS_H2_STREAMS" -D"$d" "$url" >"$out" ;;
        *-tls-h1) run_h2load $((secs + 60)) --h1 -c"$TLS_H1_CONNECTIONS" -m1 -D"$d" "$url" >"$out" ;;
        *-tls-handshake) run_handshakes "$secs" "$url" >"$out" ;;
        *) run_wrk $((secs + 60)) -d"$d" --latency "$@" "$url" >"$out" ;;
    esac
}

# seconds DURATION: "10s", "2m", "5" → whole seconds
seconds() {
    awk -v d="$1" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; if (d ~ /h$/) n *= 3600; print int(n) }'
}

# measure_start: (run_target) zeroes callgrind's counters and switches it on when the row is
# counted, and reads the process's CPU time into `before`
measure_start() {
    if [ "$cg" = 1 ]; then
        callgrind_control --zero "$pid" >/dev/null 2>&1
        callgrind_control -i on "$pid" >/dev/null 2>&1
    fi
    read -r before before_sys <<<"$(cpu_ticks "$pid")"
}

# results, indexed by target name
declare -A R_RPS R_P50 R_P99 R_CPU_US R_SYS R_RSS R_HWM R_ERRORS R_REQS R_IR_TOTAL
RESULT_ORDER=()

# run_target NAME URL PID [extra wrk args, e.g. -H 'Authorization: Bearer …' or -s script.lua]
#   warms up, then measures URL with wrk (pinned to LOAD_CPU) while reading PID's CPU time
#   (PID and its direct children) and, afterwards, its memory.
run_target() {
    local name=$1 url=$2 pid=$3
    shift 3
    local out=$WORK/wrk-$name.txt secs
    secs=$(seconds "$DURATION")

    log "$name: warm-up $WARMUP"
    load "$name" "$(seconds "$WARMUP")" "$WARMUP" /dev/null "$url" "$@"
    log "$name: measuring $DURATION ($url $*)"
    local before after before_sys after_sys
    local cg=0
    if [ "$CALLGRIND" = 1 ]; then case $name in portcullis-*|hyper-floor*) cg=1 ;; esac; fi
    case $name in
        *-tls-h2|*-tls-h1)
            # Steady state only: h2load opens its connections (TLS handshakes) at the start of
            # its warm-up (--warm-up-time); the measurement starts when that ends, with h2load's
            # main duration, whose requests h2load counts.
            local hw=$H2LOAD_WARMUP rc=0
            case $name in
                *-tls-h2) set -- -c"$TLS_H2_CONNECTIONS" -m"$TLS_H2_STREAMS" ;;
                *) set -- --h1 -c"$TLS_H1_CONNECTIONS" -m1 ;;
            esac
            timeout $((secs + $(seconds "$hw") + 60)) taskset -c "$LOAD_CPU" h2load -t1 "$@" \
                --warm-up-time="$hw" -D"$DURATION" "$url" >"$out" &
            WRK_PID=$!
            sleep "$(seconds "$hw")"
            measure_start
            wait "$WRK_PID" || rc=$?
            WRK_PID=
            read -r after after_sys <<<"$(cpu_ticks "$pid")"
            [ "$rc" -eq 0 ] || die "h2load $* $url failed (exit $rc)" ;;
        *)
            measure_start
            load "$name" "$secs" "$DURATION" "$out" "$url" "$@"
            read -r after after_sys <<<"$(cpu_ticks "$pid")" ;;
    esac
    if [ "$cg" = 1 ]; then
        callgrind_control -i off "$pid" >/dev/null 2>&1
        local dumps_before dump
        dumps_before=$(ls "$WORK"/callgrind.out.* 2>/dev/null | wc -l)
        callgrind_control -d "$name" "$pid" >/dev/null 2>&1
        for _ in $(seq 100); do
            [ "$(ls "$WORK"/callgrind.out.* 2>/dev/null | wc -l)" -gt "$dumps_before" ] && break
            sleep 0.1
        done
        dump=$(ls -t "$WORK"/callgrind.out.* | head -1)
        R_IR_TOTAL[$name]=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    fi

    local reqs rps p50 p99 errors
    case $name in
        *-tls-*)
            # h2load: "requests: T total, S started, D done, OK succeeded, F failed, E errored,
            # TO timeout", "status codes: A 2xx, B 3xx, C 4xx, D 5xx"; no percentiles (p50 and
            # p99 show "-"); the handshake rows sum their runs and divide by the elapsed time
            reqs=$(awk '$1 == "requests:" { n += $8 } END { print n + 0 }' "$out")
            errors=$(awk '$1 == "requests:" { n += $10 + $12 + $14 }
                          $1 == "status" { n += $7 + $9 } END { print n + 0 }' "$out")
            case $name in
                *-tls-handshake) rps=$(awk -v n="$reqs" '$1 == "elapsed:" { printf "%.2f", n / $2 }' "$out") ;;
                *) rps=$(awk '$1 == "finished" { print $4; exit }' "$out") ;;
            esac
            p50=- p99=- ;;
        *)
            reqs=$(awk '/requests in/ { print $1; exit }' "$out")
            rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
            p50=$(to_ms "$(awk '$1 == "50%" { print $2; exit }' "$out")")
            p99=$(to_ms "$(awk '$1 == "99%" { print $2; exit }' "$out")")
            # socket errors (connect/read/write/timeout) + non-2xx/3xx responses
            errors=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
                          /Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' "$out") ;;
    esac
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { cat "$out" >&2; die "$name: wrk reported no requests"; }

    R_REQS[$name]=$reqs
    R_RPS[$name]=$rps
    R_P50[$name]=$p50
    R_P99[$name]=$p99
    R_ERRORS[$name]=$errors
    R_CPU_US[$name]=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" \
        'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    R_SYS[$name]=$(awk -v t=$((after - before)) -v s=$((after_sys - before_sys)) \
        'BEGIN { printf "%.0f", (t > 0 ? 100 * s / t : 0) }')
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
    printf '%-26s %12s %10s %10s %14s %6s %10s %10s %8s\n' \
        target req/s p50_ms p99_ms cpu_us/req sys_% rss_kB hwm_kB errors
    local n
    for n in "${RESULT_ORDER[@]}"; do
        printf '%-26s %12s %10s %10s %14s %6s %10s %10s %8s\n' "$n" "${R_RPS[$n]}" "${R_P50[$n]}" \
            "${R_P99[$n]}" "${R_CPU_US[$n]}" "${R_SYS[$n]}" "${R_RSS[$n]}" "${R_HWM[$n]}" "${R_ERRORS[$n]}"
    done
    echo
    if [ -n "${R_RPS[$BASELINE]:-}" ]; then
        for n in "${RESULT_ORDER[@]}"; do
            case $n in "$BASELINE"|*-tls-*) continue ;; esac
            awk -v n="$n" -v b="$BASELINE" -v r1="${R_RPS[$n]}" -v r0="${R_RPS[$BASELINE]}" \
                -v c1="${R_CPU_US[$n]}" -v c0="${R_CPU_US[$BASELINE]}" \
                -v p1="${R_P99[$n]}" -v p0="${R_P99[$BASELINE]}" 'BEGIN {
                    printf "%s / %s:  req/s %.2fx   cpu/req %.2fx   p99 %.2fx\n", n, b,
                        r1 / r0, (c0 > 0 ? c1 / c0 : 0), (p0 > 0 ? p1 / p0 : 0) }'
        done
    fi
    # plain rows against their floors: hyper alone, and hyper doing the contract's header work
    local pair
    for pair in portcullis-none:hyper-floor portcullis-none:hyper-floor-contract \
        portcullis-bearer:hyper-floor-bearer portcullis-bearer:hyper-floor-contract-bearer \
        portcullis-login:hyper-floor-login portcullis-login:hyper-floor-contract; do
        n=${pair%%:*} base=${pair#*:}
        [ -n "${R_RPS[$n]:-}" ] && [ -n "${R_RPS[$base]:-}" ] || continue
        awk -v n="$n" -v b="$base" -v r1="${R_RPS[$n]}" -v r0="${R_RPS[$base]}" \
            -v c1="${R_CPU_US[$n]}" -v c0="${R_CPU_US[$base]}" 'BEGIN {
                printf "%s / %s:  req/s %.2fx   cpu/req %.2fx\n", n, b, r1 / r0, (c0 > 0 ? c1 / c0 : 0) }'
    done
    # TLS rows: portcullis against nginx and against the TLS floor of the same kind
    local kind base
    for n in "${RESULT_ORDER[@]}"; do
        case $n in portcullis-tls-*) kind=${n#portcullis-} ;; *) continue ;; esac
        for base in "nginx-$kind" "hyper-floor-$kind"; do
            [ -n "${R_RPS[$base]:-}" ] || continue
            awk -v n="$n" -v b="$base" -v r1="${R_RPS[$n]}" -v r0="${R_RPS[$base]}" \
                -v c1="${R_CPU_US[$n]}" -v c0="${R_CPU_US[$base]}" 'BEGIN {
                    printf "%s / %s:  req/s %.2fx   cpu/req %.2fx\n", n, b, r1 / r0, (c0 > 0 ? c1 / c0 : 0) }'
        done
    done
    if [ -n "${R_RPS[apache-oidc]:-}" ]; then
        for n in "${RESULT_ORDER[@]}"; do
            case $n in portcullis-bearer*) ;; *) continue ;; esac
            awk -v n="$n" -v r1="${R_RPS[$n]}" -v r0="${R_RPS[apache-oidc]}" \
                -v c1="${R_CPU_US[$n]}" -v c0="${R_CPU_US[apache-oidc]}" \
                -v p1="${R_P99[$n]}" -v p0="${R_P99[apache-oidc]}" 'BEGIN {
                    printf "%s / apache-oidc:  req/s %.2fx   cpu/req %.2fx   p99 %.2fx\n", n,
                        r1 / r0, (c0 > 0 ? c1 / c0 : 0), (p0 > 0 ? p1 / p0 : 0) }'
        done
    fi
    if [ -n "${R_CPU_US[nginx-proxy-log]:-}" ] && [ -n "${R_CPU_US[nginx-proxy]:-}" ] \
        && [ -n "${R_CPU_US[portcullis-none-log]:-}" ] && [ -n "${R_CPU_US[portcullis-none]:-}" ]; then
        echo
        awk -v pl="${R_CPU_US[portcullis-none-log]}" -v p0="${R_CPU_US[portcullis-none]}" \
            -v nl="${R_CPU_US[nginx-proxy-log]}" -v n0="${R_CPU_US[nginx-proxy]}" 'BEGIN {
                dp = pl - p0; dn = nl - n0
                printf "access log cost (cpu us/req, log on - off): portcullis %.2f   nginx %.2f   ratio %s (target <= 1.5)\n",
                    dp, dn, (dn > 0 ? sprintf("%.2fx", dp / dn) : "n/a") }'
    fi
    if [ "$CALLGRIND" = 1 ]; then
        echo
        echo "instructions per request under callgrind (wrk's completed requests; counts only while measured):"
        for n in "${RESULT_ORDER[@]}"; do
            [ -n "${R_IR_TOTAL[$n]:-}" ] || continue
            awk -v n="$n" -v t="${R_IR_TOTAL[$n]}" -v r="${R_REQS[$n]}" \
                'BEGIN { printf "%-24s %12d requests %16d instructions %10d instructions/request\n", n, r, t, t / r }'
        done
    fi
    [ "$DRY_RUN" = 1 ] && [ "$needs_portcullis" = 1 ] && echo "(BENCH_DRY_RUN=1: the portcullis-* rows measured the nginx proxy)"
    return 0
}

# ------------------------------------------------------------------ main

needs_portcullis=0
case " $TARGETS " in *" portcullis-"*|*"-login "*) needs_portcullis=1 ;; esac
needs_tokens=0
case " $TARGETS " in *" portcullis-bearer"*|*" apache-oidc "*|*"-bearer "*) needs_tokens=1 ;; esac
needs_op=0
case " $TARGETS " in *" portcullis-introspect "*) needs_op=1 ;; esac
needs_login=0
case " $TARGETS " in *" portcullis-login"*|*"-login "*) needs_login=1; needs_op=1 ;; esac
needs_redis=0
needs_tls=0
case " $TARGETS " in *"-tls-"*) needs_tls=1 ;; esac
if [ "$needs_tls" = 1 ]; then
    command -v h2load >/dev/null || die "h2load not found: the TLS targets need it (apt-get install -y nghttp2-client)"
fi
case " $TARGETS " in *" portcullis-login-redis "*) needs_redis=1 ;; esac
if [ "$needs_tokens" = 1 ] || [ "$needs_op" = 1 ]; then
    command -v node >/dev/null || die "node not found: the bearer targets need it (apt-get install -y nodejs npm)"
    [ "$DRY_RUN" = 1 ] && die "BENCH_DRY_RUN=1 does not support the bearer targets"
fi

if [ "$needs_portcullis" = 1 ] && [ "$DRY_RUN" != 1 ]; then
    if [ -z "${PORTCULLIS_BIN:-}" ]; then
        log "building release binary (cargo build --release)"
        (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
        PORTCULLIS_BIN=$ROOT/target/release/portcullis
    fi
    [ -x "$PORTCULLIS_BIN" ] || die "PORTCULLIS_BIN=$PORTCULLIS_BIN is not an executable"
fi

if [[ " $TARGETS " == *" hyper-floor"* ]] && [ -z "${FLOOR_BIN:-}" ]; then
    log "building the hyper-floor example (cargo build --release --example hyper-floor)"
    (cd "$ROOT" && cargo build --release --quiet --example hyper-floor) || die "building hyper-floor failed"
    FLOOR_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/hyper-floor
fi

read -r STATIC_PORT NGINX_PORT PORTCULLIS_PORT APACHE_PORT STATIC_TLS_PORT PORTCULLIS_REDIS_PORT REDIS_PORT FLOOR_PORT \
    NGINX_LOG_PORT PORTCULLIS_LOG_PORT NGINX_TLS_PORT PORTCULLIS_TLS_PORT FLOOR_TLS_PORT FLOOR_CONTRACT_PORT \
    <<<"$(free_ports 14)"
if [ "$needs_tls" = 1 ]; then
    # the TLS rows' certificate: P-256, the same for nginx, the floor and portcullis
    mkdir -p "$WORK/tls"
    chmod a+rx "$WORK/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$WORK/tls/tls.key" -out "$WORK/tls/tls.crt" \
        >/dev/null 2>&1 || die "openssl req (P-256) failed"
    chmod a+r "$WORK/tls/tls.key"
fi
mkdir -p "$WORK/issuer"
chmod a+rx "$WORK" "$WORK/issuer"   # nginx workers (nobody) serve the issuer files
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/issuer/tls.key" -out "$WORK/issuer/tls.crt" >/dev/null 2>&1 || die "openssl req failed"
chmod a+r "$WORK/issuer/tls.key"
if [ "$needs_tokens" = 1 ]; then mint_jwts; fi
if [ "$needs_op" = 1 ]; then start_op; fi
start_static
case " $TARGETS " in *" nginx-"*|*" portcullis-"*) start_nginx_proxy ;; esac
case " $TARGETS " in *" nginx-proxy-log "*) start_nginx_proxy log ;; esac
case " $TARGETS " in *" hyper-floor "*|*" hyper-floor-bearer "*|*" hyper-floor-login "*) start_floor ;; esac
case " $TARGETS " in *" hyper-floor-tls-"*) start_floor_tls ;; esac
case " $TARGETS " in *" hyper-floor-contract"*) start_floor_contract ;; esac
if [ "$needs_portcullis" = 1 ]; then
    if [ "$DRY_RUN" = 1 ]; then
        log "BENCH_DRY_RUN=1: portcullis-* targets measure the nginx proxy instead"
        PORTCULLIS_PORT=$NGINX_PORT
        PORTCULLIS_TLS_PORT=$NGINX_TLS_PORT
        PORTCULLIS_PID=$NGINX_PID
    else
        start_portcullis
        case " $TARGETS " in *" portcullis-none-log "*) start_portcullis_log ;; esac
        if [ "$needs_tls" = 1 ]; then
            wait_http "https://127.0.0.1:$PORTCULLIS_TLS_PORT/" "$PORTCULLIS_PID" "portcullis (TLS)" "$WORK/portcullis/portcullis.log"
        fi
        if [ "$needs_tokens" = 1 ]; then check_bearer /api/ "$JWT_FILE"; check_bearer /nocache/ "$JWT_FILE"; fi
        if [ -n "${OPAQUE_FILE:-}" ]; then check_bearer /introspect/ "$OPAQUE_FILE"; fi
        if [ "$needs_login" = 1 ]; then LOGIN_COOKIE=$(login_cookie "$PORTCULLIS_PORT"); fi
        if [ "$needs_redis" = 1 ]; then
            start_redis
            start_portcullis_redis
            LOGIN_REDIS_COOKIE=$(login_cookie "$PORTCULLIS_REDIS_PORT")
        fi
    fi
fi

for target in $TARGETS; do
    case $target in
        static)          run_target static "http://127.0.0.1:$STATIC_PORT/" "$STATIC_PID" ;;
        nginx-proxy)     run_target nginx-proxy "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" ;;
        hyper-floor)     run_target hyper-floor "http://127.0.0.1:$FLOOR_PORT/" "$FLOOR_PID" ;;
        hyper-floor-contract)
            run_target hyper-floor-contract "http://127.0.0.1:$FLOOR_CONTRACT_PORT/" "$FLOOR_CONTRACT_PID" ;;
        hyper-floor-contract-bearer)
            TOKENS_FILE=$JWT_FILE run_target "$target" "http://127.0.0.1:$FLOOR_CONTRACT_PORT/api/" \
                "$FLOOR_CONTRACT_PID" -s "$ROOT/tests/bench/tokens.lua" ;;
        nginx-proxy-bearer|hyper-floor-bearer)
            if [ "$target" = nginx-proxy-bearer ]; then port=$NGINX_PORT pid=$NGINX_PID; else port=$FLOOR_PORT pid=$FLOOR_PID; fi
            TOKENS_FILE=$JWT_FILE run_target "$target" "http://127.0.0.1:$port/api/" "$pid" \
                -s "$ROOT/tests/bench/tokens.lua" ;;
        nginx-proxy-login|hyper-floor-login)
            if [ "$target" = nginx-proxy-login ]; then port=$NGINX_PORT pid=$NGINX_PID; else port=$FLOOR_PORT pid=$FLOOR_PID; fi
            run_target "$target" "http://127.0.0.1:$port/login/" "$pid" -H "Cookie: $LOGIN_COOKIE" ;;
        portcullis-none) run_target portcullis-none "http://127.0.0.1:$PORTCULLIS_PORT/" "$PORTCULLIS_PID" ;;
        nginx-proxy-log) run_target nginx-proxy-log "http://127.0.0.1:$NGINX_LOG_PORT/" "$NGINX_LOG_PID" ;;
        portcullis-none-log)
            if [ "$DRY_RUN" = 1 ]; then port=$NGINX_LOG_PORT pid=$NGINX_LOG_PID; else port=$PORTCULLIS_LOG_PORT pid=$PORTCULLIS_LOG_PID; fi
            run_target portcullis-none-log "http://127.0.0.1:$port/" "$pid" ;;
        portcullis-bearer)
            TOKENS_FILE=$JWT_FILE run_target portcullis-bearer "http://127.0.0.1:$PORTCULLIS_PORT/api/" \
                "$PORTCULLIS_PID" -s "$ROOT/tests/bench/tokens.lua" ;;
        portcullis-bearer-nocache)
            TOKENS_FILE=$JWT_FILE run_target portcullis-bearer-nocache "http://127.0.0.1:$PORTCULLIS_PORT/nocache/" \
                "$PORTCULLIS_PID" -s "$ROOT/tests/bench/tokens.lua" ;;
        portcullis-introspect)
            TOKENS_FILE=$OPAQUE_FILE run_target portcullis-introspect "http://127.0.0.1:$PORTCULLIS_PORT/introspect/" \
                "$PORTCULLIS_PID" -s "$ROOT/tests/bench/tokens.lua" ;;
        apache-oidc)
            if [ -z "${APACHE_PID:-}" ]; then start_apache; fi
            TOKENS_FILE=$JWT_FILE run_target apache-oidc "http://127.0.0.1:$APACHE_PORT/api/" \
                "$APACHE_PID" -s "$ROOT/tests/bench/tokens.lua" ;;
        portcullis-login)
            run_target portcullis-login "http://127.0.0.1:$PORTCULLIS_PORT/login/" "$PORTCULLIS_PID" \
                -H "Cookie: $LOGIN_COOKIE" ;;
        portcullis-login-redis)
            run_target portcullis-login-redis "http://127.0.0.1:$PORTCULLIS_REDIS_PORT/login/" \
                "$PORTCULLIS_REDIS_PID" -H "Cookie: $LOGIN_REDIS_COOKIE" ;;
        nginx-tls-h2|nginx-tls-h1|nginx-tls-handshake)
            run_target "$target" "https://127.0.0.1:$NGINX_TLS_PORT/" "$NGINX_PID" ;;
        hyper-floor-tls-h2|hyper-floor-tls-h1|hyper-floor-tls-handshake)
            run_target "$target" "https://127.0.0.1:$FLOOR_TLS_PORT/" "$FLOOR_TLS_PID" ;;
        portcullis-tls-h2|portcullis-tls-h1|portcullis-tls-handshake)
            run_target "$target" "https://127.0.0.1:$PORTCULLIS_TLS_PORT/" "$PORTCULLIS_PID" ;;
        *) die "unknown target $target" ;;
    esac
done

print_results
exit 0

#!/usr/bin/env bash
# portcullis demo: the local OpenID provider (tests/provider), the header-echo demo app and
# portcullis with config/demo.toml. Open the printed URL; Ctrl-C (or killing this script)
# stops everything, portcullis included.
#
#   bash config/demo/run.sh
#   DEMO_PORT=8081 DEMO_PROVIDER_PORT=9001 bash config/demo/run.sh     # other ports
#   PORTCULLIS_BIN=target/debug/portcullis bash config/demo/run.sh     # skip the release build
#
# The first run builds portcullis in release mode: several minutes (about 6 on 2 cores);
# later runs reuse the build. The binary is found in cargo's target directory wherever it is
# (CARGO_TARGET_DIR, a `build.target-dir` in a cargo config, or target/).
#
# On a remote machine, the browser needs both the proxy's and the provider's port (the login
# redirects to the provider at 127.0.0.1:$DEMO_PROVIDER_PORT); tunnel both:
#   ssh -L 8080:127.0.0.1:8080 -L 9000:127.0.0.1:9000 you@the-vm
set -euo pipefail
cd "$(dirname "$0")/../.."

export DEMO_PORT="${DEMO_PORT:-8080}"
export DEMO_ADMIN_PORT="${DEMO_ADMIN_PORT:-9090}"
export DEMO_PROVIDER_PORT="${DEMO_PROVIDER_PORT:-9000}"
export DEMO_UPSTREAM_PORT="${DEMO_UPSTREAM_PORT:-3000}"
# A fresh session secret per run (config/demo.toml reads it; sessions end with the demo).
SESSION_SECRET="${SESSION_SECRET:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}"
export SESSION_SECRET
base="http://127.0.0.1:${DEMO_PORT}"

need() { command -v "$1" >/dev/null || { echo "demo: '$1' is needed ($2)" >&2; exit 1; }; }
need node "Node.js 20+"
need npm "npm"

for p in "$DEMO_PORT" "$DEMO_ADMIN_PORT" "$DEMO_PROVIDER_PORT" "$DEMO_UPSTREAM_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: port $p is already in use (set DEMO_PORT / DEMO_ADMIN_PORT / DEMO_PROVIDER_PORT / DEMO_UPSTREAM_PORT)" >&2
    exit 1
  fi
done

if [ ! -d tests/provider/node_modules/oidc-provider ]; then
  echo "demo: installing the test provider's packages (npm ci)…"
  (cd tests/provider && npm ci --no-audit --no-fund)
fi

bin="${PORTCULLIS_BIN:-}"
if [ -z "$bin" ]; then
  need cargo "Rust, https://rustup.rs"
  # where cargo puts the binary: CARGO_TARGET_DIR, build.target-dir, or target/
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
  bin="$target_dir/release/portcullis"
  if [ -x "$bin" ]; then
    echo "demo: updating the release build of portcullis (cargo build --release)…"
  else
    echo "demo: building portcullis in release mode (cargo build --release): the first build"
    echo "      takes several minutes (about 6 on 2 cores); cargo shows its progress below."
  fi
  cargo build --release --bin portcullis
fi
[ -x "$bin" ] || { echo "demo: no portcullis binary at $bin" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
  echo
  echo "demo: stopped"
}
trap cleanup EXIT INT TERM

PORT="$DEMO_PROVIDER_PORT" STATE_DIR="$work/provider" LOG_REQUESTS=0 \
  CLIENT_REDIRECT_URIS="$base/.auth/callback" \
  POST_LOGOUT_REDIRECT_URIS="$base/,$base/public" \
  BACKCHANNEL_LOGOUT_URI="$base/.auth/backchannel-logout" \
  node tests/provider/provider.mjs >"$work/provider.out" 2>"$work/provider.log" &
pids+=($!)
PORT="$DEMO_UPSTREAM_PORT" node config/demo/upstream.mjs >"$work/upstream.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do grep -q '^READY' "$work/provider.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^READY' "$work/provider.out" || { echo "demo: the provider did not start:" >&2; tail -20 "$work/provider.log" >&2; exit 1; }

# $! is portcullis itself (its log goes through a process substitution, not a pipeline whose
# last command would be the prefixer), so the cleanup stops portcullis, not just the prefixer.
RUST_LOG="${RUST_LOG:-info}" "$bin" run --config config/demo.toml \
  > >(sed -u 's/^/[portcullis] /') 2>&1 &
pids+=($!)
ready="http://127.0.0.1:${DEMO_ADMIN_PORT}/readyz"
for _ in $(seq 100); do
  "$bin" health --url "$ready" --timeout 1s >/dev/null 2>&1 && break
  sleep 0.2
done
"$bin" health --url "$ready" >/dev/null || { echo "demo: portcullis is not ready" >&2; exit 1; }

cat <<MSG

  portcullis demo is running.

    open   $base/            (log in; the demo app shows the identity headers it received)
           $base/admin       (needs role admin: alice yes, bob gets the 403 page)
           $base/public      (no login)
           $base/.auth/me    (the session as JSON)
           $base/.auth/logout

    users  alice  (role admin)
           bob    (no roles)
           any password works

    provider http://127.0.0.1:${DEMO_PROVIDER_PORT}   demo app http://127.0.0.1:${DEMO_UPSTREAM_PORT}   metrics http://127.0.0.1:${DEMO_ADMIN_PORT}/metrics

    remote machine? tunnel both the proxy's and the provider's port, then open $base/:
           ssh -L ${DEMO_PORT}:127.0.0.1:${DEMO_PORT} -L ${DEMO_PROVIDER_PORT}:127.0.0.1:${DEMO_PROVIDER_PORT} you@the-vm

  Ctrl-C stops everything.
MSG
wait

#!/usr/bin/env bash
# portcullis demo: the local OpenID provider (tests/provider), the header-echo demo app and
# portcullis with config/demo.toml. Open the printed URL; Ctrl-C stops everything.
#
#   bash config/demo/run.sh
#   DEMO_PORT=8081 DEMO_PROVIDER_PORT=9001 bash config/demo/run.sh     # other ports
#   PORTCULLIS_BIN=target/debug/portcullis bash config/demo/run.sh     # skip the release build
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
need curl "curl"

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
  echo "demo: building portcullis (cargo build --release)…"
  cargo build --release --quiet
  bin=target/release/portcullis
fi

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

RUST_LOG="${RUST_LOG:-info}" "$bin" run --config config/demo.toml 2>&1 | sed -u 's/^/[portcullis] /' &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:${DEMO_ADMIN_PORT}/readyz" 2>/dev/null && break
  sleep 0.2
done
curl -fsS -o /dev/null "http://127.0.0.1:${DEMO_ADMIN_PORT}/readyz" || { echo "demo: portcullis is not ready" >&2; exit 1; }

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

  Ctrl-C stops everything.
MSG
wait

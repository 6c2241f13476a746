#!/usr/bin/env bash
# The full test suite, from a fresh Debian machine: installs what the tests need (Debian
# packages, the test OpenID provider's npm packages), then runs format and lint gates, every
# Rust test (unit, integration against a real oidc-provider, Redis and headless Chromium), the
# provider smoke test, the deployment-example validation and a short run of every fuzz target.
#
#   bash tests/run.sh
#
# Env: CARGO_TARGET_DIR (default target/), PORTCULLIS_SKIP_INSTALL=1 to skip installs,
# FUZZ_SMOKE_SECONDS (per fuzz target, default 10; tests/fuzz.sh installs cargo-fuzz if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# --- 1. system packages -------------------------------------------------------------------
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v nginx >/dev/null || need+=(nginx)
command -v caddy >/dev/null || need+=(caddy)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v node >/dev/null || need+=(nodejs npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ] && [ "${PORTCULLIS_SKIP_INSTALL:-}" != 1 ]; then
  step "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for tool in node npm redis-server redis-sentinel chromium nginx caddy cargo; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required by the test suite and is not installed" >&2; exit 1; }
done

# --- 2. the test OpenID provider (npm oidc-provider) ---------------------------------------
step "npm ci (tests/provider)"
(cd tests/provider && npm ci --no-audit --no-fund --loglevel=error)

# --- 2b. Python packages of the tests (grpcio + grpcio-tools: tests/grpc.rs) ----------------
venv=${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/venv-tests
if ! "$venv/bin/python" -c 'import grpc, grpc_tools' 2>/dev/null && [ "${PORTCULLIS_SKIP_INSTALL:-}" != 1 ]; then
  step "python venv for the tests ($venv: grpcio, grpcio-tools)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check grpcio grpcio-tools
fi
export PORTCULLIS_PYTHON="$venv/bin/python"

# --- 3. gates -----------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

# --- 4. tests -----------------------------------------------------------------------------
step "cargo build (binary used by CLI and deployment tests)"
cargo build --quiet
step "cargo test"
cargo test --all-targets -- --test-threads="${TEST_THREADS:-2}"

step "provider smoke test"
(cd tests/provider && node smoke.mjs)

step "deployment examples"
PORTCULLIS_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/portcullis" bash tests/deploy/validate.sh

# The benchmark script itself (tests/bench/bench.sh), in seconds: BENCH_DRY_RUN points the
# portcullis rows at nginx, so no release build; plain (wrk) and TLS (h2load) rows.
step "benchmark script smoke (BENCH_DRY_RUN=1)"
BENCH_DRY_RUN=1 DURATION=1s WARMUP=1s \
  TARGETS="nginx-proxy portcullis-none nginx-tls-h2 portcullis-tls-h1 portcullis-tls-handshake" \
  bash tests/bench/bench.sh

# Last, so a property a fuzzer breaks does not hide the results above.
step "fuzz smoke (tests/fuzz.sh, ${FUZZ_SMOKE_SECONDS:-10} s per target)"
FUZZ_SECONDS=${FUZZ_SMOKE_SECONDS:-10} bash tests/fuzz.sh

step "all test suites passed"

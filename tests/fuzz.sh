#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (libFuzzer), each for a bounded time, starting from the
# checked-in seed corpus, and reports per target the executions per second, the coverage reached
# and whether it found a crash (with the reproducer's path). Exit status 1 when any target
# crashed. Targets and their properties: README.md, "Fuzzing".
#
#   bash tests/fuzz.sh [TARGET…]          # all five targets, 60 s each
#   FUZZ_SECONDS=600 bash tests/fuzz.sh jwt_verify
#
# Env: FUZZ_SECONDS (per target, default 60); FUZZ_SANITIZER (address | none, default none: the
# targets are safe Rust over aws-lc's C, which is not instrumented anyway, and ASan halves the
# executions per second); CARGO_TARGET_DIR (the fuzz build goes to its fuzz/ subdirectory, so CI
# caches it with the rest); JWT_DIFF_STRICT=1 (jwt_verify also fails on the known divergences);
# FUZZ_FRESH=1 (start from the seeds only, forgetting the working corpus of earlier runs).
# Working corpora and logs: fuzz/work/<target>/ (gitignored); crashes: fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-none}
target_dir="${CARGO_TARGET_DIR:-$root/target}/fuzz"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(path_normalize session_cookie jwt_verify config_load redis_reply)

# Longest input per target: a chunked session cookie is ~12 KB; the rest stay small.
max_len() {
  case $1 in
    session_cookie) echo 16384 ;;
    config_load) echo 8192 ;;
    *) echo 1024 ;;
  esac
}

if ! command -v cargo-fuzz >/dev/null; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# libFuzzer needs nightly flags: the nightly toolchain when there is one, else stable told to
# allow them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
opts=(--fuzz-dir "$root/fuzz" --target-dir "$target_dir" --sanitizer "$sanitizer")

for t in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "error: no fuzz target $t (fuzz/fuzz_targets/)" >&2; exit 2; }
done

echo "==> building ${targets[*]} (sanitizer: $sanitizer, target dir: $target_dir)"
start=$(date +%s)
for t in "${targets[@]}"; do
  "${fuzz[@]}" build "${opts[@]}" "$t"
done
echo "    build: $(( $(date +%s) - start )) s"

crashed=0
summary=()
for t in "${targets[@]}"; do
  work="$root/fuzz/work/$t"
  [ "${FUZZ_FRESH:-}" = 1 ] && rm -rf "$work/corpus"
  mkdir -p "$work/corpus" "$root/fuzz/artifacts/$t"
  # Seeds are copied: libFuzzer adds what it finds to the first corpus directory.
  cp -n "$root/fuzz/corpus/$t/"* "$work/corpus/" 2>/dev/null || true
  args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1 -max_len="$(max_len "$t")")
  [ -f "$root/fuzz/dict/$t.dict" ] && args+=(-dict="$root/fuzz/dict/$t.dict")
  log="$work/last.log"
  echo "==> fuzzing $t for ${seconds} s"
  status=0
  "${fuzz[@]}" run "${opts[@]}" "$t" "$work/corpus" -- "${args[@]}" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1, features \2, corpus \3/p' <<<"$last")
  line="$t: ${runs:-?} runs, ${eps:-?} exec/s, ${cov:-no coverage line}"
  if [ "$status" -ne 0 ]; then
    crashed=1
    repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    line="$line — CRASH (exit $status): ${repro:-see $log}"
    echo "--- $t: what failed (full log: $log)"
    grep -E -A12 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | head -40 || tail -40 "$log"
    [ -n "$repro" ] && echo "--- reproduce: ${fuzz[*]} run ${opts[*]} $t $repro"
  else
    line="$line — no crash"
  fi
  echo "    $line"
  summary+=("$line")
done

echo
echo "==> fuzz summary (${seconds} s per target)"
printf '    %s\n' "${summary[@]}"
exit "$crashed"

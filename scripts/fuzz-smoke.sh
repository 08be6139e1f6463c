#!/usr/bin/env bash
# Bounded runs of every cargo-fuzz target, from the committed seeds (CI and
# developers). Builds once, then runs each target for FUZZ_SECONDS (default
# 20). A crash fails the script; its input is in fuzz/artifacts/<target>/.
# Longer runs: FUZZ_SECONDS=300 ./scripts/fuzz-smoke.sh [TARGET...]
# Needs cargo-fuzz and a nightly toolchain (scripts/setup.sh --tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TOOLCHAIN="${SIPGUARD_FUZZ_TOOLCHAIN:-nightly}"
SECS="${FUZZ_SECONDS:-20}"
# Safe Rust only is reached: no sanitizer (halves build and run time);
# debug assertions and overflow checks stay on (cargo-fuzz's default).
BUILD_FLAGS=(--sanitizer none --codegen-units 16)

log() { printf '\033[1mfuzz-smoke:\033[0m %s\n' "$*"; }

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo +"$TOOLCHAIN" fuzz list)
fi
log "building ${TARGETS[*]} with $TOOLCHAIN"
cargo +"$TOOLCHAIN" fuzz build "${BUILD_FLAGS[@]}"

summary=()
for t in "${TARGETS[@]}"; do
  seeds=("$ROOT/fuzz/seeds/$t")
  extra=(-max_len=4096)
  case "$t" in
    packet_kernel) seeds=("$ROOT/fuzz/seeds/packet") ;;
    config) seeds=("$ROOT/tests/configs/valid" "$ROOT/tests/configs/invalid"); extra+=("-dict=$ROOT/fuzz/config.dict") ;;
  esac
  if [ "$t" = packet_kernel ] && [ "$(id -u)" -ne 0 ]; then
    log "SKIPPED packet_kernel: needs root (BPF_PROG_TEST_RUN)"
    summary+=("$t: skipped (not root)")
    continue
  fi
  corpus="$ROOT/fuzz/corpus/$t"
  mkdir -p "$corpus"
  out="$(mktemp)"
  log "running $t for ${SECS}s"
  if ! cargo +"$TOOLCHAIN" fuzz run "${BUILD_FLAGS[@]}" "$t" "$corpus" "${seeds[@]}" -- \
      -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" >"$out" 2>&1; then
    tail -n 60 "$out"
    log "FAILED: $t crashed; reproduce with: cargo +$TOOLCHAIN fuzz run ${BUILD_FLAGS[*]} $t fuzz/artifacts/$t/<file>"
    exit 1
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n1)"
  cov="$(grep -o 'cov: [0-9]*' "$out" | tail -n1 || true)"
  summary+=("$t: ${execs:-?} executions in ${SECS}s, ${cov:-cov: ?}, no crash")
  rm -f "$out"
done
for s in "${summary[@]}"; do log "$s"; done

#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers (cargo-fuzz / libFuzzer, on the
# stable toolchain through RUSTC_BOOTSTRAP=1, without a sanitizer: the code
# is safe Rust, so what is looked for is panics, overflows and hangs).
#
#   bench/fuzz.sh [RUNS] [--dev]
#
# runs each target for RUNS executions (default 10,000,000) and prints one
# line per target: "FUZZ | target | executions | crashes | seconds". A crash
# leaves its input in fuzz/artifacts/<target>/ and makes the script fail.
# --dev builds without optimisation: quicker to build, slower to run (CI's
# smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-10000000}"
BUILD=()
[[ "${2:-}" == "--dev" ]] && BUILD=(--dev)
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build "${BUILD[@]}" --sanitizer none
failed=0
for target in offline_parser tool_arguments page_tokens bearer; do
  log="$(mktemp)"
  start=$(date +%s)
  status=0
  cargo fuzz run "${BUILD[@]}" --sanitizer none "$target" -- \
    -runs="$RUNS" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  seconds=$(( $(date +%s) - start ))
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  crashes=$(( status == 0 ? 0 : 1 ))
  echo "FUZZ | $target | ${executed:-0} | $crashes | $seconds"
  if (( status != 0 )); then
    failed=1
    tail -40 "$log"
  fi
  rm -f "$log"
done
exit $failed

#!/usr/bin/env bash
# The fault table: runs the fault suite (tests/faults/, both backends) one
# test at a time and prints what each fault yielded, as measured: HTTP codes,
# time to the answer, recovery, and the duplicate / unrecorded / unfinished
# counts read from the database afterwards. Needs TEST_DATABASE_URL for the
# PostgreSQL rows. Usage: bench/faults.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --workspace --locked -q
cargo test --locked --test faults -- --nocapture --test-threads=1 2>&1 \
  | grep -o 'FAULT | .*' | sed 's/^FAULT //; s/$/ |/'

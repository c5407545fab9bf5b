#!/usr/bin/env bash
# The chat page: its files' size and its time to interactive in headless
# Chromium on loopback (bench/page.py), against the launcher's release build
# on a fresh SQLite file with the offline model and 20 tasks for its user.
# Usage: bench/page.sh [runs, default 20].
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release"
cargo build --release --workspace --locked -q
WORK=$(mktemp -d)
PORT=50094
(cd "$WORK" && exec env -i PATH="$PATH" TOOL_SERVICE_ADDR=127.0.0.1:0 AGENT_SERVICE_ADDR=127.0.0.1:0 \
  GATEWAY_ADDR=127.0.0.1:$PORT RATE_LIMIT=100000 LOG_LEVEL=warn "$BIN/taskagent" >banner.txt) & LAUNCHER=$!
trap 'kill $LAUNCHER 2>/dev/null || true; rm -rf "$WORK"' EXIT
until "$BIN/taskagent" probe "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do sleep 0.2; done
TOKEN=$(cd "$WORK" && "$BIN/taskagent" token --user demo)
for n in $(seq 1 20); do
  curl -sf "http://127.0.0.1:$PORT/api/demo/tasks" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "{\"title\": \"seeded task $n\"}" >/dev/null
done
python3 bench/page.py "http://127.0.0.1:$PORT" "$TOKEN" "${1:-20}"

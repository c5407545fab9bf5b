#!/usr/bin/env bash
# Chat turns through agent-service with a fake model that answers at once
# (one add_task call, then text: two model calls per turn), on PostgreSQL and
# on SQLite, at concurrency 1, 8 and 32; plus the fake model's own round trip
# at the same concurrency, to separate the model's time from ours.
# Usage: bench/agent.sh [seconds per run, default 10].
set -euo pipefail
cd "$(dirname "$0")/.."
# Release binaries, wherever cargo puts them (CARGO_TARGET_DIR honoured).
BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release"
SECONDS_PER_RUN="${1:-10}"
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
DB=taskagent_bench_agent
TOOLS=127.0.0.1:50091
AGENT=127.0.0.1:50092
MODEL=127.0.0.1:50099

cargo build --release --workspace --locked -q
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

$BIN/loadgen model --listen $MODEL >/dev/null &
PIDS+=($!)

rss() { awk '/^VmRSS|^VmHWM/ {printf "%s=%dMB ", $1, $2/1024}' "/proc/$1/status"; echo; }

for backend in postgres sqlite; do
  if [ $backend = postgres ]; then
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
    URL="$PG/$DB"
  else
    URL="sqlite://$WORK/bench.db"
  fi
  DATABASE_URL=$URL TOOL_SERVICE_ADDR=$TOOLS LOG_LEVEL=warn $BIN/tool-service &
  TOOL_PID=$!
  AGENT_SERVICE_ADDR=$AGENT TOOL_SERVICE_URL=http://$TOOLS OPENAI_API_KEY=fake OPENAI_BASE_URL=http://$MODEL/v1 \
    LOG_LEVEL=warn $BIN/agent-service &
  AGENT_PID=$!
  PIDS+=($TOOL_PID $AGENT_PID)
  sleep 1.5
  echo "== $backend"
  for c in 1 8 32; do
    $BIN/loadgen load --addr "http://$AGENT" --op chat --concurrency $c --seconds "$SECONDS_PER_RUN"
    echo -n "  agent-service memory: "; rss $AGENT_PID
    echo -n "  tool-service memory: "; rss $TOOL_PID
    $BIN/loadgen load --addr "http://$MODEL/v1" --op model --concurrency $c --seconds 3
  done
  kill $AGENT_PID $TOOL_PID; wait $AGENT_PID $TOOL_PID 2>/dev/null || true
done
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"

#!/usr/bin/env bash
# POST /api/{user_id}/chat through all three services on PostgreSQL, with the
# fake model answering at once (two model calls per chat), at concurrency 8
# and 64: requests/s, p50/p99, CPU and RSS per process, CPU milliseconds per
# chat for our three services together and for PostgreSQL, and PostgreSQL
# transactions per chat (pg_stat_database). Then the launcher's idle RSS.
# Usage: bench/gateway.sh [seconds per run, default 10].
set -euo pipefail
cd "$(dirname "$0")/.."
# Release binaries, wherever cargo puts them (CARGO_TARGET_DIR honoured).
BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release"
SECONDS_PER_RUN="${1:-10}"
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
DB=taskagent_bench_gateway
SECRET=benchmark-secret-that-is-long-enough-32
TOOLS=127.0.0.1:50091; AGENT=127.0.0.1:50092; GATEWAY=127.0.0.1:50093; MODEL=127.0.0.1:50099

cargo build --release --workspace --locked -q
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"

$BIN/loadgen model --listen $MODEL >/dev/null & PIDS+=($!); MODEL_PID=$!
DATABASE_URL="$PG/$DB" TOOL_SERVICE_ADDR=$TOOLS LOG_LEVEL=warn $BIN/tool-service & PIDS+=($!); TOOL_PID=$!
AGENT_SERVICE_ADDR=$AGENT TOOL_SERVICE_URL=http://$TOOLS OPENAI_API_KEY=fake OPENAI_BASE_URL=http://$MODEL/v1 \
  LOG_LEVEL=warn $BIN/agent-service & PIDS+=($!); AGENT_PID=$!
GATEWAY_ADDR=$GATEWAY AGENT_SERVICE_URL=http://$AGENT TOOL_SERVICE_URL=http://$TOOLS JWT_SECRET=$SECRET \
  RATE_LIMIT=100000000 LOG_LEVEL=warn $BIN/gateway & PIDS+=($!); GATEWAY_PID=$!
sleep 1.5

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pg_ticks() { local t=0; for p in $(pgrep -x postgres); do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $t; }
rss() { awk '/^VmHWM/ {printf "%dMB", $2/1024}' "/proc/$1/status"; }

xacts() { sleep 1.2; psql "$PG/postgres" -Atc "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$DB'"; }

for c in 8 64; do
  x0=$(xacts)
  g0=$(ticks $GATEWAY_PID); a0=$(ticks $AGENT_PID); t0=$(ticks $TOOL_PID); m0=$(ticks $MODEL_PID); p0=$(pg_ticks)
  out=$($BIN/loadgen load --addr "http://$GATEWAY" --op http-chat --concurrency $c --seconds "$SECONDS_PER_RUN" --secret $SECRET)
  g1=$(ticks $GATEWAY_PID); a1=$(ticks $AGENT_PID); t1=$(ticks $TOOL_PID); m1=$(ticks $MODEL_PID); p1=$(pg_ticks)
  x1=$(xacts)
  echo "$out"
  ops=$(echo "$out" | grep -o ' ops=[0-9]*' | cut -d= -f2)
  ours=$(( (g1 - g0) + (a1 - a0) + (t1 - t0) )); pg=$(( p1 - p0 ))
  echo "  CPU seconds: gateway=$(( g1 - g0 ))e-2 agent=$(( a1 - a0 ))e-2 tool=$(( t1 - t0 ))e-2 model=$(( m1 - m0 ))e-2 postgres=${pg}e-2"
  awk -v o="$ours" -v p="$pg" -v n="$ops" -v x="$(( x1 - x0 ))" 'BEGIN {
    printf "  per chat: our services %.3f ms CPU, PostgreSQL %.3f ms CPU, %.2f PostgreSQL transactions\n", o * 10 / n, p * 10 / n, x / n }'
  echo "  peak RSS: gateway=$(rss $GATEWAY_PID) agent=$(rss $AGENT_PID) tool=$(rss $TOOL_PID)"
done
kill $GATEWAY_PID $AGENT_PID $TOOL_PID; sleep 1
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"

(cd "$WORK" && exec env -i PATH="$PATH" TOOL_SERVICE_ADDR=127.0.0.1:0 AGENT_SERVICE_ADDR=127.0.0.1:0 GATEWAY_ADDR=127.0.0.1:0 \
  LOG_LEVEL=warn "$BIN/taskagent" >/dev/null) & LAUNCHER=$!; PIDS+=($LAUNCHER)
sleep 3
echo "launcher idle: $(awk '/^VmRSS/ {printf "%.1fMB", $2/1024}' /proc/$LAUNCHER/status) RSS"

#!/usr/bin/env bash
# MCP tools/call add_task and list_tasks over Streamable HTTP (the gateway's
# /mcp, JSON responses) and the REST task API (POST and GET
# /api/{user_id}/tasks) against the same operations over gRPC (TaskService
# straight at tool-service), in the same run, on PostgreSQL, at concurrency 8.
# Usage: bench/mcp.sh [seconds per run, default 10].
set -euo pipefail
cd "$(dirname "$0")/.."
# Release binaries, wherever cargo puts them (CARGO_TARGET_DIR honoured).
BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release"
SECONDS_PER_RUN="${1:-10}"
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
DB=taskagent_bench_mcp
SECRET=benchmark-secret-that-is-long-enough-32
TOOLS=127.0.0.1:50091; GATEWAY=127.0.0.1:50093

cargo build --release --workspace --locked -q
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
DATABASE_URL="$PG/$DB" TOOL_SERVICE_ADDR=$TOOLS LOG_LEVEL=warn $BIN/tool-service & PIDS+=($!)
GATEWAY_ADDR=$GATEWAY TOOL_SERVICE_URL=http://$TOOLS JWT_SECRET=$SECRET RATE_LIMIT=100000000 LOG_LEVEL=warn \
  $BIN/gateway & PIDS+=($!)
sleep 1.5
psql "$PG/$DB" -q -c "INSERT INTO tasks (user_id, title, completed, created_at, updated_at)
  SELECT 'list-' || u, 'seeded task ' || n, false, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'
  FROM generate_series(0, 63) AS u, generate_series(1, 20) AS n" -c "VACUUM ANALYZE tasks"

for op in ${OPS:-create mcp-add rest-create list mcp-list rest-list}; do
  case $op in mcp-* | rest-*) addr="http://$GATEWAY" ;; *) addr="http://$TOOLS" ;; esac
  $BIN/loadgen load --addr "$addr" --op $op --concurrency 8 --seconds "$SECONDS_PER_RUN" --list-users 64 --secret $SECRET
done
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"

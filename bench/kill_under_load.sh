#!/usr/bin/env bash
# kill -9 under load: clients chat through the gateway on PostgreSQL, each
# chat with an Idempotency-Key and retried with the same key until it
# succeeds (loadgen --op http-chat-retry, concurrency 32). Midway, agent-service
# is killed with SIGKILL and restarted a second later; later tool-service is.
# Then the database says what was lost or written twice: tasks against
# successful chats, duplicated titles, tasks without their recorded result,
# conversations that do not end in an answer or an error record.
# Usage: bench/kill_under_load.sh [seconds, default 30] [AGENT_TIMEOUT, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
# Release binaries, wherever cargo puts them (CARGO_TARGET_DIR honoured).
BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release"
SECONDS_TOTAL="${1:-30}"
AGENT_TIMEOUT="${2:-5}"
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
DB=taskagent_bench_kill
SECRET=benchmark-secret-that-is-long-enough-32
TOOLS=127.0.0.1:50081; AGENT=127.0.0.1:50082; GATEWAY=127.0.0.1:50083; MODEL=127.0.0.1:50089

cargo build --release --workspace --locked -q
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" 2>/dev/null

start_tools() { DATABASE_URL="$PG/$DB" TOOL_SERVICE_ADDR=$TOOLS LOG_LEVEL=error $BIN/tool-service & TOOL_PID=$!; PIDS+=($!); }
start_agent() { AGENT_SERVICE_ADDR=$AGENT TOOL_SERVICE_URL=http://$TOOLS OPENAI_API_KEY=fake OPENAI_BASE_URL=http://$MODEL/v1 \
  AGENT_TIMEOUT=$AGENT_TIMEOUT LOG_LEVEL=error $BIN/agent-service & AGENT_PID=$!; PIDS+=($!); }
$BIN/loadgen model --listen $MODEL >/dev/null & PIDS+=($!)
start_tools; start_agent
GATEWAY_ADDR=$GATEWAY AGENT_SERVICE_URL=http://$AGENT TOOL_SERVICE_URL=http://$TOOLS JWT_SECRET=$SECRET \
  AGENT_TIMEOUT=$AGENT_TIMEOUT RATE_LIMIT=100000000 LOG_LEVEL=error $BIN/gateway & PIDS+=($!)
sleep 1.5

$BIN/loadgen load --addr "http://$GATEWAY" --op http-chat-retry --concurrency 32 \
  --seconds "$SECONDS_TOTAL" --secret $SECRET > /tmp/kill_under_load.out & LOAD=$!
third=$(( SECONDS_TOTAL / 3 ))
sleep "$third"; echo "kill -9 agent-service"; kill -9 $AGENT_PID; sleep 1; start_agent
sleep "$third"; echo "kill -9 tool-service"; kill -9 $TOOL_PID; sleep 1; start_tools
wait $LOAD
cat /tmp/kill_under_load.out
q() { psql "$PG/$DB" -Atc "$1"; }
echo "tasks: $(q "SELECT COUNT(*) FROM tasks")"
echo "duplicated: $(q "SELECT COUNT(*) - COUNT(DISTINCT (user_id, title)) FROM tasks")"
echo "unrecorded: $(q "SELECT COUNT(*) FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id
  WHERE c.user_id = t.user_id AND m.role = 'tool' AND m.content LIKE '%\"task_id\":' || t.id || ',%')")"
echo "unfinished conversations: $(q "SELECT COUNT(*) FROM conversations c WHERE COALESCE((SELECT m.role FROM messages m
  WHERE m.conversation_id = c.id ORDER BY m.id DESC LIMIT 1), 'none') NOT IN ('assistant', 'error')")"
echo "failures recorded on conversations (role error): $(q "SELECT COUNT(*) FROM messages WHERE role = 'error'")"
echo "keyed turns: $(q "SELECT state || '=' || COUNT(*) FROM idempotency_keys GROUP BY state" | tr '\n' ' ')"
cleanup; trap - EXIT; sleep 0.5
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"

#!/usr/bin/env bash
# What scaling out costs on one machine (release builds, PostgreSQL, the
# fake model answering at once):
#   replicas - chats/s through the gateway at concurrency 8 and 32, with one
#              replica of tool-service and agent-service (one URL each) and
#              with two of each (the gateway and agent-service given both:
#              balanced channels, health checks every second). Same two
#              cores, so two replicas cannot be faster: the figure is the
#              overhead of balancing. Rounds interleaved.
#   pooler   - tool-service CreateTask and ListTasks (loadgen) straight to
#              PostgreSQL, and through PgBouncer in transaction mode
#              (.ci/pgbouncer, DB_PREPARED_STATEMENTS=false).
# Usage: bench/scale.sh [seconds per run, default 10] [replicas|pooler|all]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release"
SECONDS_PER_RUN="${1:-10}"
WHAT="${2:-all}"
ROUNDS="${ROUNDS:-2}"
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
DB=taskagent_bench_scale
SECRET=benchmark-secret-that-is-long-enough-32
MODEL=127.0.0.1:50299

cargo build --release --workspace --locked -q
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$BIN/loadgen" model --listen $MODEL >/dev/null & PIDS+=($!)

fresh_db() { psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"; }
wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; }

# replicas N: N replicas of each gRPC service behind one gateway; chats.
replicas() {
  local n=$1 tools=() agents=() started=()
  fresh_db
  for i in $(seq 1 "$n"); do
    local tp=$((50300 + i)) ap=$((50310 + i))
    DATABASE_URL="$PG/$DB" TOOL_SERVICE_ADDR=127.0.0.1:$tp LOG_LEVEL=warn "$BIN/tool-service" 2>/dev/null &
    started+=($!); tools+=("http://127.0.0.1:$tp"); wait_port $tp
  done
  local tool_url; tool_url=$(IFS=,; echo "${tools[*]}")
  for i in $(seq 1 "$n"); do
    local ap=$((50310 + i))
    AGENT_SERVICE_ADDR=127.0.0.1:$ap TOOL_SERVICE_URL="$tool_url" OPENAI_API_KEY=fake \
      OPENAI_BASE_URL=http://$MODEL/v1 LOG_LEVEL=warn "$BIN/agent-service" 2>/dev/null &
    started+=($!); agents+=("http://127.0.0.1:$ap"); wait_port $ap
  done
  local agent_url; agent_url=$(IFS=,; echo "${agents[*]}")
  GATEWAY_ADDR=127.0.0.1:50320 AGENT_SERVICE_URL="$agent_url" TOOL_SERVICE_URL="$tool_url" \
    JWT_SECRET=$SECRET RATE_LIMIT=100000000 LOG_LEVEL=warn "$BIN/gateway" 2>/dev/null &
  started+=($!); wait_port 50320
  sleep 2 # every replica's first health answer
  for c in 8 32; do
    echo -n "replicas=$n "
    "$BIN/loadgen" load --addr http://127.0.0.1:50320 --op http-chat --concurrency $c \
      --seconds "$SECONDS_PER_RUN" --secret $SECRET
  done
  kill "${started[@]}"; wait "${started[@]}" 2>/dev/null || true
}

# pooler VIA: tool-service on PostgreSQL directly or through PgBouncer.
pooler() {
  local via=$1 url="$PG/$DB" extra=()
  fresh_db
  if [ "$via" = pgbouncer ]; then
    url="postgres://postgres@$(PGBOUNCER_PORT=6434 .ci/pgbouncer /tmp/taskagent-bench-pgbouncer)/$DB"
    extra=(DB_PREPARED_STATEMENTS=false)
  fi
  env "${extra[@]}" DATABASE_URL="$url" TOOL_SERVICE_ADDR=127.0.0.1:50330 LOG_LEVEL=warn \
    "$BIN/tool-service" 2>/dev/null &
  local service=$!
  wait_port 50330; sleep 0.5
  psql "$PG/$DB" -q -c "INSERT INTO tasks (user_id, title, completed, created_at, updated_at)
    SELECT 'list-' || u, 'seeded task ' || n, n % 3 = 0, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'
    FROM generate_series(0, 63) AS u, generate_series(1, 20) AS n" -c "VACUUM ANALYZE tasks"
  for op in create list; do
    echo -n "via=$via "
    "$BIN/loadgen" load --addr http://127.0.0.1:50330 --op $op --concurrency 8 \
      --seconds "$SECONDS_PER_RUN" --list-users 64
  done
  kill $service; wait $service 2>/dev/null || true
}

for round in $(seq "$ROUNDS"); do
  echo "--- round $round"
  if [ "$WHAT" = replicas ] || [ "$WHAT" = all ]; then replicas 1; replicas 2; fi
  if [ "$WHAT" = pooler ] || [ "$WHAT" = all ]; then pooler direct; pooler pgbouncer; fi
done
[ -f /tmp/taskagent-bench-pgbouncer/pgbouncer.pid ] && kill "$(cat /tmp/taskagent-bench-pgbouncer/pgbouncer.pid)" 2>/dev/null
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"

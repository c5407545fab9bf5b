#!/usr/bin/env bash
# What scaling out costs on one machine (release builds, PostgreSQL, the
# fake model answering at once):
#   replicas - chats/s and CPU ms per chat (all our processes) through the
#              gateway at concurrency 8 and 32: one replica of tool-service
#              and agent-service named by one URL each (a plain channel);
#              the same one replica named dns:///127.0.0.1:PORT (a balanced
#              channel over one endpoint: p2c, health checks every second,
#              requests kept for a retry: the balancing machinery alone);
#              and two replicas of each, listed. Same two cores, so two
#              replicas cannot be faster. Rounds interleaved.
#   pooler   - tool-service CreateTask and ListTasks (loadgen) straight to
#              PostgreSQL; straight, with DB_PREPARED_STATEMENTS=false (what
#              the setting alone costs); and through PgBouncer in
#              transaction mode (.ci/pgbouncer) with it.
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

ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }

# replicas N MODE: N replicas of each gRPC service behind one gateway
# (MODE one: plain URLs; dns: dns:///127.0.0.1:PORT; list: comma-separated).
replicas() {
  local n=$1 mode=$2 tools=() agents=() started=()
  fresh_db
  for i in $(seq 1 "$n"); do
    local tp=$((50300 + i))
    DATABASE_URL="$PG/$DB" TOOL_SERVICE_ADDR=127.0.0.1:$tp LOG_LEVEL=warn "$BIN/tool-service" 2>/dev/null &
    started+=($!); wait_port $tp
    if [ "$mode" = dns ]; then tools+=("dns:///127.0.0.1:$tp"); else tools+=("http://127.0.0.1:$tp"); fi
  done
  local tool_url; tool_url=$(IFS=,; echo "${tools[*]}")
  for i in $(seq 1 "$n"); do
    local ap=$((50310 + i))
    AGENT_SERVICE_ADDR=127.0.0.1:$ap TOOL_SERVICE_URL="$tool_url" OPENAI_API_KEY=fake \
      OPENAI_BASE_URL=http://$MODEL/v1 LOG_LEVEL=warn "$BIN/agent-service" 2>/dev/null &
    started+=($!); wait_port $ap
    if [ "$mode" = dns ]; then agents+=("dns:///127.0.0.1:$ap"); else agents+=("http://127.0.0.1:$ap"); fi
  done
  local agent_url; agent_url=$(IFS=,; echo "${agents[*]}")
  GATEWAY_ADDR=127.0.0.1:50320 AGENT_SERVICE_URL="$agent_url" TOOL_SERVICE_URL="$tool_url" \
    JWT_SECRET=$SECRET RATE_LIMIT=100000000 LOG_LEVEL=warn "$BIN/gateway" 2>/dev/null &
  started+=($!); wait_port 50320
  sleep 2 # every replica's first health answer
  for c in 8 32; do
    local before out after ops
    before=$(ticks "${started[@]}")
    out=$("$BIN/loadgen" load --addr http://127.0.0.1:50320 --op http-chat --concurrency $c \
      --seconds "$SECONDS_PER_RUN" --secret $SECRET)
    after=$(ticks "${started[@]}")
    ops=$(echo "$out" | grep -o ' ops=[0-9]*' | cut -d= -f2)
    echo "replicas=$n urls=$mode $out cpu_ms_per_chat=$(awk -v t=$((after - before)) -v n="$ops" 'BEGIN {printf "%.3f", t * 10 / n}')"
  done
  kill "${started[@]}"; wait "${started[@]}" 2>/dev/null || true
}

# pooler VIA: tool-service on PostgreSQL directly or through PgBouncer.
pooler() {
  local via=$1 url="$PG/$DB" extra=()
  fresh_db
  if [ "$via" = unprepared ]; then
    extra=(DB_PREPARED_STATEMENTS=false)
  elif [ "$via" = pgbouncer ]; then
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
  if [ "$WHAT" = replicas ] || [ "$WHAT" = all ]; then replicas 1 one; replicas 1 dns; replicas 2 list; fi
  if [ "$WHAT" = pooler ] || [ "$WHAT" = all ]; then pooler direct; pooler unprepared; pooler pgbouncer; fi
done
[ -f /tmp/taskagent-bench-pgbouncer/pgbouncer.pid ] && kill "$(cat /tmp/taskagent-bench-pgbouncer/pgbouncer.pid)" 2>/dev/null
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"

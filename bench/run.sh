#!/usr/bin/env bash
# tool-service against pgbench on the same PostgreSQL, same SQL, same machine.
# Usage: bench/run.sh [seconds per run, default 10]. Prints result lines; the
# figures in BENCHMARKS.md come from this script.
set -euo pipefail
cd "$(dirname "$0")/.."
# Release binaries, wherever cargo puts them (CARGO_TARGET_DIR honoured).
BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release"
SECONDS_PER_RUN="${1:-10}"
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
DB=taskagent_bench
ADDR=127.0.0.1:50090
COMPLETE_TASKS=500000

cargo build --release --workspace --locked -q
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"

DATABASE_URL="$PG/$DB" TOOL_SERVICE_ADDR=$ADDR LOG_LEVEL=warn $BIN/tool-service &
SERVICE=$!
trap 'kill $SERVICE 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  psql "$PG/$DB" -Atc "SELECT 1 FROM __diesel_schema_migrations LIMIT 1" >/dev/null 2>&1 && break
  sleep 0.1
done

# 64 list users with 20 tasks each; one user with many pending tasks to complete.
psql "$PG/$DB" -q <<SQL
INSERT INTO tasks (user_id, title, completed, created_at, updated_at)
SELECT 'list-' || u, 'seeded task ' || n, n % 3 = 0, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'
FROM generate_series(0, 63) AS u, generate_series(1, 20) AS n;
INSERT INTO tasks (user_id, title, created_at, updated_at)
SELECT 'complete', 'to complete ' || n, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'
FROM generate_series(1, $COMPLETE_TASKS) AS n;
VACUUM ANALYZE tasks;
SQL
read -r LOW HIGH < <(psql "$PG/$DB" -Atc "SELECT min(id), max(id) FROM tasks WHERE user_id = 'complete'" | tr '|' ' ')

rss() { awk '/^VmRSS|^VmHWM/ {printf "%s=%dMB ", $1, $2/1024}' "/proc/$SERVICE/status"; echo; }

pgbench_run() { # name concurrency pgbench-script-args...
  local name=$1 clients=$2; shift 2
  local logdir; logdir=$(mktemp -d)
  pgbench "$PG/$DB" -n -M prepared -c "$clients" -j "$(( clients < 2 ? clients : 2 ))" -T "$SECONDS_PER_RUN" \
    -D low="$LOW" -D high="$HIGH" --log --log-prefix="$logdir/log" "$@" >"$logdir/out" 2>&1
  local tps; tps=$(awk '/^tps/ {print int($3)}' "$logdir/out")
  cat "$logdir"/log* | awk '{print $3}' | sort -n | awk -v name="$name" -v c="$clients" -v tps="$tps" \
    '{a[NR]=$1} END {printf "pgbench op=%s concurrency=%d ops_per_s=%d p50_ms=%.3f p99_ms=%.3f\n", name, c, tps, a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}'
  rm -rf "$logdir"
}

for c in 1 8 32; do
  for op in health create list complete mix; do
    $BIN/loadgen load --addr "http://$ADDR" --op $op --concurrency $c --seconds "$SECONDS_PER_RUN" \
      --complete-ids "$LOW-$HIGH" --list-users 64
    echo -n "  tool-service memory: "; rss
  done
  pgbench_run create $c -f bench/sql/create.sql
  pgbench_run list $c -f bench/sql/list.sql
  pgbench_run complete $c -f bench/sql/complete.sql
  pgbench_run mix $c -f bench/sql/list.sql@6 -f bench/sql/create.sql@2 -f bench/sql/complete.sql@2
done

echo -n "tool-service memory at the end: "; rss
kill $SERVICE; wait $SERVICE || true
$BIN/loadgen startup --bin $BIN/tool-service --runs 20
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"

#!/usr/bin/env bash
# What mutual TLS between the services and exported traces cost: POST
# /api/{user_id}/chat through the three services on PostgreSQL (the fake
# model answering at once, two model calls per chat) at concurrency 64, and
# the CPU milliseconds per chat of our three services together, for:
#   base   - BASE_BIN (a build from before tracing existed, if given): plain
#   plain  - this build, plain gRPC, no OTLP endpoint (tracing off)
#   traced - this build, spans exported to a local OTLP collector (loadgen
#            otlp-sink), every trace sampled
#   traced10 - the same, one trace in ten sampled (parentbased_traceidratio)
#   mtls   - this build, mutual TLS between every pair of services
#   balanced - this build, the services named dns:///127.0.0.1:PORT: a
#            balanced channel over the one replica (the balancing's cost)
# Each configuration runs ROUNDS times (default 2), interleaved, on a fresh
# database, so that drift of the machine shows as spread, not as a result.
# MEASURE=instructions runs the services under valgrind's callgrind and
# reports instructions per chat instead: slow (use 30 s runs), but the same
# count whatever else the machine does; chats are counted in the database
# (one task each), turns still in flight when the load stops included;
# PROFILE_DIR=dir keeps the callgrind profiles (callgrind_annotate reads them).
# CONFIGS="plain traced" runs only those of this build.
# Usage: bench/observe.sh [seconds per run, default 10] [BASE_BIN dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release"
SECONDS_PER_RUN="${1:-10}"
BASE_BIN="${2:-}"
ROUNDS="${ROUNDS:-2}"
MEASURE="${MEASURE:-cpu}"
CONCURRENCY="${CONCURRENCY:-64}"
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
DB=taskagent_bench_observe
SECRET=benchmark-secret-that-is-long-enough-32
TOOL_PORT=50191; AGENT_PORT=50192; GATEWAY_PORT=50193; MODEL=127.0.0.1:50199; OTLP=127.0.0.1:50198

cargo build --release --workspace --locked -q
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN/taskagent" certs --out "$WORK/certs" >/dev/null

"$BIN/loadgen" model --listen $MODEL >/dev/null & PIDS+=($!)
"$BIN/loadgen" otlp-sink --listen $OTLP > "$WORK/spans" & PIDS+=($!); SINK_PID=$!

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME BIN_DIR: one measurement of one configuration.
run() {
  local name=$1 bin=$2 scheme=http tls=() otel=()
  # How the services name each other: one URL, or (balanced) a dns:/// name,
  # which gives a balanced channel over the one replica.
  local tool_url agent_url
  case $name in
    mtls) scheme=https ;;
    balanced) tool_url=dns:///127.0.0.1:$TOOL_PORT agent_url=dns:///127.0.0.1:$AGENT_PORT ;;
    traced) otel=(OTEL_EXPORTER_OTLP_ENDPOINT=http://$OTLP) ;;
    traced10) otel=(OTEL_EXPORTER_OTLP_ENDPOINT=http://$OTLP OTEL_TRACES_SAMPLER=parentbased_traceidratio
                    OTEL_TRACES_SAMPLER_ARG=0.1) ;;
  esac
  tool_url=${tool_url:-$scheme://localhost:$TOOL_PORT} agent_url=${agent_url:-$scheme://localhost:$AGENT_PORT}
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  local certs="$WORK/certs"
  tls_for() {
    [ "$scheme" = https ] && echo "TLS_CERT_FILE=$certs/$1.pem TLS_KEY_FILE=$certs/$1.key TLS_CA_FILE=$certs/ca.pem"
    return 0
  }
  counted() { # counted SERVICE: how the service is started
    if [ "$MEASURE" = instructions ]; then
      echo valgrind -q --tool=callgrind --callgrind-out-file="$WORK/$name.$1.out" "$bin/$1"
    else
      echo "$bin/$1"
    fi
  }
  rm -f "$WORK/$name".*.out
  env $(tls_for tool-service) "${otel[@]}" DATABASE_URL="$PG/$DB" TOOL_SERVICE_ADDR=127.0.0.1:$TOOL_PORT \
    LOG_LEVEL=warn $(counted tool-service) & local tool=$!
  env $(tls_for agent-service) "${otel[@]}" AGENT_SERVICE_ADDR=127.0.0.1:$AGENT_PORT \
    TOOL_SERVICE_URL=$tool_url OPENAI_API_KEY=fake OPENAI_BASE_URL=http://$MODEL/v1 \
    LOG_LEVEL=warn $(counted agent-service) & local agent=$!
  env $(tls_for gateway) "${otel[@]}" GATEWAY_ADDR=127.0.0.1:$GATEWAY_PORT \
    AGENT_SERVICE_URL=$agent_url TOOL_SERVICE_URL=$tool_url \
    JWT_SECRET=$SECRET RATE_LIMIT=100000000 LOG_LEVEL=warn $(counted gateway) & local gateway=$!
  if [ "$MEASURE" = instructions ]; then
    # Start-up is not counted: the counters start from zero under load.
    sleep 15; callgrind_control -z $tool $agent $gateway >/dev/null
  else
    sleep 1.5
  fi
  local g0 a0 t0 g1 a1 t1 out ops
  g0=$(ticks $gateway); a0=$(ticks $agent); t0=$(ticks $tool)
  out=$("$BIN/loadgen" load --addr "http://127.0.0.1:$GATEWAY_PORT" --op http-chat \
    --concurrency "$CONCURRENCY" --seconds "$SECONDS_PER_RUN" --secret $SECRET)
  g1=$(ticks $gateway); a1=$(ticks $agent); t1=$(ticks $tool)
  # Turns in flight when the load stops run to their end (the client's
  # going away does not cancel them): let them, and count them too.
  [ "$MEASURE" = instructions ] && sleep 10
  kill $gateway $agent $tool; wait $gateway $agent $tool 2>/dev/null || true
  ops=$(echo "$out" | grep -o ' ops=[0-9]*' | cut -d= -f2)
  if [ "$MEASURE" = instructions ]; then
    # Every chat adds one task: the chats the counted instructions served.
    ops=$(psql "$PG/$DB" -Atc "SELECT count(*) FROM tasks")
    local ir
    ir=$(cat "$WORK/$name".*.out | awk '/^summary:/ {sum += $2} END {print sum}')
    [ -n "${PROFILE_DIR:-}" ] && mkdir -p "$PROFILE_DIR" && cp "$WORK/$name".*.out "$PROFILE_DIR/"
    awk -v name="$name" -v out="$out" -v ir="$ir" -v n="$ops" 'BEGIN {
      printf "%-8s %s\n         instructions per chat: %.0f\n", name, out, ir / n }'
    return
  fi
  awk -v name="$name" -v out="$out" -v g=$((g1 - g0)) -v a=$((a1 - a0)) -v t=$((t1 - t0)) -v n="$ops" 'BEGIN {
    printf "%-8s %s\n         CPU ms per chat: %.3f (gateway %.3f, agent %.3f, tool %.3f)\n",
      name, out, (g + a + t) * 10 / n, g * 10 / n, a * 10 / n, t * 10 / n }'
}

for round in $(seq "$ROUNDS"); do
  echo "--- round $round"
  [ -n "$BASE_BIN" ] && run base "$BASE_BIN"
  for config in ${CONFIGS:-plain traced traced10 mtls}; do run "$config" "$BIN"; done
done
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
kill $SINK_PID; wait $SINK_PID 2>/dev/null || true
echo "collector received $(cat "$WORK/spans")"

#!/usr/bin/env bash
# Hot-path benchmark of the api, on this machine, against 127.0.0.1 only.
#
# Builds release binaries, starts its own nats-server (free port, temporary
# store), the upstream simulator, the signer, the notifier, the api and an
# axum hello-world, warms one cached signature, then measures with wrk (same
# tool, same settings, same run):
#   (a) axum hello-world            GET /
#   (b) the cached-signature 200    GET /crypto/sign?message=bench
#   (c) the 202 path                GET /crypto/sign?message=<new each time>
# and with the `load` example: p99 of (b) at a fixed 1,000 req/s, and a
# backlog of 10,000 new jobs. It reads VmRSS of every service idle and of
# api/signer (and nats-server) under the backlog, and prints a table.
#
# The upstream budget is 1 call per hour (UPSTREAM_RATE_LIMIT=1,
# UPSTREAM_RATE_WINDOW=1h): the warm-up's call is the only one ever made, so
# no new message is signed and every one is answered 202. SIGN_WAIT is the
# default 1500 ms, but the api answers at once when its estimate says no
# call slot comes within the wait (here: always), so (c) measures accepting
# a job (cache miss, backlog estimate, job record, publish, reply claim),
# not a 1.5 s sleep. At that budget the api's backlog admission would
# refuse (503) all but ~24 new messages (BACKLOG_HORIZON, default 24h, at
# 1 call/h), so the bench raises BACKLOG_HORIZON to measure the accept path
# and a real 10,000-job backlog, not the refusal.
#
# Knobs (environment): BENCH_SECS (per wrk run, default 10), BENCH_CONNS
# (wrk connections for a/b, default 64), BENCH_202_CONNS (default 200),
# BENCH_BACKLOG (default 10000), BENCH_BACKLOG_CONNS (default 200),
# BENCH_THREADS (wrk threads, default 1: the machine has 2 cores and the
# servers need them), BENCH_RUST_LOG (services' log filter, default info as
# deployed; logs go to files), BENCH_SKIP_BUILD=1 reuses target/release,
# KEEP_BENCH_DIR=1 keeps logs, BENCH_NATS_NODES=3 runs everything on a
# three-node JetStream cluster on loopback with NATS_REPLICAS=3 (default 1:
# one node; scripts/bench-cluster.sh runs both and compares).
#
# Run: scripts/bench-hot-path.sh   (about 80 s after the build; wrk is
# installed from Debian if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECS:-10}
CONNS=${BENCH_CONNS:-64}
CONNS_202=${BENCH_202_CONNS:-200}
BACKLOG=${BENCH_BACKLOG:-10000}
BACKLOG_CONNS=${BENCH_BACKLOG_CONNS:-200}
THREADS=${BENCH_THREADS:-1}

command -v nats-server >/dev/null || scripts/install-nats-server.sh
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi

if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
  echo "== building release binaries" >&2
  cargo build --release -q -p api -p signer -p notifier -p upstream-sim --bins
  cargo build --release -q -p api --example hello --example load
fi
ulimit -n 65536 2>/dev/null || true   # many connections on both sides
BIN=target/release
EX=target/release/examples

DIR=$(mktemp -d -t bench-hot-path.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n ${KEEP_BENCH_DIR:-} ]]; then echo "logs kept in $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BENCH_LOG_DIR=$DIR
source scripts/lib/bench.sh
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }
mb() { [[ $1 == "?" ]] && echo "?" || awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

NATS_PORT=$(free_port); SIM_PORT=$(free_port); API_PORT=$(free_port)
SIGNER_PORT=$(free_port); NOTIFIER_PORT=$(free_port); HELLO_PORT=$(free_port); MON_PORT=$(free_port)
NATS_URL="nats://127.0.0.1:$NATS_PORT"
API="http://127.0.0.1:$API_PORT"
HELLO="http://127.0.0.1:$HELLO_PORT"
RUN=$(date +%s%N)   # distinct messages across runs of this script
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)   # other work on the machine skews every figure

NODES=${BENCH_NATS_NODES:-1}
echo "== starting services on $NODES nats node(s) (logs in $DIR)" >&2
if [[ $NODES == 1 ]]; then
  start nats nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -m "$MON_PORT" -sd "$DIR/jetstream"; NATS_PID=$LAST_PID
else
  # Node 0 keeps NATS_PORT and MON_PORT (measured below); every node has its
  # own store and knows every route, as in docker-compose.cluster.yml.
  ports=("$NATS_PORT"); mons=("$MON_PORT"); routes=()
  for ((i = 1; i < NODES; i++)); do ports+=("$(free_port)"); mons+=("$(free_port)"); done
  for ((i = 0; i < NODES; i++)); do routes+=("$(free_port)"); done
  route_list=$(printf 'nats-route://127.0.0.1:%s,' "${routes[@]}"); route_list=${route_list%,}
  for ((i = NODES - 1; i >= 0; i--)); do
    start "nats-$i" nats-server -js -n "n$i" -a 127.0.0.1 -p "${ports[$i]}" -m "${mons[$i]}" \
      -sd "$DIR/jetstream-$i" --cluster_name bench --cluster "nats://127.0.0.1:${routes[$i]}" --routes "$route_list"
  done
  NATS_PID=$LAST_PID   # node 0, started last
  NATS_URL=$(printf 'nats://127.0.0.1:%s,' "${ports[@]}"); NATS_URL=${NATS_URL%,}
  for mon in "${mons[@]}"; do wait_ok "http://127.0.0.1:$mon/healthz?js-server-only=true" nats-server; done
fi
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done
LOG=${BENCH_RUST_LOG:-info}   # the services' default level, as deployed
common=(NATS_URL="$NATS_URL" NATS_REPLICAS="$NODES" UPSTREAM_RATE_LIMIT=1 UPSTREAM_RATE_WINDOW=1h RUST_LOG="$LOG")
start upstream-sim env SIM_ADDR="127.0.0.1:$SIM_PORT" SIM_API_KEY=bench-key SIM_SEED=1 \
  SIM_FIRST_TRY_SUCCESS=1 SIM_AUDIT_LIMIT=1 SIM_AUDIT_WINDOW=1h SIM_KEY_BITS=2048 RUST_LOG="$LOG" \
  "$BIN/upstream-sim"; SIM_PID=$LAST_PID
start signer env "${common[@]}" UPSTREAM_URL="http://127.0.0.1:$SIM_PORT" UPSTREAM_API_KEY=bench-key \
  SIGNER_HEALTH_ADDR="127.0.0.1:$SIGNER_PORT" SIGNER_ID=bench-signer "$BIN/signer"; SIGNER_PID=$LAST_PID
start notifier env "${common[@]}" NOTIFIER_HEALTH_ADDR="127.0.0.1:$NOTIFIER_PORT" "$BIN/notifier"; NOTIFIER_PID=$LAST_PID
start api env "${common[@]}" API_ADDR="127.0.0.1:$API_PORT" SIGN_WAIT=1500ms BACKLOG_HORIZON=100000h "$BIN/api"; API_PID=$LAST_PID
start hello "$EX/hello" "$HELLO_PORT"; HELLO_PID=$LAST_PID
wait_ok "http://127.0.0.1:$SIM_PORT/healthz" upstream-sim
wait_ok "$API/readyz" api
wait_ok "http://127.0.0.1:$SIGNER_PORT/readyz" signer
wait_ok "http://127.0.0.1:$NOTIFIER_PORT/readyz" notifier
wait_ok "$HELLO/" hello
sleep 2

declare -A IDLE
for s in nats upstream-sim signer notifier api hello; do
  case $s in
    nats) p=$NATS_PID ;; upstream-sim) p=$SIM_PID ;; signer) p=$SIGNER_PID ;;
    notifier) p=$NOTIFIER_PID ;; api) p=$API_PID ;; hello) p=$HELLO_PID ;;
  esac
  IDLE[$s]=$(rss_kb "$p")
done

echo "== warming the cached signature for message=bench" >&2
warm=""
for _ in $(seq 1 30); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$API/crypto/sign?message=bench" || true)
  if [[ $code == 200 ]]; then warm=ok; break; fi
  sleep 1
done
[[ $warm == ok ]] || { echo "message=bench never answered 200; logs in $DIR" >&2; KEEP_BENCH_DIR=1; exit 1; }

# wrk reporter: requests/s, p50/p99 from wrk's own histogram, status counts.
cat >"$DIR/report.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local codes = {}
  for _, t in ipairs(threads) do
    for _, k in ipairs({"s200", "s202", "sother"}) do
      local v = t:get(k)
      if v then codes[k] = (codes[k] or 0) + v end
    end
  end
  local status = ""
  if next(codes) ~= nil then
    status = string.format(" 200=%d 202=%d other=%d", codes.s200 or 0, codes.s202 or 0, codes.sother or 0)
  end
  io.write(string.format("RESULT requests=%d rps=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d%s\n",
    summary.requests, summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.connect + e.read + e.write + e.status + e.timeout, status))
end
LUA
# Distinct message per request (thread id + counter + run id), and counts
# of 200/202/other answers.
cat "$DIR/report.lua" >"$DIR/new.lua"
cat >>"$DIR/new.lua" <<LUA
local n = 0
local counter = 0
local setup0 = setup
function setup(thread)
  n = n + 1
  thread:set("tid", n)
  setup0(thread)
end
function init(args) counter = 0; s200 = 0; s202 = 0; sother = 0 end
function request()
  counter = counter + 1
  return wrk.format("GET", "/crypto/sign?message=new-$RUN-" .. tid .. "-" .. counter)
end
function response(status, headers, body)
  if status == 200 then s200 = s200 + 1 elseif status == 202 then s202 = s202 + 1 else sother = sother + 1 end
end
LUA

run_wrk() { # LABEL CONNS SCRIPT URL
  echo "== wrk: $1 (-t$THREADS -c$2 -d${SECS}s)" >&2
  wrk -t"$THREADS" -c"$2" -d"${SECS}s" --timeout 5s -s "$3" "$4" >"$DIR/wrk-$1.out" 2>&1 || true
  grep '^RESULT' "$DIR/wrk-$1.out" | sed 's/^RESULT //' || { cat "$DIR/wrk-$1.out" >&2; echo "requests=0"; }
}
field() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }

stream_counts() { # "NAME=messages ..." for every JetStream stream
  curl -s --max-time 5 "http://127.0.0.1:$MON_PORT/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
out = []
for acc in d.get("account_details", []):
    for st in acc.get("stream_detail", []):
        out.append("%s=%d" % (st["name"], st["state"]["messages"]))
print(" ".join(sorted(out)) or "?")' 2>/dev/null || echo '?'
}

A=$(run_wrk hello "$CONNS" "$DIR/report.lua" "$HELLO/")
B=$(run_wrk cached "$CONNS" "$DIR/report.lua" "$API/crypto/sign?message=bench")
# (b) must have been answered from the cache: one more look.
B_CODE=$(curl -s -o /dev/null -w '%{http_code}' "$API/crypto/sign?message=bench")

echo "== fixed rate: 1000 req/s on the cached path for ${SECS}s" >&2
R=$("$EX/load" --label fixed --url "$API/crypto/sign?message=bench" --rate 1000 --duration "${SECS}s" \
  --connections 64 --timeout 5s)

# The backlog comes before (c) so that it is exactly BACKLOG jobs.
echo "== backlog: $BACKLOG new messages, no webhook ($BACKLOG_CONNS connections)" >&2
L=$("$EX/load" --label backlog --url "$API/crypto/sign?message=backlog-$RUN-{n}" --count "$BACKLOG" \
  --duration 120s --connections "$BACKLOG_CONNS" --timeout 10s)
# Wait (at most 60 s) until the signer has taken every request off the stream.
ingest_start=$(date +%s.%N); INGESTED="not within 60 s"
for _ in $(seq 1 600); do
  if [[ $(stream_counts) == *"SIGN_REQUESTS=0"* ]]; then
    INGESTED="$(awk -v a="$ingest_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f s", b - a}')"; break
  fi
  sleep 0.1
done
sleep 1
API_RSS_BACKLOG=$(rss_kb "$API_PID"); SIGNER_RSS_BACKLOG=$(rss_kb "$SIGNER_PID"); NATS_RSS_BACKLOG=$(rss_kb "$NATS_PID")
NOTIFIER_RSS_BACKLOG=$(rss_kb "$NOTIFIER_PID")
STREAMS=$(stream_counts)

C=$(run_wrk new-202 "$CONNS_202" "$DIR/new.lua" "$API/")
AUDIT=$(curl -s --max-time 5 "http://127.0.0.1:$SIM_PORT/admin/audit/summary" || echo '?')

# ------------------------------------------------------------------ table
ratio() { awk -v b="$1" -v a="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "?" }'; }
{
  echo
  echo "Hot path, $(nproc) cores, wrk -t$THREADS, ${SECS}s per run, all on 127.0.0.1 (load tool shares the cores)"
  echo "NATS: $NODES node(s), NATS_REPLICAS=$NODES"
  echo "load average before the run: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%-44s %10s %10s %10s %10s %8s  %s\n' "case" "requests" "req/s" "p50 ms" "p99 ms" "errors" "answers"
  row() { # NAME RESULT ANSWERS
    printf '%-44s %10s %10s %10s %10s %8s  %s\n' "$1" "$(field "$2" requests)" "$(field "$2" rps)" \
      "$(field "$2" p50_ms)" "$(field "$2" p99_ms)" "$(field "$2" errors)" "$3"
  }
  row "(a) axum hello-world, c=$CONNS" "$A" "200"
  row "(b) cached 200 GET /crypto/sign, c=$CONNS" "$B" "after: $B_CODE"
  row "(c) new message -> 202, c=$CONNS_202" "$C" "$(sed -n 's/.*\(200=.*\)/\1/p' <<<"$C")"
  echo "cached/hello throughput ratio: $(ratio "$(field "$B" rps)" "$(field "$A" rps)")"
  echo
  echo "Fixed rate (load example, latency from each request's due time):"
  printf '%-44s %10s %10s %10s %10s %8s  %s\n' "(b) cached at 1000 req/s, c=64" "$(field "$R" requests)" \
    "$(field "$R" rps)" "$(field "$R" p50_ms)" "$(field "$R" p99_ms)" "$(field "$R" errors)" "$(field "$R" status)"
  printf '%-44s %10s %10s %10s %10s %8s  %s\n' "backlog: $BACKLOG new, c=$BACKLOG_CONNS" "$(field "$L" requests)" \
    "$(field "$L" rps)" "$(field "$L" p50_ms)" "$(field "$L" p99_ms)" "$(field "$L" errors)" "$(field "$L" status)"
  echo
  echo "RSS (VmRSS, MiB)"
  printf '%-14s %8s %16s\n' "service" "idle" "under backlog"
  printf '%-14s %8s %16s\n' "nats-server$([[ $NODES == 1 ]] || echo ' n0')" "$(mb "${IDLE[nats]}")" "$(mb "$NATS_RSS_BACKLOG")"
  printf '%-14s %8s %16s\n' upstream-sim "$(mb "${IDLE[upstream-sim]}")" "-"
  printf '%-14s %8s %16s\n' signer "$(mb "${IDLE[signer]}")" "$(mb "$SIGNER_RSS_BACKLOG")"
  printf '%-14s %8s %16s\n' notifier "$(mb "${IDLE[notifier]}")" "$(mb "$NOTIFIER_RSS_BACKLOG")"
  printf '%-14s %8s %16s\n' api "$(mb "${IDLE[api]}")" "$(mb "$API_RSS_BACKLOG")"
  printf '%-14s %8s %16s\n' hello "$(mb "${IDLE[hello]}")" "-"
  echo
  echo "signer took the backlog off SIGN_REQUESTS: $INGESTED after the last answer"
  echo "JetStream messages under the backlog (KV streams count revisions): $STREAMS"
  echo "upstream audit: $AUDIT"
}

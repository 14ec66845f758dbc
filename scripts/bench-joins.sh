#!/usr/bin/env bash
# Joins of one pending message, side by side with a baseline build.
#
# Each run starts nats-server, the simulator and the services (release
# builds), queues BENCH_AHEAD distinct messages so the budget (10 calls per
# 6 s) is saturated for a while (200 ahead: about 2 minutes), then sends
# BENCH_JOINS requests for one more message (the "hot" one, queued behind
# them, so it stays pending throughout) from BENCH_JOINS_CONNS connections at
# a fixed BENCH_JOINS_RATE a second (0: closed loop), for at most
# BENCH_JOINS_SECS. At a fixed rate each latency counts from when the request
# was due, so a server that falls behind shows it. Printed per run: joins
# answered per second, p50/p99/max, statuses, the other messages the
# upstream signed meanwhile (the simulator's audit), and how long after the
# last answer the signer had taken every request in.
#
# The baseline is the same script's run on another build of the services:
# BENCH_BASELINE_REF (a git ref, built in a temporary worktree sharing this
# target directory's dependencies; default e0c26bb, the last commit before
# joins became appends), or none with BENCH_BASELINE_REF=. The ratio line is
# this build over the baseline.
#
# Run: scripts/bench-joins.sh   (two release builds, then about 3 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

JOINS=${BENCH_JOINS:-20000}
CONNS=${BENCH_JOINS_CONNS:-200}
JOINS_SECS=${BENCH_JOINS_SECS:-120}
AHEAD=${BENCH_AHEAD:-200}
RATE=${BENCH_JOINS_RATE:-1000}
BASELINE_REF=${BENCH_BASELINE_REF-e0c26bb}

source scripts/lib/bench.sh
bench_dir bench-joins

# build SRC OUT: release binaries of SRC's services (and the load tool) into OUT.
build() {
  echo "== building release binaries of $1" >&2
  (cd "$1" && export CARGO_TARGET_DIR="$ROOT/target" \
    && cargo build --release -q -p api -p signer -p notifier -p upstream-sim --bins \
    && cargo build --release -q -p api --example load)
  mkdir -p "$2"
  for b in api signer notifier upstream-sim; do cp "$ROOT/target/release/$b" "$2/"; done
  cp "$ROOT/target/release/examples/load" "$2/"
}
if [[ -n $BASELINE_REF ]]; then
  git worktree add -q --detach "$DIR/baseline-src" "$BASELINE_REF"
  build "$DIR/baseline-src" "$DIR/baseline-bin"
fi
build "$ROOT" "$DIR/current-bin"

field() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }
requests_left() { # messages still on SIGN_REQUESTS
  curl -s --max-time 5 "http://127.0.0.1:$MON_PORT/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(st["state"]["messages"] for acc in d.get("account_details", [])
          for st in acc.get("stream_detail", []) if st["name"] == "SIGN_REQUESTS"))'
}
signed() { curl -s --max-time 5 "http://127.0.0.1:$SIM_PORT/admin/audit/summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["signed_messages"])'; }

# run LABEL BIN: one measured run; prints one result line.
run() {
  local label=$1 bin=$2
  BENCH_LOG_DIR="$DIR/$label"; mkdir -p "$BENCH_LOG_DIR"
  local nats_port sim_port api_port signer_port notifier_port tag
  nats_port=$(free_port); sim_port=$(free_port); api_port=$(free_port)
  signer_port=$(free_port); notifier_port=$(free_port); MON_PORT=$(free_port); SIM_PORT=$sim_port
  tag="$label-$(date +%s%N)"
  local api="http://127.0.0.1:$api_port"
  echo "== $label: starting services (logs in $BENCH_LOG_DIR)" >&2
  start nats nats-server -js -a 127.0.0.1 -p "$nats_port" -m "$MON_PORT" -sd "$BENCH_LOG_DIR/jetstream"
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done
  local common=(NATS_URL="nats://127.0.0.1:$nats_port" UPSTREAM_RATE_LIMIT=10 UPSTREAM_RATE_WINDOW=6s RUST_LOG=info)
  start upstream-sim env SIM_ADDR="127.0.0.1:$sim_port" SIM_API_KEY=bench-key SIM_SEED=1 \
    SIM_FIRST_TRY_SUCCESS=1 SIM_AUDIT_LIMIT=10 SIM_AUDIT_WINDOW=6s SIM_KEY_BITS=2048 "$bin/upstream-sim"
  start signer env "${common[@]}" UPSTREAM_URL="http://127.0.0.1:$sim_port" UPSTREAM_API_KEY=bench-key \
    UPSTREAM_RATE_MARGIN=300ms SIGNER_HEALTH_ADDR="127.0.0.1:$signer_port" SIGNER_ID=bench "$bin/signer"
  start notifier env "${common[@]}" NOTIFIER_HEALTH_ADDR="127.0.0.1:$notifier_port" "$bin/notifier"
  start api env "${common[@]}" API_ADDR="127.0.0.1:$api_port" BACKLOG_HORIZON=100000h "$bin/api"
  wait_ok "http://127.0.0.1:$sim_port/healthz" upstream-sim
  wait_ok "$api/readyz" api
  wait_ok "http://127.0.0.1:$signer_port/readyz" signer
  wait_ok "http://127.0.0.1:$notifier_port/readyz" notifier

  echo "== $label: $AHEAD messages ahead, then $JOINS joins of one message ($CONNS connections)" >&2
  "$bin/load" --label ahead --url "$api/crypto/sign?message=ahead-$tag-{n}" --count "$AHEAD" \
    --connections 50 --duration 30s --timeout 10s >"$BENCH_LOG_DIR/ahead.out"
  for _ in $(seq 1 100); do [[ $(requests_left) == 0 ]] && break; sleep 0.1; done
  local before after line t0 ingested="over 120 s"
  before=$(signed)
  line=$("$bin/load" --label joins --url "$api/crypto/sign?message=hot-$tag" --count "$JOINS" \
    --rate "$RATE" --connections "$CONNS" --duration "${JOINS_SECS}s" --timeout 10s)
  after=$(signed)
  t0=$(date +%s.%N)
  for _ in $(seq 1 1200); do
    if [[ $(requests_left) == 0 ]]; then
      ingested=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f s", b - a}'); break
    fi
    sleep 0.1
  done
  stop_all
  echo "$label $line signed_meanwhile=$((after - before)) ingested_after=\"$ingested\""
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Not in $(...): a run must stay in this shell, so that the exit trap stops
# its processes if it fails.
results=()
if [[ -n $BASELINE_REF ]]; then
  run baseline "$DIR/baseline-bin" >"$DIR/baseline.result"
  results+=("$(cat "$DIR/baseline.result")")
fi
run current "$DIR/current-bin" >"$DIR/current.result"
results+=("$(cat "$DIR/current.result")")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "Joins of one pending message: up to $JOINS requests from $CONNS connections at $RATE/s (0: closed loop), at most ${JOINS_SECS}s,"
echo "behind $AHEAD queued messages, budget 10 calls per 6 s; 2 cores, all on 127.0.0.1"
echo "load average before: $LOAD_BEFORE; after: $LOAD_AFTER; baseline: ${BASELINE_REF:-none}"
printf '%-9s %8s %9s %9s %9s %9s %-22s %9s %s\n' run answered 'joins/s' 'p50 ms' 'p99 ms' 'max ms' statuses 'signed' 'all taken in after'
for r in "${results[@]}"; do
  printf '%-9s %8s %9s %9s %9s %9s %-22s %9s %s\n' "${r%% *}" "$(field "$r" requests)" "$(field "$r" rps)" \
    "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" "$(field "$r" max_ms)" "$(field "$r" status)" \
    "$(field "$r" signed_meanwhile)" "$(sed -n 's/.*ingested_after="\([^"]*\)".*/\1/p' <<<"$r")"
done
if ((${#results[@]} == 2)); then
  b=$(field "${results[0]}" rps); c=$(field "${results[1]}" rps)
  awk -v b="$b" -v c="$c" 'BEGIN { if (b > 0) printf "current/baseline joins per second: %.1f\n", c / b }'
fi

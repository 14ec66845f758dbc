#!/usr/bin/env bash
# The 2-second promise under overload, side by side with a baseline build.
#
# Each run starts nats-server, the simulator, a signer and the api (release
# builds), then BENCH_OVERLOAD_CONNS (default "1000 4000") callers at once,
# each sending new messages one after another (closed loop: the next as soon
# as its answer is in) for BENCH_OVERLOAD_SECS (default 20). Latency counts
# from when the request was due (its connection's handshake included) and
# from when it was written (the kernel's accept queue included, a SYN
# retried for want of room in it not). Printed per run: answers
# per second, p50/p99/max and statuses. The promise to check in them: every
# answer leaves within 2 s, 200/202 or a fast 503/429. BACKLOG_HORIZON is raised so that the accept
# path, not the backlog refusal, is measured.
#
# The baseline is the same run on another build: BENCH_BASELINE_REF (a git
# ref built in a temporary worktree; default 0b8f509, the last commit before
# shedding), or none with BENCH_BASELINE_REF=.
#
# Run: scripts/bench-overload.sh   (two release builds, then about 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CONNS_LIST=${BENCH_OVERLOAD_CONNS:-1000 4000}
SECS=${BENCH_OVERLOAD_SECS:-20}
BASELINE_REF=${BENCH_BASELINE_REF-0b8f509}

source scripts/lib/bench.sh
bench_dir bench-overload

# build SRC OUT: release binaries of SRC's services into OUT.
build() {
  echo "== building release binaries of $1" >&2
  (cd "$1" && export CARGO_TARGET_DIR="$ROOT/target" \
    && cargo build --release -q -p api -p signer -p upstream-sim --bins)
  mkdir -p "$2"
  for b in api signer upstream-sim; do cp "$ROOT/target/release/$b" "$2/"; done
}
if [[ -n $BASELINE_REF ]]; then
  git worktree add -q --detach "$DIR/baseline-src" "$BASELINE_REF"
  build "$DIR/baseline-src" "$DIR/baseline-bin"
fi
build "$ROOT" "$DIR/current-bin"
# One load tool, this tree's, measures both builds.
CARGO_TARGET_DIR="$ROOT/target" cargo build --release -q -p api --example load
LOAD="$DIR/load"; cp "$ROOT/target/release/examples/load" "$LOAD"

field() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }

# run LABEL BIN CONNS: one measured run; prints one result line.
run() {
  local label=$1 bin=$2 conns=$3
  BENCH_LOG_DIR="$DIR/$label-$conns"; mkdir -p "$BENCH_LOG_DIR"
  local nats_port sim_port api_port signer_port mon_port tag
  nats_port=$(free_port); sim_port=$(free_port); api_port=$(free_port)
  signer_port=$(free_port); mon_port=$(free_port)
  tag="$label-$conns-$(date +%s%N)"
  local api="http://127.0.0.1:$api_port"
  echo "== $label, $conns connections: starting services (logs in $BENCH_LOG_DIR)" >&2
  start nats nats-server -js -a 127.0.0.1 -p "$nats_port" -m "$mon_port" -sd "$BENCH_LOG_DIR/jetstream"
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done
  local common=(NATS_URL="nats://127.0.0.1:$nats_port" UPSTREAM_RATE_LIMIT=10 UPSTREAM_RATE_WINDOW=6s RUST_LOG=warn)
  start upstream-sim env SIM_ADDR="127.0.0.1:$sim_port" SIM_API_KEY=bench-key SIM_SEED=1 \
    SIM_AUDIT_LIMIT=10 SIM_AUDIT_WINDOW=6s SIM_KEY_BITS=2048 "$bin/upstream-sim"
  start signer env "${common[@]}" UPSTREAM_URL="http://127.0.0.1:$sim_port" UPSTREAM_API_KEY=bench-key \
    UPSTREAM_RATE_MARGIN=300ms SIGNER_HEALTH_ADDR="127.0.0.1:$signer_port" SIGNER_ID=bench "$bin/signer"
  start api env "${common[@]}" API_ADDR="127.0.0.1:$api_port" BACKLOG_HORIZON=100000h "$bin/api"
  wait_ok "http://127.0.0.1:$sim_port/healthz" upstream-sim
  wait_ok "$api/readyz" api
  wait_ok "http://127.0.0.1:$signer_port/readyz" signer
  local line
  line=$("$LOAD" --label "$label" --url "$api/crypto/sign?message=overload-$tag-{n}" \
    --count 100000000 --connections "$conns" --duration "${SECS}s" --timeout 10s)
  stop_all
  echo "$label c=$conns $line"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
results=()
for conns in $CONNS_LIST; do
  if [[ -n $BASELINE_REF ]]; then
    run baseline "$DIR/baseline-bin" "$conns" >"$DIR/r.txt"; results+=("$(cat "$DIR/r.txt")")
  fi
  run current "$DIR/current-bin" "$conns" >"$DIR/r.txt"; results+=("$(cat "$DIR/r.txt")")
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "New messages from N callers at once, closed loop, ${SECS}s per run; 2 cores, all on 127.0.0.1 (load tool shares the cores)"
echo "load average before: $LOAD_BEFORE; after: $LOAD_AFTER; baseline: ${BASELINE_REF:-none}"
echo "latency from when the request was due (its connection's handshake included) and, w-, from when it was written"
printf '%-9s %6s %9s %9s %8s %8s %8s %8s %8s %6s  %s\n' run conns answered 'ans/s' 'p50 ms' 'p99 ms' 'max ms' 'w-p99' 'w-max' errors statuses
for r in "${results[@]}"; do
  read -r label conns _ <<<"$r"
  printf '%-9s %6s %9s %9s %8s %8s %8s %8s %8s %6s  %s\n' "$label" "${conns#c=}" "$(field "$r" requests)" "$(field "$r" rps)" \
    "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" "$(field "$r" max_ms)" "$(field "$r" write_p99_ms)" \
    "$(field "$r" write_max_ms)" "$(field "$r" errors)" "$(field "$r" status)"
done

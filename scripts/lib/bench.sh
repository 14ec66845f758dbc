# Helpers shared by the benchmark scripts (sourced). The caller keeps PIDS
# (an array) and sets BENCH_LOG_DIR, where each process logs.

# bench_dir NAME: nats-server at hand, room for many connections, and a
# temporary DIR; on exit every process started is stopped, a baseline
# worktree in DIR/baseline-src removed, and DIR deleted (kept, with its
# logs, when KEEP_BENCH_DIR is set).
bench_dir() {
  command -v nats-server >/dev/null || scripts/install-nats-server.sh
  ulimit -n 65536 2>/dev/null || true
  DIR=$(mktemp -d -t "$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
bench_cleanup() {
  stop_all
  [[ -d $DIR/baseline-src ]] && git worktree remove --force "$DIR/baseline-src" 2>/dev/null
  if [[ -n ${KEEP_BENCH_DIR:-} ]]; then echo "logs kept in $DIR" >&2; else rm -rf "$DIR"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
# start NAME CMD... : run in the background with its own log; sets LAST_PID.
start() {
  local name=$1; shift
  "$@" >"$BENCH_LOG_DIR/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
# wait_ok URL WHAT: until URL answers 2xx (30 s), else show the logs and exit.
wait_ok() {
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not become ready ($1); logs in $BENCH_LOG_DIR" >&2
  tail -20 "$BENCH_LOG_DIR"/*.log >&2
  KEEP_BENCH_DIR=1
  exit 1
}

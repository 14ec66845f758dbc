#!/usr/bin/env bash
# The whole system on this machine, without Docker: nats-server (JetStream),
# the upstream simulator, the signer, the notifier and the api, as plain
# processes on 127.0.0.1. See docs/running-locally.md.
#
#   scripts/run-local.sh             # install nats-server if missing, build, start, wait until ready
#   scripts/run-local.sh --follow    # ... and tail every service's log, labelled
#   scripts/run-local.sh --fresh     # wipe the local state (.local/) first
#
# Ctrl-C (or SIGTERM) stops everything it started, in reverse order,
# gracefully (SIGTERM, a bounded wait, then SIGKILL).
#
# Settings are the variables docker-compose.yml reads, with the same defaults,
# taken from the environment or from `.env` in the project root (the
# environment wins, as with compose). Linux only (util-linux's `setsid`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'run-local: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

usage() {
  cat <<'EOF'
Usage: scripts/run-local.sh [--fresh] [--follow] [--no-build]

Starts nats-server, upstream-sim, signer, notifier and api on 127.0.0.1,
waits until each is ready, prints the URLs, and keeps running until Ctrl-C
(or SIGTERM), which stops them all.

  --fresh     wipe the local state first (the JetStream store and the logs
              under $LOCAL_DIR, default .local/)
  --follow    tail every service's log, interleaved, each line labelled with
              its service
  --no-build  skip `cargo build --workspace --bins` (use the binaries in
              $BIN_DIR, default target/debug)
  -h, --help  this text

Ports (127.0.0.1): API_PORT (8080), SIM_PORT (8081), NATS_PORT (4222),
NATS_MONITOR_PORT (8222), SIGNER_HEALTH_PORT (9101), NOTIFIER_HEALTH_PORT (9102).
Settings: the variables of docker-compose.yml, from the environment or .env
(ENV_FILE to read another file). Details: docs/running-locally.md.
EOF
}

fresh=0
follow=0
build=1
for arg in "$@"; do
  case "$arg" in
  --fresh) fresh=1 ;;
  --follow | -f) follow=1 ;;
  --no-build) build=0 ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    usage >&2
    die "unknown option: $arg"
    ;;
  esac
done

if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 3))); then
  die "bash 4.3 or newer is needed (this is $BASH_VERSION)"
fi
for tool in setsid curl; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is needed and not on PATH"
done

# ------------------------------------------------------------------ settings
# Every variable this script reads. Only these are taken from the env file,
# and only when the environment does not already set them.
known_vars=(
  # where things go
  LOCAL_DIR BIN_DIR READY_TIMEOUT STOP_TIMEOUT
  # ports
  API_PORT SIM_PORT NATS_PORT NATS_MONITOR_PORT SIGNER_HEALTH_PORT NOTIFIER_HEALTH_PORT
  # all services
  RUST_LOG LOG_FORMAT UPSTREAM_RATE_LIMIT UPSTREAM_RATE_WINDOW WEBHOOK_ALLOWED_CIDRS
  # upstream-sim
  SIM_API_KEY SIM_KEY_BITS SIM_RSA_KEY_FILE SIM_SEED SIM_FIRST_TRY_SUCCESS
  SIM_DEGRADED_MIN SIM_DEGRADED_MAX SIM_TIME_SCALE SIM_CHAOS_LATENCY_P
  SIM_CHAOS_LATENCY SIM_CHAOS_HANG_P SIM_CHAOS_500_P SIM_CHAOS_GARBAGE_P
  SIM_CHAOS_RESET_P SIM_CHAOS_ARRIVAL_DELAY_P SIM_CHAOS_ARRIVAL_DELAY_MAX
  SIM_AUDIT_WINDOW SIM_AUDIT_LIMIT SIM_ENFORCE_LIMIT SIM_RUST_LOG
  # signer
  UPSTREAM_URL UPSTREAM_API_KEY UPSTREAM_RATE_MARGIN UPSTREAM_TIMEOUT
  RETRY_MIN_BACKOFF RETRY_SETTLE AUTH_RETRY_INTERVAL
  # notifier
  WEBHOOK_SECRET WEBHOOK_REQUIRE_SECRET WEBHOOK_RETRY_SCHEDULE WEBHOOK_RETRY_JITTER
  WEBHOOK_TIMEOUT WEBHOOK_CONCURRENCY WEBHOOK_PER_HOST_CONCURRENCY REPLY_GRACE
  WEBHOOK_CIRCUIT_FAILURES WEBHOOK_CIRCUIT_OPEN WEBHOOK_CIRCUIT_OPEN_MAX
  NOTIFIER_DRAIN_TIMEOUT
  # api
  SIGN_WAIT MAX_MESSAGE_BYTES PUBLIC_BASE_URL BACKLOG_HORIZON RESULT_CACHE_ENTRIES
)

is_known() {
  local k
  for k in "${known_vars[@]}"; do [[ $k == "$1" ]] && return 0; done
  return 1
}

# A compose-style env file: KEY=VALUE lines, `#` comments, optional `export`,
# optional single or double quotes, ` # comment` after an unquoted value.
# Never sourced (nothing in it is executed).
env_file="${ENV_FILE:-$root/.env}"
from_file=()
ignored=()
if [[ -f $env_file ]]; then
  n=0
  while IFS= read -r line || [[ -n $line ]]; do
    n=$((n + 1))
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    [[ -z $line || $line == \#* ]] && continue
    [[ $line == export[[:space:]]* ]] && line="${line#export}" && line="${line#"${line%%[![:space:]]*}"}"
    if [[ $line != *=* ]]; then
      say "warning: $env_file:$n is not KEY=VALUE; ignored"
      continue
    fi
    key="${line%%=*}"
    key="${key%"${key##*[![:space:]]}"}"
    value="${line#*=}"
    value="${value#"${value%%[![:space:]]*}"}"
    if [[ $value == \"* ]]; then
      value="${value:1}"
      value="${value%%\"*}"
    elif [[ $value == \'* ]]; then
      value="${value:1}"
      value="${value%%\'*}"
    else
      value="${value%%[[:space:]]#*}"
      value="${value%"${value##*[![:space:]]}"}"
    fi
    if [[ ! $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || ! is_known "$key"; then
      ignored+=("$key")
      continue
    fi
    if [[ -z ${!key+set} ]]; then
      printf -v "$key" '%s' "$value"
      from_file+=("$key")
    fi
  done <"$env_file"
  say "read ${#from_file[@]} setting(s) from ${env_file#"$root"/} (the environment wins over it)${ignored:+; not used here: ${ignored[*]}}"
fi

local_dir="${LOCAL_DIR:-$root/.local}"
[[ $local_dir == /* ]] || local_dir="$root/$local_dir"
if [[ -n ${BIN_DIR:-} ]]; then
  bin_dir="$BIN_DIR"
else
  target="${CARGO_TARGET_DIR:-$root/target}"
  [[ $target == /* ]] || target="$root/$target"
  bin_dir="$target/debug"
fi
ready_timeout="${READY_TIMEOUT:-60}"
[[ $ready_timeout =~ ^[0-9]+$ ]] || die "READY_TIMEOUT must be whole seconds, not '$ready_timeout'"

declare -A port
port[api]="${API_PORT:-8080}"
port[upstream-sim]="${SIM_PORT:-8081}"
port[nats]="${NATS_PORT:-4222}"
port[nats-monitor]="${NATS_MONITOR_PORT:-8222}"
port[signer]="${SIGNER_HEALTH_PORT:-9101}"
port[notifier]="${NOTIFIER_HEALTH_PORT:-9102}"
declare -A port_var=(
  [api]=API_PORT [upstream-sim]=SIM_PORT [nats]=NATS_PORT
  [nats-monitor]=NATS_MONITOR_PORT [signer]=SIGNER_HEALTH_PORT [notifier]=NOTIFIER_HEALTH_PORT
)
port_order=(nats nats-monitor upstream-sim signer notifier api)
declare -A seen_port=()
for what in "${port_order[@]}"; do
  p="${port[$what]}"
  if [[ ! $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then
    die "${port_var[$what]}=$p is not a port number"
  fi
  [[ -z ${seen_port[$p]:-} ]] || die "${port_var[$what]} and ${seen_port[$p]} are both $p"
  seen_port[$p]="${port_var[$what]}"
done

sim_url="http://127.0.0.1:${port[upstream-sim]}"
api_url="http://127.0.0.1:${port[api]}"
nats_url="nats://127.0.0.1:${port[nats]}"

# ------------------------------------------------------------------ checks
# Which of the ports given cannot be listened on at 127.0.0.1, as the
# services will listen (with SO_REUSEADDR, as Rust's and Go's listeners do,
# so ports left in TIME_WAIT by a previous run do not count as taken).
taken_ports() {
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$@" <<'PY'
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(p)))
        s.listen(1)
    except OSError:
        print(p)
    finally:
        s.close()
PY
  else
    # Without python3: taken when something answers on it.
    local p
    for p in "$@"; do
      if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; fi
    done
  fi
}

port_holder() {
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -1
  fi
}

check_ports() {
  local what p holder all=() taken
  for what in "${port_order[@]}"; do all+=("${port[$what]}"); done
  taken=" $(taken_ports "${all[@]}" | tr '\n' ' ')"
  [[ $taken == " " ]] && return 0
  for what in "${port_order[@]}"; do
    p="${port[$what]}"
    if [[ $taken == *" $p "* ]]; then
      holder="$(port_holder "$p")"
      say "error: port $p for $what (${port_var[$what]}) is already in use${holder:+ by $holder}"
    fi
  done
  say "nothing was started. Stop what holds the port(s), or choose others, e.g."
  say "  API_PORT=18080 SIM_PORT=18081 scripts/run-local.sh"
  exit 1
}

mkdir -p "$local_dir"
pids_file="$local_dir/pids"

# One run per state directory.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$local_dir/run.lock"
  flock -n 9 || die "another scripts/run-local.sh is running with $local_dir (LOCAL_DIR)"
fi

# Processes left behind by a run that could not clean up (killed with -9).
if [[ -f $pids_file ]]; then
  left=()
  stop_cmd=()
  while read -r name pid; do
    [[ $pid =~ ^[0-9]+$ ]] || continue
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    case "$name" in
    nats) want=nats-server ;;
    follow) want=bash ;; # the --follow pipeline: its whole process group
    *) want="$name" ;;
    esac
    [[ $comm == "$want" ]] || continue
    if [[ $name == follow ]]; then
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q follow_logs || continue
      stop_cmd+=("-$pid")
    else
      stop_cmd+=("$pid")
    fi
    left+=("$name=$pid")
  done <"$pids_file"
  if ((${#left[@]})); then
    say "error: processes of an earlier run are still running: ${left[*]}"
    say "stop them first: kill -- ${stop_cmd[*]}"
    exit 1
  fi
fi

check_ports

scripts/install-nats-server.sh
nats_bin="$(command -v nats-server)" || die "nats-server is not on PATH"

if ((build)); then
  say "building: cargo build --workspace --bins"
  cargo build --workspace --bins
fi
for b in upstream-sim signer notifier api; do
  [[ -x $bin_dir/$b ]] || die "$bin_dir/$b is missing: build it (cargo build --workspace --bins) or drop --no-build"
done

# The build can take minutes: check again just before starting.
check_ports

if ((fresh)); then
  say "--fresh: wiping $local_dir"
  find "$local_dir" -mindepth 1 -maxdepth 1 ! -name run.lock -exec rm -rf {} +
fi
log_dir="$local_dir/logs"
store_dir="$local_dir/nats"
mkdir -p "$log_dir" "$store_dir"
: >"$pids_file"

services=(nats upstream-sim signer notifier api)
for s in "${services[@]}"; do
  # One earlier run's log is kept as <service>.log.1.
  [[ -f $log_dir/$s.log ]] && mv -f "$log_dir/$s.log" "$log_dir/$s.log.1"
  : >"$log_dir/$s.log"
done

# ------------------------------------------------------------------ processes
names=()
pids=()
follow_pid=""
stopping=0
hurry=0

alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [[ $state != Z ]]
}

# stop NAME PID GRACE: SIGTERM, wait up to GRACE seconds, then SIGKILL.
stop_one() {
  local name="$1" pid="$2" grace="$3" waited=0
  alive "$pid" || {
    wait "$pid" 2>/dev/null || true
    return 0
  }
  say "stopping $name (pid $pid)"
  # Each child leads its own process group (setsid): signal the group.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  while alive "$pid"; do
    if ((hurry)) || ((waited >= grace * 10)); then
      say "$name did not stop$( ((hurry)) || printf ' within %ss' "$grace"); sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid" 2>/dev/null || true
}

# compose's stop_grace_period for each (10 s unless set there).
grace_for() {
  if [[ -n ${STOP_TIMEOUT:-} ]]; then
    echo "$STOP_TIMEOUT"
    return
  fi
  case "$1" in
  nats | signer | notifier) echo 30 ;;
  *) echo 10 ;;
  esac
}
[[ -z ${STOP_TIMEOUT:-} || $STOP_TIMEOUT =~ ^[0-9]+$ ]] || die "STOP_TIMEOUT must be whole seconds, not '$STOP_TIMEOUT'"

cleanup() {
  local status=$?
  ((stopping)) && return
  stopping=1
  # A second Ctrl-C while stopping: SIGKILL whatever is left.
  trap 'hurry=1' INT TERM
  set +e
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop_one "${names[$i]}" "${pids[$i]}" "$(grace_for "${names[$i]}")"
  done
  if [[ -n $follow_pid ]]; then
    sleep 0.2 # let the last lines through
    kill -TERM -- "-$follow_pid" 2>/dev/null || kill -TERM "$follow_pid" 2>/dev/null
    wait "$follow_pid" 2>/dev/null
  fi
  if ((${#pids[@]})); then
    say "stopped; state kept in ${store_dir#"$root"/} (--fresh wipes it), logs in ${log_dir#"$root"/}"
  fi
  return "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The environment each service gets: what compose passes, nothing else.
base_env=(PATH="$PATH" HOME="${HOME:-/}" HOSTNAME="${HOSTNAME:-localhost}")
for v in TZ NO_COLOR; do
  [[ -n ${!v:-} ]] && base_env+=("$v=${!v}")
done

# start NAME PROGRAM [ARG...] [-- VAR=VALUE...]: in its own session (so the
# terminal's Ctrl-C reaches only this script, which then stops everything in
# order), logging to $log_dir/NAME.log.
start() {
  local name="$1" program="$2"
  shift 2
  local args=() envs=()
  while (($#)) && [[ $1 != -- ]]; do
    args+=("$1")
    shift
  done
  (($#)) && shift
  envs=("$@")
  # Non-interactive bash runs background commands in its own process group,
  # so `setsid` calls setsid(2) and execs without forking: $! is the service.
  setsid env -i "${base_env[@]}" "${envs[@]}" "$program" "${args[@]}" \
    >>"$log_dir/$name.log" 2>&1 </dev/null 9>&- &
  local pid=$!
  names+=("$name")
  pids+=("$pid")
  printf '%s %s\n' "$name" "$pid" >>"$pids_file"
}

log_tail() {
  say "last lines of ${log_dir#"$root"/}/$1.log:"
  tail -n 25 "$log_dir/$1.log" | sed 's/^/    /' >&2
}

# wait_ready NAME URL: poll until URL answers 2xx, the process dies, or
# READY_TIMEOUT passes.
wait_ready() {
  local name="$1" url="$2" pid="${pids[-1]}"
  local deadline=$((SECONDS + ready_timeout))
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if ! alive "$pid"; then
      local rc=0
      wait "$pid" 2>/dev/null || rc=$?
      say "error: $name exited during start-up (status $rc)"
      log_tail "$name"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      say "error: $name is not ready at $url after ${ready_timeout}s (READY_TIMEOUT)"
      [[ $name == signer ]] && say "  (the signer is not ready while the upstream rejects UPSTREAM_API_KEY)"
      log_tail "$name"
      exit 1
    fi
    sleep 0.2
  done
  say "$name ready"
}

# --follow: every log from the start of this run, interleaved as lines
# arrive, each line labelled with its service (like `docker compose logs -f`).
# follow_logs COLOR FILE...: one `tail -F` per log, read line by line (no
# block buffering between the log and the terminal).
follow_logs() {
  local color="$1" f name prefix i=0 codes=(36 33 32 35 34 31)
  shift
  for f in "$@"; do
    name="${f##*/}"
    name="${name%.log}"
    if ((color)); then
      prefix="$(printf '\033[%sm%-12s |\033[0m ' "${codes[i % ${#codes[@]}]}" "$name")"
    else
      prefix="$(printf '%-12s | ' "$name")"
    fi
    tail -n +1 -F "$f" 2>/dev/null | while IFS= read -r line || [[ -n $line ]]; do
      printf '%s%s\n' "$prefix" "$line"
    done &
    i=$((i + 1))
  done
  wait
}

start_follow() {
  local files=() s color=0
  for s in "${services[@]}"; do files+=("$log_dir/$s.log"); done
  [[ -t 1 ]] && color=1
  # Its own process group too, so that stopping it stops every tail.
  setsid bash -c "$(declare -f follow_logs)"'; follow_logs "$@"' follow "$color" "${files[@]}" 9>&- &
  follow_pid=$!
  printf 'follow %s\n' "$follow_pid" >>"$pids_file"
}

# ------------------------------------------------------------------ start
started_at=$SECONDS
((follow)) && start_follow

# nats-server: the compose configuration (nats/nats.conf), on loopback.
nats_conf="$local_dir/nats.conf"
cat >"$nats_conf" <<EOF
# Written by scripts/run-local.sh at each start; nats/nats.conf is the model.
server_name: run-local
listen: 127.0.0.1:${port[nats]}
http: 127.0.0.1:${port[nats-monitor]}
ping_interval: "30s"
ping_max: 4
jetstream {
  store_dir: "$store_dir"
  sync_interval: always
  max_memory_store: 256MB
  max_file_store: 10GB
}
EOF
say "starting nats-server ($nats_url, store ${store_dir#"$root"/})"
start nats "$nats_bin" --config "$nats_conf"
wait_ready nats "http://127.0.0.1:${port[nats-monitor]}/healthz?js-enabled-only=true"

# The rest: docker-compose.yml's environment, with addresses on 127.0.0.1.
# As in compose, an empty WEBHOOK_ALLOWED_CIDRS stays empty (only public
# webhook targets); unset, loopback is allowed so the simulator's inbox works.
allowed_cidrs="${WEBHOOK_ALLOWED_CIDRS-127.0.0.0/8}"
log_format="${LOG_FORMAT:-text}"

say "starting upstream-sim ($sim_url)"
start upstream-sim "$bin_dir/upstream-sim" -- \
  SIM_ADDR="127.0.0.1:${port[upstream-sim]}" \
  SIM_API_KEY="${SIM_API_KEY:-dev-key}" \
  SIM_KEY_BITS="${SIM_KEY_BITS:-2048}" \
  SIM_RSA_KEY_FILE="${SIM_RSA_KEY_FILE:-}" \
  SIM_SEED="${SIM_SEED:-}" \
  SIM_FIRST_TRY_SUCCESS="${SIM_FIRST_TRY_SUCCESS:-0.5}" \
  SIM_DEGRADED_MIN="${SIM_DEGRADED_MIN:-1m}" \
  SIM_DEGRADED_MAX="${SIM_DEGRADED_MAX:-5m}" \
  SIM_TIME_SCALE="${SIM_TIME_SCALE:-1}" \
  SIM_CHAOS_LATENCY_P="${SIM_CHAOS_LATENCY_P:-0}" \
  SIM_CHAOS_LATENCY="${SIM_CHAOS_LATENCY:-3s}" \
  SIM_CHAOS_HANG_P="${SIM_CHAOS_HANG_P:-0}" \
  SIM_CHAOS_500_P="${SIM_CHAOS_500_P:-0}" \
  SIM_CHAOS_GARBAGE_P="${SIM_CHAOS_GARBAGE_P:-0}" \
  SIM_CHAOS_RESET_P="${SIM_CHAOS_RESET_P:-0}" \
  SIM_CHAOS_ARRIVAL_DELAY_P="${SIM_CHAOS_ARRIVAL_DELAY_P:-0}" \
  SIM_CHAOS_ARRIVAL_DELAY_MAX="${SIM_CHAOS_ARRIVAL_DELAY_MAX:-2s}" \
  SIM_AUDIT_WINDOW="${SIM_AUDIT_WINDOW:-60s}" \
  SIM_AUDIT_LIMIT="${SIM_AUDIT_LIMIT:-10}" \
  SIM_ENFORCE_LIMIT="${SIM_ENFORCE_LIMIT:-true}" \
  RUST_LOG="${SIM_RUST_LOG:-info}" \
  LOG_FORMAT="$log_format"
wait_ready upstream-sim "$sim_url/healthz"

say "starting signer (health on 127.0.0.1:${port[signer]})"
start signer "$bin_dir/signer" -- \
  NATS_URL="$nats_url" \
  UPSTREAM_URL="${UPSTREAM_URL:-$sim_url}" \
  UPSTREAM_API_KEY="${UPSTREAM_API_KEY:-dev-key}" \
  UPSTREAM_RATE_LIMIT="${UPSTREAM_RATE_LIMIT:-10}" \
  UPSTREAM_RATE_WINDOW="${UPSTREAM_RATE_WINDOW:-60s}" \
  UPSTREAM_RATE_MARGIN="${UPSTREAM_RATE_MARGIN:-500ms}" \
  UPSTREAM_TIMEOUT="${UPSTREAM_TIMEOUT:-10s}" \
  RETRY_MIN_BACKOFF="${RETRY_MIN_BACKOFF:-30s}" \
  RETRY_SETTLE="${RETRY_SETTLE:-300s}" \
  AUTH_RETRY_INTERVAL="${AUTH_RETRY_INTERVAL:-60s}" \
  SIGNER_HEALTH_ADDR="127.0.0.1:${port[signer]}" \
  RUST_LOG="${RUST_LOG:-info}" \
  LOG_FORMAT="$log_format"
wait_ready signer "http://127.0.0.1:${port[signer]}/readyz"

say "starting notifier (health on 127.0.0.1:${port[notifier]})"
start notifier "$bin_dir/notifier" -- \
  NATS_URL="$nats_url" \
  WEBHOOK_SECRET="${WEBHOOK_SECRET:-}" \
  WEBHOOK_REQUIRE_SECRET="${WEBHOOK_REQUIRE_SECRET:-false}" \
  WEBHOOK_ALLOWED_CIDRS="$allowed_cidrs" \
  WEBHOOK_RETRY_SCHEDULE="${WEBHOOK_RETRY_SCHEDULE:-0s,5s,5m,30m,2h,5h,10h,10h}" \
  WEBHOOK_RETRY_JITTER="${WEBHOOK_RETRY_JITTER:-0.2}" \
  WEBHOOK_TIMEOUT="${WEBHOOK_TIMEOUT:-15s}" \
  WEBHOOK_CONCURRENCY="${WEBHOOK_CONCURRENCY:-64}" \
  WEBHOOK_PER_HOST_CONCURRENCY="${WEBHOOK_PER_HOST_CONCURRENCY:-4}" \
  WEBHOOK_CIRCUIT_FAILURES="${WEBHOOK_CIRCUIT_FAILURES:-5}" \
  WEBHOOK_CIRCUIT_OPEN="${WEBHOOK_CIRCUIT_OPEN:-30s}" \
  WEBHOOK_CIRCUIT_OPEN_MAX="${WEBHOOK_CIRCUIT_OPEN_MAX:-5m}" \
  REPLY_GRACE="${REPLY_GRACE:-5s}" \
  NOTIFIER_DRAIN_TIMEOUT="${NOTIFIER_DRAIN_TIMEOUT:-10s}" \
  NOTIFIER_HEALTH_ADDR="127.0.0.1:${port[notifier]}" \
  RUST_LOG="${RUST_LOG:-info}" \
  LOG_FORMAT="$log_format"
wait_ready notifier "http://127.0.0.1:${port[notifier]}/readyz"

say "starting api ($api_url)"
start api "$bin_dir/api" -- \
  API_ADDR="127.0.0.1:${port[api]}" \
  NATS_URL="$nats_url" \
  SIGN_WAIT="${SIGN_WAIT:-1500ms}" \
  MAX_MESSAGE_BYTES="${MAX_MESSAGE_BYTES:-4096}" \
  WEBHOOK_ALLOWED_CIDRS="$allowed_cidrs" \
  PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-}" \
  BACKLOG_HORIZON="${BACKLOG_HORIZON:-24h}" \
  RESULT_CACHE_ENTRIES="${RESULT_CACHE_ENTRIES:-20000}" \
  RUST_LOG="${RUST_LOG:-info}" \
  LOG_FORMAT="$log_format"
wait_ready api "$api_url/readyz"

# ------------------------------------------------------------------ ready
inbox="$sim_url/webhooks/inbox"
rel_logs="${log_dir#"$root"/}"
{
  echo
  echo "run-local: ready in $((SECONDS - started_at))s"
  echo "  api            $api_url"
  echo "  status page    $api_url/status"
  echo "  simulator      $sim_url   (webhook inbox: $inbox)"
  echo "  nats           $nats_url   (monitoring: http://127.0.0.1:${port[nats-monitor]})"
  echo "  upstream       ${UPSTREAM_URL:-$sim_url}$([[ -n ${UPSTREAM_URL:-} && $UPSTREAM_URL != "$sim_url" ]] && echo '   (not the simulator)')"
  echo "  logs           $rel_logs/{nats,upstream-sim,signer,notifier,api}.log"
  echo "  state          ${store_dir#"$root"/}   (kept between runs; --fresh wipes it)"
  echo
  echo "Try it:"
  echo "  curl -s '$api_url/crypto/sign?message=hello&webhook_url=$inbox'"
  echo "  curl -s $inbox"
  if [[ $allowed_cidrs != *127.* ]]; then
    echo "  (WEBHOOK_ALLOWED_CIDRS='$allowed_cidrs' does not open loopback: a webhook_url on 127.0.0.1 is refused)"
  fi
  if [[ ${SIM_TIME_SCALE:-1} == 1 && -z ${UPSTREAM_URL:-} ]]; then
    echo "  (the simulator runs in real time: a failing message recovers after 1-5 minutes; SIM_TIME_SCALE=60 makes them seconds)"
  fi
  echo
  echo "Ctrl-C stops everything."
}

# Keep running until a signal (the traps stop everything) or a service exits
# on its own (then report it and stop the rest).
while :; do
  wait -n || true
  for i in "${!pids[@]}"; do
    if ! alive "${pids[$i]}"; then
      rc=0
      wait "${pids[$i]}" 2>/dev/null || rc=$?
      say "error: ${names[$i]} (pid ${pids[$i]}) exited on its own (status $rc); stopping the rest"
      log_tail "${names[$i]}"
      exit 1
    fi
  done
done

#!/usr/bin/env bash
# Property-based API test: runs the whole pipeline (nats-server, upstream-sim,
# signer, notifier, api) on free ports with a throwaway JetStream store, and
# lets schemathesis drive the api from its own OpenAPI document
# (GET /openapi.json). Fails on any 5xx and on any answer the document does
# not describe (status, content type, headers, body schema).
#
#   scripts/schemathesis.sh                       # the CI run
#   SCHEMATHESIS_MAX_EXAMPLES=50 scripts/schemathesis.sh --seed 1   # extra args go to `schemathesis run`
#
# The 503s the document allows (backlog full, NATS unreachable) cannot occur
# here (24 h horizon, a local broker), so `not_a_server_error` stays strict.
# SIGN_WAIT is cut to 300ms: the answers' shapes do not depend on it, and
# repeated messages (which wait it out) would otherwise dominate the run.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

version=4.32.5
venv="$root/target/schemathesis-venv"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-200}"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $version"; then
  echo "installing schemathesis $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
scripts/install-nats-server.sh
cargo build --bins -p api -p signer -p notifier -p upstream-sim

work="$(mktemp -d "${TMPDIR:-/tmp}/schemathesis.XXXXXX")"
pids=()
cleanup() {
  status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -e "$log" ] || continue
      echo "--- last lines of $(basename "$log")" >&2
      tail -n 5 "$log" >&2
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME ENV... -- PROGRAM ARGS...: run in the background, log to $work/NAME.log.
start() {
  local name=$1
  shift
  local env=()
  while [ "$1" != "--" ]; do env+=("$1"); shift; done
  shift
  env "${env[@]}" "$@" >"$work/$name.log" 2>&1 &
  pids+=("$!")
}

# wait_ok NAME URL: until URL answers 2xx (30 s).
wait_ok() {
  for _ in $(seq 300); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$1 did not become ready at $2" >&2
  return 1
}

nats_port=$(free_port)
sim_port=$(free_port)
api_port=$(free_port)
signer_port=$(free_port)
notifier_port=$(free_port)
nats_url="nats://127.0.0.1:$nats_port"
bin="$root/target/debug"

start nats -- nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$work/jetstream"
start upstream-sim SIM_ADDR="127.0.0.1:$sim_port" SIM_API_KEY=test-key SIM_SEED=7 \
  SIM_FIRST_TRY_SUCCESS=0.5 SIM_TIME_SCALE=60 -- "$bin/upstream-sim"
wait_ok upstream-sim "http://127.0.0.1:$sim_port/healthz"
common=(NATS_URL="$nats_url" WEBHOOK_ALLOWED_CIDRS=127.0.0.0/8 RUST_LOG=info NO_COLOR=1)
start signer "${common[@]}" UPSTREAM_URL="http://127.0.0.1:$sim_port" UPSTREAM_API_KEY=test-key \
  SIGNER_HEALTH_ADDR="127.0.0.1:$signer_port" -- "$bin/signer"
start notifier "${common[@]}" NOTIFIER_HEALTH_ADDR="127.0.0.1:$notifier_port" -- "$bin/notifier"
start api "${common[@]}" API_ADDR="127.0.0.1:$api_port" SIGN_WAIT=300ms -- "$bin/api"
wait_ok api "http://127.0.0.1:$api_port/readyz"
wait_ok signer "http://127.0.0.1:$signer_port/readyz"
wait_ok notifier "http://127.0.0.1:$notifier_port/readyz"

# Run from $work so hypothesis' example database and reports stay out of the tree.
cd "$work"
"$venv/bin/schemathesis" run "http://127.0.0.1:$api_port/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
  --max-examples "$max_examples" \
  --request-timeout 10 \
  --generation-database none \
  --no-color \
  "$@"

#!/usr/bin/env bash
# The README's first command, run as a user runs it: `docker compose up
# --build` (`docker-compose up --build` with Compose v1) in this checkout,
# with the defaults (real timing: 10 calls per 60 s, a failing message
# recovers after 1-5 minutes), in a fresh compose project. Then the README's
# demo: its curl loop until a 202 comes back, and that job's webhook in the
# simulator's inbox.
#
# 1. docker/base-images.sh: the official base images, or local stand-ins
#    where none can be pulled (this machine has no registry).
# 2. `docker compose up --build` in the foreground, as the README has it,
#    its output in the log; the four service images are built from the real
#    Dockerfile.<service> files. The build time is printed.
# 3. Every container healthy; the README's "Try it" loop (taken from
#    README.md, not copied here), more messages in the same form until one
#    answers 202; its webhook (data.id = the job id) in the inbox at
#    http://localhost:8081/webhooks/inbox.
# 4. Ctrl-C (SIGINT) to the command, as a user stops it, then `down -v`.
#
# Leaves the built images (signing-gateway/<service>:latest) for
# scripts/compose-test.sh to run its scenarios on (COMPOSE_TEST_SKIP_BUILD=1).
# Needs the host ports 8080 and 8081 free, as the README's command does.
# Environment: README_TEST_WEBHOOK_TIMEOUT (480 s: the simulator's 5-minute
# worst case, the retry pacing and a margin). Logs: .e2e/readme-command/<run>/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
run="$(date +%m%d-%H%M%S)"
logdir="$repo/.e2e/readme-command/$run"
mkdir -p "$logdir"
t0=$SECONDS
say() { printf '[readme-command +%ds] %s\n' "$((SECONDS - t0))" "$*"; }

source scripts/lib/compose-command.sh

# A fresh project: nothing of an earlier run (containers, volumes) is reused.
export COMPOSE_PROJECT_NAME="readme-$run"
up_pid=""
cleanup() {
  local status=$?
  set +e
  [ -n "$up_pid" ] && kill -INT "$up_pid" 2>/dev/null && timeout 60 tail --pid="$up_pid" -f /dev/null
  timeout 120 "${COMPOSE[@]}" down -v --remove-orphans -t 5 >>"$logdir/down.log" 2>&1
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in 8080 8081; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "port $port is taken; the README's command needs it"
    exit 1
  fi
done

say "base images (docker/base-images.sh)"
docker/base-images.sh 2>"$logdir/base-images.log" || { tail -20 "$logdir/base-images.log"; exit 1; }
grep -E 'present|pulled|made' "$logdir/base-images.log" | sed 's/^\[base-images +[0-9]*s\] /    /'

say "${COMPOSE[*]} up --build (project $COMPOSE_PROJECT_NAME, log ${logdir#"$repo"/}/up.log)"
started=$SECONDS
"${COMPOSE[@]}" up --build >"$logdir/up.log" 2>&1 &
up_pid=$!

healthy() {
  local ids c n=0
  ids="$("${COMPOSE[@]}" ps -q 2>/dev/null)" || return 1
  for c in $ids; do
    [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$c" 2>/dev/null)" = healthy ] || return 1
    n=$((n + 1))
  done
  ((n == 5))
}
built=""
deadline=$((SECONDS + 3600))
until healthy; do
  kill -0 "$up_pid" 2>/dev/null || { tail -40 "$logdir/up.log"; say "the command exited before the system was healthy"; exit 1; }
  if [ -z "$built" ] && (($(grep -c '^Successfully tagged signing-gateway/' "$logdir/up.log") == 4)); then
    built=$((SECONDS - started))
    say "images built in ${built}s"
  fi
  ((SECONDS < deadline)) || { tail -40 "$logdir/up.log"; say "not healthy within an hour"; exit 1; }
  sleep 2
done
say "5 containers healthy $((SECONDS - started))s after the command"
# One build stage for four images: cargo ran at most twice (the dependency
# layer, then the workspace), never once per image.
cargo_runs="$(grep -c 'Finished `release` profile' "$logdir/up.log" || true)"
if ((cargo_runs > 2)); then
  say "cargo built $cargo_runs times for four images: the Dockerfiles' build stages differ"
  exit 1
fi
say "cargo runs in the build: $cargo_runs (0 when every layer was cached)"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^signing-gateway/' | sed 's/^/    /'

# The README's "Try it" loop: the first shell block after "## Try it", up to
# its `done`.
loop="$(awk '/^## Try it/ {t = 1} t && /^```sh/ {c = 1; next} c && /^```/ {exit} c' README.md | sed -n '/^for /,/^done/p')"
[ -n "$loop" ] || { say "README.md has no 'Try it' loop"; exit 1; }
grep -q 'webhooks/inbox' <<<"$loop" || { say "the README's loop does not name the demo inbox"; exit 1; }
say "the README's loop:"
sed 's/^/    /' <<<"$loop"
answers="$(bash -c "$loop" 2>&1 | tr -d '\r')"
sed 's/^/    /' <<<"$answers"
# A 202 carries `location: /crypto/sign/jobs/<id>`. Until one comes back, more messages
# in the loop's own form (each is a coin toss in the simulator).
job="$(awk 'tolower($1) == "location:" {print $2}' <<<"$answers" | head -1)"
i=0
while [ -z "$job" ] && ((i < 20)); do
  i=$((i + 1))
  one="$(sed -e 's/^for m in .*; do$/for m in extra-'"$run-$i"'; do/' <<<"$loop")"
  answers="$(bash -c "$one" 2>&1 | tr -d '\r')"
  sed 's/^/    /' <<<"$answers"
  job="$(awk 'tolower($1) == "location:" {print $2}' <<<"$answers" | head -1)"
done
[ -n "$job" ] || { say "no 202 in 24 requests"; exit 1; }
id="${job##*/}"
say "202 for job $id; waiting for its webhook in the inbox (real timing: 1-5 minutes)"
deadline=$((SECONDS + ${README_TEST_WEBHOOK_TIMEOUT:-480}))
asked=$SECONDS
until curl -fsS --max-time 5 http://localhost:8081/webhooks/inbox 2>/dev/null | grep -q "\"$id\""; do
  ((SECONDS < deadline)) || {
    curl -sS "http://localhost:8080$job" || true
    say "no webhook for $id in the inbox"
    exit 1
  }
  sleep 2
done
curl -fsS --max-time 5 http://localhost:8081/webhooks/inbox >"$logdir/inbox.json"
say "the webhook for $id is in the simulator's inbox, $((SECONDS - asked))s after the 202"
say "PASSED in $((SECONDS - t0))s"

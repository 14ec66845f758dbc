#!/usr/bin/env bash
# Compose tests: the docker-compose.yml deployment, run as containers on this
# machine, crashed in the middle of a burst and judged by scripts/e2e.py.
#
# 1. Builds the images from the real Dockerfile.<service> files
#    (`docker-compose build`, after docker/base-images.sh: the official base
#    images, or local stand-ins where none can be pulled). CI skips this step
#    (COMPOSE_TEST_SKIP_BUILD=1): scripts/readme-command-test.sh has just
#    built the same images with the README's `docker compose up --build`.
#    COMPOSE_TEST_PREBUILT=1 is a fast local shortcut instead: images from
#    host-built release binaries (docker/build-local-images.sh).
# 2. Runs each scenario in a fresh compose project (removed with `down -v`):
#      clean          `up`, then a burst; container settings checked
#      kill-signer    `docker kill` the signer mid-burst, `start` it again;
#                     later a second crash, SIGKILL to its process from the
#                     host, which `restart: unless-stopped` must repair
#      kill-notifier  the same for the notifier
#      kill-nats      the same for nats (JetStream store on its volume)
#      down-up        `down` (volumes kept) mid-burst, then `up`: the whole
#                     project, simulator included (its key is a mounted
#                     file, and its in-memory audit is saved just before
#                     the `down` and merged by e2e.py --audit-before)
#      scale-signer   `up --scale signer=3`: three replicas share one limit
#    and on the three-node cluster (docker-compose.cluster.yml over
#    docker-compose.yml: nats, nats-2, nats-3 with NATS_REPLICAS=3, two
#    replicas each of api, signer and notifier; the burst alternates between
#    the two apis and job status is read from the second):
#      cluster-kill-node  `docker kill` of nats-2 mid-burst, `start` it again
#      cluster-partition  nats-3 cut off the network for 30 s mid-burst
#                         (`docker network disconnect`/`connect`)
#      cluster-rolling    `restart` of nats, nats-2, nats-3, one at a time,
#                         each healthy again before the next
#      cluster-down-up    `down` (volumes kept) mid-burst, then `up`
#    The clean scenario also checks the README's demo: a webhook to the
#    simulator's inbox (http://upstream-sim:8081/webhooks/inbox). It runs
#    with `--profile observability` (COMPOSE_PROFILES), and checks through
#    Prometheus's API that every api, signer and notifier target is up, the
#    gateway's rules are loaded and healthy, and recording rules carry the
#    services' figures (the budget's limit, NATS reachable).
#    Each burst is COMPOSE_TEST_COUNT (default 30) distinct messages with a
#    webhook_url pointing at e2e.py's receiver on the Docker host, reached
#    from the notifier as host.docker.internal (host-gateway). Verdict per
#    scenario: every answer within 2 s and 200/202, every signature valid,
#    every 202 job signed with exactly one webhook-id delivered (kill
#    scenarios accept a redelivery with the same webhook-id), no webhook
#    for 200s, zero rate-limit violations in the simulator's audit.
#
# Time is compressed through the compose file's variables: 10 calls per 6 s
# window (signer and simulator audit alike), simulator degradations of
# 1-5 s instead of 1-5 min (SIM_TIME_SCALE=60), short retry backoffs and
# webhook retry schedule, 2 s healthcheck interval.
#
# Environment: COMPOSE_TEST_COUNT (30), COMPOSE_TEST_SCENARIOS (all, space
# separated), COMPOSE_TEST_E2E_TIMEOUT (180 s per burst), COMPOSE_TEST_SKIP_BUILD=1
# (use existing images), COMPOSE_TEST_PREBUILT=1 (the shortcut above),
# COMPOSE_TEST_IMAGE_PREFIX / COMPOSE_TEST_IMAGE_TAG
# (test other images, e.g. a release's tags; with
# COMPOSE_TEST_SKIP_BUILD=1), COMPOSE_TEST_SUBNET (172.29.99.0/24).
# Logs: .e2e/compose-test/<run>/. Exit status: 0 if every scenario passed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

count="${COMPOSE_TEST_COUNT:-30}"
e2e_timeout="${COMPOSE_TEST_E2E_TIMEOUT:-180}"
scenarios="${COMPOSE_TEST_SCENARIOS:-clean kill-signer kill-notifier kill-nats down-up scale-signer cluster-kill-node cluster-partition cluster-rolling cluster-down-up}"
run="$(date +%m%d-%H%M%S)"
logdir="$repo/.e2e/compose-test/$run"
mkdir -p "$logdir"
work="$(mktemp -d /tmp/compose-test.XXXXXX)"
nats_image="nats:$(cat scripts/nats-version)-alpine"
t0=$SECONDS

say() { printf '[compose-test +%ds] %s\n' "$((SECONDS - t0))" "$*"; }

source scripts/lib/compose-command.sh
command -v openssl >/dev/null 2>&1 || { echo "compose-test: openssl is needed (simulator key)" >&2; exit 1; }

# ------------------------------------------------------------ cleanup
: >"$work/empty.env"   # ignore any developer .env next to docker-compose.yml
single=(-f docker-compose.yml -f "$work/compose.test.yml")
cluster=(-f docker-compose.yml -f docker-compose.cluster.yml -f "$work/compose.test.yml")
files=("${single[@]}")
# The services of the deployment under test, and those that call NATS and
# the simulator (stopped first on `down`); set per scenario.
deployed="nats upstream-sim signer notifier api"
workers="api notifier signer"
projects=()
bg_pids=()
cleanup() {
  local status=$?
  set +e
  for pid in "${bg_pids[@]}"; do kill "$pid" 2>/dev/null; done
  for p in "${projects[@]}"; do
    [ -n "$p" ] || continue
    say "cleanup: removing project $p (containers, network, volumes)"
    # With the cluster's files: they name every service of either deployment.
    timeout 120 "${COMPOSE[@]}" --env-file "$work/empty.env" -p "$p" "${cluster[@]}" \
      down -v --remove-orphans -t 5 >>"$logdir/cleanup.log" 2>&1
  done
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ helpers
project=""
compose() {
  timeout 300 "${COMPOSE[@]}" --env-file "$work/empty.env" -p "$project" "${files[@]}" "$@"
}

free_port() { # [bind address]
  python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "${1:-127.0.0.1}"
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll once a second, bounded.
wait_for() {
  local what="$1" limit="$2"
  shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then
      say "timed out after ${limit}s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

health() { # service -> health status of its (first) container
  local cid
  cid="$(compose ps -q "$1" 2>/dev/null | head -1)"
  [ -n "$cid" ] || { echo missing; return; }
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$cid" 2>/dev/null || echo missing
}
is_healthy() { [ "$(health "$1")" = healthy ]; }
all_healthy() {
  local s cid c
  for s in $deployed; do
    # every replica of the service
    cid="$(compose ps -q "$s" 2>/dev/null)"
    [ -n "$cid" ] || return 1
    for c in $cid; do
      [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$c" 2>/dev/null)" = healthy ] || return 1
    done
  done
}
api_ready() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$API_PORT/readyz"; }

# The newest `webhooks: k/n` progress line of e2e.py.
progress() { grep -o 'webhooks: [0-9]*/[0-9]*' "$1" | tail -1 | sed 's/webhooks: //'; }
burst_sent() { grep -q '^phase: burst sent' "$1"; }
enough_webhooks() { # e2e log: a third of the webhooks (1 to 5) have arrived
  local p k n want
  p="$(progress "$1")"
  [ -n "$p" ] || return 1
  k="${p%/*}"; n="${p#*/}"
  want=$((n / 3)); ((want > 5)) && want=5; ((want < 1)) && want=1
  ((n == 0 || k >= want))
}
not_running() { ! kill -0 "$1" 2>/dev/null; }
more_webhooks() { # e2e log, wanted k: k webhooks arrived, or all of them
  local p
  p="$(progress "$1")"
  [ -n "$p" ] && { ((${p%/*} >= $2)) || ((${p%/*} == ${p#*/})); }
}
restarted() { # container, restart count before: restarted since, and running
  local now
  now="$(docker inspect -f '{{.RestartCount}} {{.State.Running}}' "$1")" || return 1
  ((${now% *} > $2)) && [ "${now#* }" = true ]
}

# The README's demo: webhook_url=http://upstream-sim:8081/webhooks/inbox
# (the compose network's name for the simulator), read back from the host.
demo_inbox_check() {
  python3 - "http://127.0.0.1:$API_PORT" "http://127.0.0.1:$SIM_PORT" "$run" <<'PY'
import json, sys, time, urllib.parse, urllib.request
api, sim, run = sys.argv[1:4]
hook = "http://upstream-sim:8081/webhooks/inbox"
def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
deferred = []
for i in range(4):
    q = urllib.parse.urlencode({"message": f"demo-{run}-{i}", "webhook_url": hook})
    status, body = get(f"{api}/crypto/sign?{q}")
    if status == 202:
        deferred.append(body["id"])
    elif status != 200:
        print(f"answer {status} for the demo request"); sys.exit(1)
deadline = time.monotonic() + 90
while True:
    _, inbox = get(f"{sim}/webhooks/inbox")
    seen = {d["body"].get("data", {}).get("id") for d in inbox["deliveries"] if isinstance(d.get("body"), dict)}
    if all(j in seen for j in deferred):
        print(f"{len(deferred)}/{len(deferred)} webhooks of 4 demo requests (the rest answered 200) in the simulator's inbox")
        sys.exit(0)
    if time.monotonic() > deadline:
        print(f"only {len([j for j in deferred if j in seen])}/{len(deferred)} demo webhooks arrived"); sys.exit(1)
    time.sleep(1)
PY
}

# `docker compose --profile observability up` (the clean scenario runs with
# it): Prometheus scrapes every api, signer and notifier container, loads the
# gateway's rules, and a recording rule fed by the signer holds the
# configured budget. Polls up to 90 s (scrapes and evaluation every 15 s).
prometheus_check() {
  python3 - "http://127.0.0.1:$PROMETHEUS_PORT" "$UPSTREAM_RATE_LIMIT" <<'PY'
import json, sys, time, urllib.parse, urllib.request
prom, limit = sys.argv[1], float(sys.argv[2])
def get(path):
    with urllib.request.urlopen(prom + path, timeout=10) as r:
        return json.loads(r.read())["data"]
def query(expr):
    res = get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["result"]
    return [float(v["value"][1]) for v in res]
deadline, why = time.monotonic() + 90, "no answer yet"
while time.monotonic() < deadline:
    try:
        up = {}
        for t in get("/api/v1/targets?state=active")["activeTargets"]:
            up.setdefault(t["labels"]["job"], []).append(t["health"])
        rules = [r for g in get("/api/v1/rules")["groups"] for r in g["rules"]]
        alerts = sum(r["type"] == "alerting" for r in rules)
        bad = [r["name"] for r in rules if r["health"] != "ok"]
        budget, ready = query("gateway:limiter_slots_limit:max"), query("gateway:nats_ready:max")
        why = (f"targets {up}, {len(rules)} rules ({alerts} alerts, unhealthy {bad[:3]}), "
               f"gateway:limiter_slots_limit:max {budget}, gateway:nats_ready:max {ready}")
        if (all(up.get(j) and all(h == "up" for h in up[j]) for j in ("api", "signer", "notifier"))
                and alerts >= 12 and not bad and budget == [limit] and ready == [1.0]):
            print("Prometheus (observability profile): " + why)
            sys.exit(0)
    except Exception as e:  # not up yet, or an answer without the fields
        why = f"{type(e).__name__}: {e}"
    time.sleep(2)
print("Prometheus check failed: " + why)
sys.exit(1)
PY
}

# ------------------------------------------------------------ build
if [ "${COMPOSE_TEST_SKIP_BUILD:-0}" = 1 ]; then
  say "using the images already built ($(docker image ls -q 'signing-gateway/*' | wc -l) signing-gateway/* images)"
elif [ "${COMPOSE_TEST_PREBUILT:-0}" = 1 ]; then
  say "building images from host-built binaries (docker/build-local-images.sh; not the real Dockerfiles)"
  docker/build-local-images.sh >"$logdir/build.log" 2>&1 || { tail -40 "$logdir/build.log"; say "image build FAILED"; exit 1; }
  say "images built"
else
  say "building images from the real Dockerfiles (docker/base-images.sh, docker-compose build)"
  { docker/base-images.sh && "${COMPOSE[@]}" -f docker-compose.yml build; } >"$logdir/build.log" 2>&1 \
    || { tail -40 "$logdir/build.log"; say "image build FAILED"; exit 1; }
  say "images built"
fi

# ------------------------------------------------------------ test settings
# The address host.docker.internal maps to (host-gateway), as containers see it.
gateway="$(timeout 60 docker run --rm --add-host host.docker.internal:host-gateway --entrypoint cat "$nats_image" /etc/hosts \
  | awk '$2 == "host.docker.internal" {print $1; exit}')"
[ -n "$gateway" ] || { say "cannot determine the host-gateway address"; exit 1; }

# Preflight: a container reaches a server on the host through host-gateway.
probe_port="$(free_port "$gateway")"
python3 -m http.server --bind "$gateway" "$probe_port" --directory "$work" >/dev/null 2>&1 &
probe_pid=$!
bg_pids+=("$probe_pid")
sleep 1
if ! timeout 30 docker run --rm --add-host host.docker.internal:host-gateway --entrypoint wget "$nats_image" \
     -q -O /dev/null "http://host.docker.internal:$probe_port/" >/dev/null 2>&1; then
  say "containers cannot reach the host at host.docker.internal ($gateway:$probe_port): webhooks to the test receiver would fail"
  exit 1
fi
kill "$probe_pid" 2>/dev/null || true
say "host-gateway: containers reach this host at $gateway"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/sim-key.pem" 2>/dev/null
chmod 644 "$work/sim-key.pem"
# The simulator keeps one key across restarts (down-up), so signatures made
# before a restart still verify after it.
cat >"$work/compose.test.yml" <<EOF
services:
  upstream-sim:
    volumes:
      - $work/sim-key.pem:/run/sim-key.pem:ro
EOF

subnet="${COMPOSE_TEST_SUBNET:-172.29.99.0/24}"
export COMPOSE_SUBNET="$subnet"
export WEBHOOK_ALLOWED_CIDRS="$subnet,$gateway/32"
export UPSTREAM_URL=http://upstream-sim:8081 UPSTREAM_API_KEY=compose-test-key SIM_API_KEY=compose-test-key
export UPSTREAM_RATE_LIMIT=10 UPSTREAM_RATE_WINDOW=6s SIM_AUDIT_LIMIT=10 SIM_AUDIT_WINDOW=6s SIM_ENFORCE_LIMIT=true
export UPSTREAM_RATE_MARGIN=500ms UPSTREAM_TIMEOUT=3s RETRY_MIN_BACKOFF=1s RETRY_SETTLE=5s AUTH_RETRY_INTERVAL=2s
export SIM_TIME_SCALE=60 SIM_FIRST_TRY_SUCCESS=0.5 SIM_RSA_KEY_FILE=/run/sim-key.pem
export WEBHOOK_SECRET="whsec_$(head -c 32 /dev/urandom | base64)" WEBHOOK_REQUIRE_SECRET=true
export WEBHOOK_RETRY_SCHEDULE=0s,200ms,500ms,1s,2s,2s,2s,2s,2s,2s,2s,2s WEBHOOK_RETRY_JITTER=0
export WEBHOOK_TIMEOUT=2s REPLY_GRACE=3s NOTIFIER_DRAIN_TIMEOUT=5s
export WEBHOOK_CIRCUIT_OPEN=1s WEBHOOK_CIRCUIT_OPEN_MAX=2s
export HEALTHCHECK_INTERVAL=2s
export BACKLOG_HORIZON=144m   # 24h at the real pace, scaled like the window (60s -> 6s)
export IMAGE_PREFIX="${COMPOSE_TEST_IMAGE_PREFIX:-signing-gateway}" IMAGE_TAG="${COMPOSE_TEST_IMAGE_TAG:-latest}"

say "settings: burst of $count, 10 calls per 6s window, SIM_TIME_SCALE=60, subnet $subnet, logs in ${logdir#"$repo"/}"

# ------------------------------------------------------------ scenarios
results=()
failed=0

scenario() {
  local name="$1"
  local slog="$logdir/$name.log" elog="$logdir/$name.e2e.log"
  local note="" ok=1 rc=0 e2e_pid rport started cid apis
  project="ct-$run-$name"
  projects+=("$project")
  export API_PORT API_PORT_2 SIM_PORT SIM_SEED PROMETHEUS_PORT COMPOSE_PROFILES
  # The clean scenario is also the observability profile's test.
  if [ "$name" = clean ]; then COMPOSE_PROFILES=observability; else COMPOSE_PROFILES=; fi
  PROMETHEUS_PORT="$(free_port)"
  API_PORT="$(free_port)"
  API_PORT_2="$(free_port)"
  apis="http://127.0.0.1:$API_PORT"
  case "$name" in
    cluster-*)
      files=("${cluster[@]}")
      apis="$apis,http://127.0.0.1:$API_PORT_2"
      deployed="nats nats-2 nats-3 upstream-sim signer notifier api api-2"
      workers="api api-2 notifier signer"
      ;;
    *)
      files=("${single[@]}")
      deployed="nats upstream-sim signer notifier api"
      workers="api notifier signer"
      ;;
  esac
  SIM_PORT="$(free_port)"
  SIM_SEED="$((RANDOM * 32768 + RANDOM))"
  rport="$(free_port "$gateway")"
  say "[$name] up (project $project, api :$API_PORT, simulator :$SIM_PORT, seed $SIM_SEED)"
  started=$SECONDS
  local up_args=(-d --no-build)
  [ "$name" = scale-signer ] && up_args+=(--scale signer=3)
  if ! compose up "${up_args[@]}" >>"$slog" 2>&1 || ! wait_for "all services healthy" 120 all_healthy \
     || ! wait_for "api ready" 60 api_ready; then
    note="deployment did not come up healthy"
    ok=0
  fi
  ((ok)) && say "[$name] all services healthy after $((SECONDS - started))s ($(compose ps -q | wc -l) containers)"
  if ((ok)) && [ "$name" = clean ]; then
    # Container settings as deployed: non-root, restart policy, read-only root.
    local c line bad=0
    for c in $(compose ps -q); do
      line="$(docker inspect -f '{{.Name}} user={{.Config.User}} restart={{.HostConfig.RestartPolicy.Name}} read_only={{.HostConfig.ReadonlyRootfs}} health={{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$c")"
      echo "$line" >>"$slog"
      case "$line" in
        *_nats_*) [[ "$line" == *"restart=unless-stopped"*"health=healthy"* ]] || bad=1 ;;
        # The official image's user (nobody), no healthcheck.
        *_prometheus_*) [[ "$line" == *"restart=unless-stopped read_only=true"* ]] || bad=1 ;;
        *) [[ "$line" == *"user=10001:10001 restart=unless-stopped read_only=true health=healthy"* ]] || bad=1 ;;
      esac
    done
    if ((bad)); then
      say "[$name] unexpected container settings:"; sed 's/^/    /' "$slog" | grep 'user=' ; ok=0
      note="container settings"
    else
      say "[$name] services run as 10001:10001 on read-only roots, restart unless-stopped, all healthy"
    fi
  fi

  local extra=()
  case "$name" in clean | scale-signer) ;; *) extra+=(--allow-redelivery) ;; esac
  case "$name" in *down-up) extra+=(--audit-before "$work/audit-before-$name.json") ;; esac
  if ((ok)); then
    python3 scripts/e2e.py --api "$apis" --sim "http://127.0.0.1:$SIM_PORT" \
      --count "$count" --receiver-bind "$gateway:$rport" \
      --receiver-url "http://host.docker.internal:$rport/hook" \
      --webhook-secret "$WEBHOOK_SECRET" --timeout "$e2e_timeout" --run-id "$name-$run" \
      --summary-json "$logdir/$name.summary.json" "${extra[@]}" >"$elog" 2>&1 &
    e2e_pid=$!
    bg_pids+=("$e2e_pid")

    if [ "$name" != clean ] && [ "$name" != scale-signer ]; then
      if wait_for "the burst" 60 burst_sent "$elog" && wait_for "first webhooks" 120 enough_webhooks "$elog"; then
        local at
        at="$(progress "$elog")"
        case "$name" in
          kill-signer | kill-notifier | kill-nats)
            local svc="${name#kill-}" t
            local code
            cid="$(compose ps -q "$svc" | head -1)"
            docker kill "$cid" >>"$slog" 2>&1
            sleep 2
            code="$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$cid" 2>/dev/null || echo '?')"
            say "[$name] docker kill $svc at webhooks $at (container now: $code)"
            t=$SECONDS
            compose start "$svc" >>"$slog" 2>&1 || true
            if wait_for "$svc healthy" 90 is_healthy "$svc" && wait_for "all services healthy" 90 all_healthy; then
              note="$svc killed at webhooks $at ($code); healthy again $((SECONDS - t))s after start"
            else
              note="$svc did not come back healthy"
              ok=0
            fi
            # Second crash, this time one Docker did not ask for: SIGKILL to
            # the container's process from the host. `docker kill` counts as
            # a user's stop, so only this exercises `restart: unless-stopped`.
            if ((ok)); then
              local k1 pid restarts
              k1="$(progress "$elog")"; k1="${k1%/*}"
              wait_for "more webhooks" 60 more_webhooks "$elog" "$((k1 + 2))" || true
              at="$(progress "$elog")"
              pid="$(docker inspect -f '{{.State.Pid}}' "$cid")"
              restarts="$(docker inspect -f '{{.RestartCount}}' "$cid")"
              if [ "${pid:-0}" -gt 1 ] && kill -9 "$pid"; then
                say "[$name] kill -9 of $svc's process (host pid $pid) at webhooks $at"
                t=$SECONDS
                if wait_for "docker to restart $svc" 60 restarted "$cid" "$restarts" \
                   && wait_for "$svc healthy" 90 is_healthy "$svc" && wait_for "all services healthy" 90 all_healthy; then
                  note="$note; crashed (kill -9) at webhooks $at, restarted by the restart policy and healthy in $((SECONDS - t))s"
                else
                  note="$note; after kill -9 at webhooks $at the restart policy did not bring $svc back healthy"
                  ok=0
                fi
              else
                note="$note; could not kill -9 $svc (pid ${pid:-?})"
                ok=0
              fi
            fi
            ;;
          cluster-kill-node)
            local t
            cid="$(compose ps -q nats-2)"
            docker kill "$cid" >>"$slog" 2>&1
            say "[$name] docker kill nats-2 at webhooks $at"
            wait_for "more webhooks with nats-2 down" 60 more_webhooks "$elog" "$((${at%/*} + 3))" || true
            t=$SECONDS
            compose start nats-2 >>"$slog" 2>&1 || true
            if wait_for "all services healthy" 120 all_healthy; then
              note="nats-2 killed at webhooks $at, webhooks at $(progress "$elog") when started again; healthy in $((SECONDS - t))s"
            else
              note="nats-2 did not come back healthy"
              ok=0
            fi
            ;;
          cluster-partition)
            local t net="${project}_default"
            cid="$(compose ps -q nats-3)"
            docker network disconnect "$net" "$cid" >>"$slog" 2>&1
            say "[$name] nats-3 cut off from $net at webhooks $at, for 30 s"
            sleep 30
            # The service name is an alias on the network: given back, or the
            # other nodes' routes to `nats-3` would not resolve.
            docker network connect --alias nats-3 "$net" "$cid" >>"$slog" 2>&1
            t=$SECONDS
            if wait_for "all services healthy" 120 all_healthy; then
              note="nats-3 partitioned for 30 s from webhooks $at to $(progress "$elog"); healthy $((SECONDS - t))s after reconnecting"
            else
              note="not healthy after the partition healed"
              ok=0
            fi
            ;;
          cluster-rolling)
            local node t
            note="rolling restart from webhooks $at:"
            for node in nats nats-2 nats-3; do
              t=$SECONDS
              compose restart -t 30 "$node" >>"$slog" 2>&1
              if wait_for "$node healthy" 120 is_healthy "$node" && wait_for "all services healthy" 120 all_healthy; then
                note="$note $node healthy in $((SECONDS - t))s (webhooks $(progress "$elog"));"
              else
                note="$note $node did not come back healthy"
                ok=0
                break
              fi
            done
            ;;
          down-up | cluster-down-up)
            local t
            # `down` stops api, notifier and signer before the simulator and
            # nats. Doing that first lets the simulator's in-memory audit be
            # saved once nothing calls it any more; e2e.py merges it with the
            # audit after `up` and re-checks the window across the restart.
            compose stop $workers >>"$slog" 2>&1
            curl -fsS --max-time 10 "http://127.0.0.1:$SIM_PORT/admin/audit" >"$work/audit.tmp" \
              && mv "$work/audit.tmp" "$work/audit-before-$name.json"
            compose down >>"$slog" 2>&1
            if docker volume inspect "${project}_nats-data" >/dev/null 2>&1; then
              say "[$name] down at webhooks $at (volume kept), up again"
            else
              say "[$name] WARNING: nats-data volume not found after down"
            fi
            t=$SECONDS
            if compose up -d --no-build >>"$slog" 2>&1 && wait_for "all services healthy" 120 all_healthy; then
              note="down at webhooks $at; up and healthy again in $((SECONDS - t))s"
            else
              note="did not come back up healthy"
              ok=0
            fi
            ;;
        esac
      else
        note="no progress before the planned crash"
        ok=0
      fi
    fi

    if ! wait_for "e2e.py to finish" "$((e2e_timeout + 120))" not_running "$e2e_pid"; then
      kill "$e2e_pid" 2>/dev/null || true
      ok=0
      note="${note:+$note; }e2e.py did not finish"
    fi
    wait "$e2e_pid" || rc=$?
    ((rc == 0)) || ok=0
    if [ "$name" = clean ] && ((ok)); then
      local inbox
      if inbox="$(demo_inbox_check)"; then
        note="demo inbox: $inbox"
      else
        note="demo inbox check failed: $inbox"
        ok=0
      fi
      local prom
      if prom="$(prometheus_check)"; then
        note="$note; $prom"
      else
        note="$note; $prom"
        ok=0
      fi
    fi
  fi

  compose logs --no-color --timestamps >"$logdir/$name.compose.log" 2>&1 || true
  compose ps >>"$slog" 2>&1 || true
  compose down -v -t 10 >>"$slog" 2>&1 || true
  local kept=() p
  for p in "${projects[@]}"; do [ "$p" = "$project" ] || kept+=("$p"); done
  projects=("${kept[@]}")

  local figures=""
  if [ -f "$logdir/$name.summary.json" ]; then
    figures="$(python3 - "$logdir/$name.summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{s['count']} answers ({s['answered_200']}x200, {s['answered_202']}x202, {s['answered_other']} other), "
      f"latency p50/p95/max {s['latency_p50_s']}/{s['latency_p95_s']}/{s['latency_max_s']}s, "
      f"webhooks {s['webhooks_received_jobs']}/{s['webhooks_expected']} (raw {s['deliveries_raw']}, duplicates {s['duplicate_deliveries']}), "
      f"last webhook +{s['last_webhook_after_s']}s, upstream calls {s.get('upstream_calls')}, "
      f"max_in_window {s.get('max_in_window')}/{s.get('limit')}, violations {s.get('violations')}, "
      f"status-poll errors {s['status_poll_errors']}")
PY
)"
  fi
  if ((ok)); then
    results+=("PASS  $name  $figures${note:+  [$note]}")
    say "[$name] PASS ($((SECONDS - started))s)"
  else
    failed=1
    results+=("FAIL  $name  ${figures:-no figures}${note:+  [$note]}")
    say "[$name] FAIL ($((SECONDS - started))s); e2e output:"
    grep -v '^webhooks:' "$elog" 2>/dev/null | tail -40 | sed 's/^/    /'
    say "[$name] compose logs: ${logdir#"$repo"/}/$name.compose.log"
  fi
}

for s in $scenarios; do
  case "$s" in
    clean | kill-signer | kill-notifier | kill-nats | down-up | scale-signer) scenario "$s" ;;
    cluster-kill-node | cluster-partition | cluster-rolling | cluster-down-up) scenario "$s" ;;
    *) say "unknown scenario $s"; failed=1 ;;
  esac
done

echo
echo "=== compose tests ($((SECONDS - t0))s, burst of $count per scenario) ==="
for r in "${results[@]}"; do echo "$r"; done
passes=$(printf '%s\n' "${results[@]}" | grep -c '^PASS' || true)
fails=$(printf '%s\n' "${results[@]}" | grep -c '^FAIL' || true)
if ((failed)); then
  echo "compose tests FAILED (logs: ${logdir#"$repo"/})"
  echo "compose: $passes passed, $fails failed"
  exit 1
fi
echo "compose tests PASSED"
echo "compose: $passes passed, $fails failed"

#!/usr/bin/env bash
# The test command: installs what a fresh machine lacks, builds the service
# binaries the end-to-end tests start as processes, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-nats-server.sh
# promtool and a real Prometheus for the rules tests (ops/prometheus).
scripts/install-prometheus.sh
# The status page test opens the page in headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
  else
    echo "warning: chromium missing; install Debian's chromium for the status page test" >&2
  fi
fi
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
cargo build --workspace --bins
cargo nextest run --workspace --profile "${NEXTEST_PROFILE:-default}" "$@"

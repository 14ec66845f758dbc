#!/usr/bin/env bash
# The test command: installs what a fresh machine lacks, builds the service
# binaries the end-to-end tests start as processes, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-nats-server.sh
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
cargo build --workspace --bins
cargo nextest run --workspace --profile "${NEXTEST_PROFILE:-default}" "$@"

#!/usr/bin/env bash
# Compares the drain time of a 60-message burst on the real services (in
# compressed time) with what the virtual-time model predicts for the same
# setup; prints both. About two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-nats-server.sh
cargo build --workspace --bins
cargo nextest run -p system-tests --run-ignored only --no-capture -E 'test(drain_time_matches_the_virtual_time_model)'

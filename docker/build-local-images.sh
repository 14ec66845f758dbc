#!/usr/bin/env bash
# The fast local shortcut for the compose tests (COMPOSE_TEST_PREBUILT=1
# scripts/compose-test.sh): the service images from release binaries built
# once on the host (`cargo build --release --bins`), with
# docker/compose.prebuilt.yml, whose build points at docker/Dockerfile.prebuilt:
# the same runtime stage as the real Dockerfile.<service> files, with the
# binary copied from target/release instead of from the Rust build stage.
# CI does not use it: it builds the real Dockerfiles (scripts/readme-command-test.sh).
#
# Base images come from docker/base-images.sh (the official ones, or local
# stand-ins where none can be pulled).
#
# Environment: SKIP_CARGO_BUILD=1 uses the binaries already in target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

debian_image="debian:bookworm-slim"
nats_image="nats:$(cat scripts/nats-version)-alpine"
bins=(api signer notifier upstream-sim)

log() { printf '[build-local-images] %s\n' "$*" >&2; }

docker/base-images.sh
source scripts/lib/compose-command.sh

# ---------------------------------------------------------------- services
if [ "${SKIP_CARGO_BUILD:-0}" != 1 ]; then
  log "cargo build --release --bins"
  cargo build --release --bins
fi
for b in "${bins[@]}"; do
  [ -x "target/release/$b" ] || { log "target/release/$b missing (cargo build --release --bins)"; exit 1; }
  # Every shared library the binary needs must be in the base image.
  missing="$(ldd "target/release/$b" | awk '/=>/ {print $1} /ld-linux/ && !/=>/ {print $1}' \
    | xargs -n1 basename | grep -vxE 'linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2' || true)"
  if [ -n "$missing" ]; then
    log "target/release/$b needs libraries the local base image lacks: $missing"; exit 1
  fi
done
log "building service images from target/release (docker/compose.prebuilt.yml)"
"${COMPOSE[@]}" -f docker-compose.yml -f docker/compose.prebuilt.yml build
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^(signing-gateway/|$debian_image|$nats_image)" >&2 || true

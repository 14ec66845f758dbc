#!/usr/bin/env bash
# Installs Debian's prometheus package (2.42 on bookworm) when promtool or
# prometheus is missing: promtool checks and unit-tests the rules in
# ops/prometheus, and the system tests start the real server on loopback.
# Idempotent. The package's maintainer scripts may start a system service
# on :9090; it is stopped (and left disabled) so that nothing here listens
# where a compose Prometheus or a test might.
set -euo pipefail
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: prometheus missing; install Debian's prometheus (promtool, server) for the rules tests" >&2
  exit 0
fi
echo "installing Debian's prometheus (promtool and server)" >&2
# No recommends: they add prometheus-node-exporter, another daemon.
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null
# Stop the service the package may have started (init script or systemd).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then
  service prometheus stop >/dev/null 2>&1 || true
fi
command -v update-rc.d >/dev/null 2>&1 && update-rc.d prometheus disable >/dev/null 2>&1 || true
promtool --version >/dev/null

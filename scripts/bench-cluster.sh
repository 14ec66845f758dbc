#!/usr/bin/env bash
# What R3 costs: the hot-path benchmark's accept cases (new message -> 202,
# and a backlog of new jobs) on one nats node, then on a three-node
# JetStream cluster with NATS_REPLICAS=3, in one run, same binaries, same
# settings (scripts/bench-hot-path.sh with BENCH_NATS_NODES=1 and 3), and a
# table of the two side by side with the cluster/single ratio.
#
# Knobs: those of bench-hot-path.sh (BENCH_SECS, BENCH_202_CONNS,
# BENCH_BACKLOG, BENCH_BACKLOG_CONNS, ...). Run: scripts/bench-cluster.sh
# (about 3 minutes after the build).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
  echo "== building release binaries" >&2
  cargo build --release -q -p api -p signer -p notifier -p upstream-sim --bins
  cargo build --release -q -p api --example hello --example load
fi
out=$(mktemp -d -t bench-cluster.XXXXXX)
trap 'rm -rf "$out"' EXIT
for nodes in 1 3; do
  echo "== hot path on $nodes nats node(s)" >&2
  BENCH_SKIP_BUILD=1 BENCH_NATS_NODES=$nodes scripts/bench-hot-path.sh >"$out/$nodes.txt"
  cat "$out/$nodes.txt" >&2
done
python3 - "$out/1.txt" "$out/3.txt" <<'PY'
import re, sys
def rows(path):
    found = {}
    for line in open(path):
        for key, prefix in (("new -> 202", "(c) new message"), ("backlog", "backlog:")):
            if line.startswith(prefix):
                nums = re.findall(r"\s(\d+(?:\.\d+)?)(?=\s)", line[44:] + " ")
                found[key] = [float(n) for n in nums[:5]]
    return found
one, three = rows(sys.argv[1]), rows(sys.argv[2])
print()
print("Accept path, one nats node (R1) vs three-node cluster (R3), same run")
print(f"{'case':<14} {'':>4} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
for key in ("new -> 202", "backlog"):
    for label, table in (("R1", one), ("R3", three)):
        r = table.get(key)
        if not r:
            print(f"{key:<14} {label:>4} {'?':>9}")
            continue
        print(f"{key:<14} {label:>4} {r[1]:>9.1f} {r[2]:>9.2f} {r[3]:>9.2f} {int(r[4]):>7}")
    a, b = one.get(key), three.get(key)
    if a and b and a[1] and a[2] and a[3]:
        print(f"{key:<14} {'R3/R1':>4} {b[1] / a[1]:>9.2f} {b[2] / a[2]:>9.2f} {b[3] / a[3]:>9.2f}")
PY

#!/usr/bin/env bash
# Scale-out benchmark (docs/benchmarks.md "Scale-out"): `fleethub bench register` and `bench telemetry`
# against one node on SQLite, one node on PostgreSQL and three nodes on one PostgreSQL, each behind
# the same HAProxy, in one run and in a network namespace of its own (tests/scale_out/bench.py).
# Reports per registration and per message: node CPU (per node), PostgreSQL CPU and commits,
# HAProxy CPU. Root only (unshare); needs haproxy, nats-server and PostgreSQL 15 server binaries.
#   sudo scripts/bench-scaleout.sh            # builds the release binary first
# Environment: FLEETHUB_BIN (skip the build), BENCH_CONFIGS, BENCH_REGISTRATIONS, BENCH_REG_CONCURRENCY,
# BENCH_DEVICES, BENCH_INFLIGHT, BENCH_DURATION, FLEETHUB_BENCH_WORK (see tests/scale_out/bench.py).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
for tool in haproxy nats-server unshare ip python3; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "ERROR: '$tool' is not installed (Debian: apt-get install haproxy nats-server util-linux iproute2 python3)" >&2
    exit 1
  }
done
if [[ -z "${FLEETHUB_BIN:-}" ]]; then
  cargo build --release -p fleethub-server --bin fleethub
  FLEETHUB_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/fleethub
fi
export FLEETHUB_BIN
exec python3 "$ROOT/tests/scale_out/bench.py"

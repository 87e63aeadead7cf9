#!/usr/bin/env bash
# Runs one `fleethub bench telemetry ...` command RUNS times (default 3), each after
# wait-quiet.sh, saves every JSON report under OUT (default ./bench-results) and prints the
# median and min..max of the headline figures. A run during which other processes used more
# than MAX_OTHER cores (default 0.1; `otherCpuCores` of the report) is set aside (renamed
# *.noisy) and repeated, at most 3 x RUNS attempts in all.
# Usage: RUNS=3 OUT=dir NAME=label series.sh fleethub bench telemetry ... --output json
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-3}
out=${OUT:-./bench-results}
name=${NAME:-run}
mkdir -p "$out"
max_other=${MAX_OTHER:-0.1}
files=()
attempt=0
while (( ${#files[@]} < runs && attempt < 3 * runs )); do
  attempt=$((attempt + 1))
  "$here/wait-quiet.sh" "${QUIET:-0.15}" "${QUIET_WAIT:-900}" >&2 || true
  f="$out/$name-$(date +%H%M%S)-$attempt.json"
  if timeout "${RUN_TIMEOUT:-900}" "$@" > "$f"; then
    other=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("otherCpuCores", 0))' "$f")
    if python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))' "$other" "$max_other"; then
      echo "attempt $attempt: other processes used $other cores: set aside" >&2
      mv "$f" "$f.noisy"
    else
      files+=("$f")
    fi
  else
    echo "attempt $attempt failed (see $f)" >&2
  fi
  sleep "${PAUSE:-3}"
done
python3 - "$name" "${files[@]}" <<'PY'
import json, statistics, sys
name, files = sys.argv[1], sys.argv[2:]
reps = [json.load(open(f)) for f in files]
if not reps:
    sys.exit("no successful run")
keys = ["messagesPerSec", "p50Ms", "p99Ms", "errors", "connected", "serverRssBytes",
        "serverRssPerConnectionBytes", "serverCpuCores", "serverCpuUsPerMsg",
        "clientCpuCores", "clientCpuUsPerMsg", "machineBusyCores", "machineStealCores",
        "otherCpuCores", "connectsPerSec"]
print(f"{name}: {len(reps)} runs")
for k in keys:
    v = [r.get(k) or 0 for r in reps]
    print(f"  {k:30s} median {statistics.median(v):12.2f}   min {min(v):12.2f}   max {max(v):12.2f}   all {[round(x, 2) for x in v]}")
PY

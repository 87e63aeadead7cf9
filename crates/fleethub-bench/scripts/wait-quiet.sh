#!/usr/bin/env bash
# Waits until the machine is quiet: less than $1 busy cores (default 0.15) over a 2 s sample,
# checked for at most $2 seconds (default 900). Prints the busy cores; exit 1 on timeout.
# Usage: wait-quiet.sh [max-busy-cores] [max-wait-seconds]
set -euo pipefail
limit=${1:-0.15}
max_wait=${2:-900}
deadline=$(( $(date +%s) + max_wait ))
busy() {
  read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat
  sleep 2
  read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
  local busy=$(( (b1+b2+b3+b6+b7+b8) - (a1+a2+a3+a6+a7+a8) ))
  awk -v t="$busy" 'BEGIN { printf "%.2f", t / 100 / 2 }'
}
while :; do
  b=$(busy)
  if awk -v b="$b" -v l="$limit" 'BEGIN { exit !(b < l) }'; then
    echo "quiet: $b busy cores"
    exit 0
  fi
  if (( $(date +%s) >= deadline )); then
    echo "still busy after ${max_wait}s: $b busy cores" >&2
    exit 1
  fi
  sleep 5
done

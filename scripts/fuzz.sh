#!/usr/bin/env bash
# Longer fuzzing runs of the property-based harnesses (docs/testing.md, "Fuzzing").
#
#   scripts/fuzz.sh [--minutes N] [--cases N] [HARNESS...]
#
# Each harness (crate:test, e.g. fleethub-mqtt-codec:fuzz_codec; default: all) gets an equal
# share of --minutes (default 10) of wall time and runs batches of --cases cases (default
# 5000) per property, each batch with a fresh random seed, until its share is used up. The
# normal test run (scripts/test.sh) runs the same harnesses with 256 cases each.
# Failing batches are kept in $FUZZ_FINDINGS (default target/fuzz-findings/) with proptest's
# minimal failing input; the run ends with the CPU time used and the findings, and exits 1 if
# there were any. Debug builds on purpose: overflow checks turn arithmetic bugs into findings.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL=(
  fleethub-mqtt-codec:fuzz_codec
  fleethub-iot-protocol:fuzz_protocol
  fleethub-core:fuzz_core
  fleethub-api:fuzz_bodies
  fleetedge:fuzz_config
)
minutes=10
cases=5000
harnesses=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --cases) cases="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) harnesses+=("$1"); shift ;;
  esac
done
[[ ${#harnesses[@]} -gt 0 ]] || harnesses=("${ALL[@]}")
findings_dir="${FUZZ_FINDINGS:-${CARGO_TARGET_DIR:-target}/fuzz-findings}"
mkdir -p "$findings_dir"

# CPU seconds used by finished child processes (user + system), from the `times` builtin,
# which must run in this shell (not in a command substitution) to see them.
cpu_file=$(mktemp)
trap 'rm -f "$cpu_file"' EXIT
child_cpu() {
  times >"$cpu_file"
  cpu=$(tail -n1 "$cpu_file" | awk '{
    t = 0
    for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] }
    printf "%.1f", t
  }')
}

pkg_args=()
for h in "${harnesses[@]}"; do pkg_args+=(-p "${h%%:*}" --test "${h#*:}"); done
echo "==> building ${#harnesses[@]} harnesses"
cargo test --no-run "${pkg_args[@]}" 2>&1 | grep -E '^(error|warning: unused)' || true

budget=$(( minutes * 60 / ${#harnesses[@]} ))
child_cpu
start_cpu=$cpu
found=0
summary=()
for h in "${harnesses[@]}"; do
  crate="${h%%:*}" test="${h#*:}"
  h_start=$SECONDS batches=0 status=clean
  child_cpu
  h_cpu=$cpu
  while (( SECONDS - h_start < budget )); do
    batches=$((batches + 1))
    log="$findings_dir/$test-$(date -u +%Y%m%dT%H%M%S)-$batches.log"
    if FLEETHUB_FUZZ_CASES="$cases" cargo test -q -p "$crate" --test "$test" >"$log" 2>&1; then
      rm -f "$log"
    else
      status="FINDING: $log"
      found=$((found + 1))
      grep -A12 'minimal failing input' "$log" | head -n 30 || tail -n 30 "$log"
      break
    fi
  done
  child_cpu
  used=$(awk -v a="$cpu" -v b="$h_cpu" 'BEGIN { printf "%.1f", a - b }')
  line="$h: $batches batches x $cases cases per property, $((SECONDS - h_start)) s wall, $used CPU s, $status"
  echo "==> $line"
  summary+=("$line")
done

child_cpu
total=$(awk -v a="$cpu" -v b="$start_cpu" 'BEGIN { printf "%.1f", a - b }')
echo
echo "==> fuzz summary"
printf '  %s\n' "${summary[@]}"
echo "  CPU time: ${total} s ($(awk -v t="$total" 'BEGIN { printf "%.3f", t / 3600 }') CPU-hours); findings: $found"
[[ $found -eq 0 ]]

#!/usr/bin/env bash
# Compares two fleethub release binaries by the instructions the SERVER executes per unit of
# work (valgrind callgrind), which stays comparable on a noisy or shared machine where CPU time
# and throughput do not. docs/benchmarks.md ("Instructions per message") explains the method.
#
#   scripts/bench-instructions.sh BEFORE_BIN AFTER_BIN [ROUNDS]
#
# For each round and binary: `fleethub serve` under callgrind (instrumentation off at start),
# the AFTER binary as load tool for both (the same client), then
#   telemetry-1 / telemetry-4: `bench telemetry --devices 100 --max --inflight 1|4`; counters on
#       for 20 s after a 25 s warm-up; messages counted from the server's own
#       fleethub_telemetry_messages_total metric (HTTPS /metrics) at both ends of the window;
#   register-mqtt / register-https: `bench register --count 300 --concurrency 16` with counters
#       on for the whole bench (enrollment group, 300 registrations, the bare-TLS baseline).
# Prints one line per measurement: name, binary, instructions per message / per registration.
# Needs: valgrind, curl, python3. Ports 39883/39443/39671 on 127.0.0.1 (env MQTT_PORT, HTTPS_PORT,
# AMQP_PORT). Takes about 5 minutes a round.
set -euo pipefail
before=${1:?usage: $0 BEFORE_BIN AFTER_BIN [ROUNDS]} after=${2:?usage: $0 BEFORE_BIN AFTER_BIN [ROUNDS]}
rounds=${3:-1}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d /tmp/bench-instructions.XXXXXX)
trap 'pkill -f "callgrind.*$work" 2>/dev/null || true; rm -rf "$work"' EXIT
mport=${MQTT_PORT:-39883} hport=${HTTPS_PORT:-39443} aport=${AMQP_PORT:-39671}

start() { # $1 bin, $2 name
  rm -rf "$work/$2"
  valgrind --tool=callgrind --callgrind-out-file="$work/$2.cg" --instr-atstart=no \
    "$1" serve --data-dir "$work/$2" --bind 127.0.0.1 --mqtt-port $mport --https-port $hport \
    --amqp-port $aport --log warn >"$work/$2.log" 2>&1 &
  for _ in $(seq 1 300); do
    "$after" info --data-dir "$work/$2" --output json >/dev/null 2>&1 && break
    sleep 0.5
  done
  sleep 2
  vpid=$(pgrep -f "callgrind.*$work/$2.cg" | head -n1)
}
stop() { callgrind_control -d "$vpid" >/dev/null 2>&1; kill "$vpid"; wait "$vpid" 2>/dev/null || true; }
# Every dump of the run (valgrind may split the window over more than one file).
total() { cat "$work/$1.cg".* | awk '/^totals/ { s += $2 } END { printf "%.0f", s }'; }
messages() { curl -sk "https://127.0.0.1:$hport/metrics" | awk '/^fleethub_telemetry_messages_total/{print $2}'; }

telemetry() { # $1 bin, $2 label, $3 inflight
  local name="tel$3-$2-$RANDOM"
  start "$1" "$name"
  "$after" bench telemetry --data-dir "$work/$name" --devices 100 --max --inflight "$3" \
    --payload-bytes 200 --duration 40 --warmup 15 --output json >/dev/null 2>&1 &
  local bench=$!
  sleep 25
  local m0; m0=$(messages)
  callgrind_control -i on "$vpid" >/dev/null 2>&1
  sleep 20
  callgrind_control -i off "$vpid" >/dev/null 2>&1
  local m1; m1=$(messages)
  wait $bench || true
  stop
  local n=$((m1 - m0))
  echo "telemetry-$3  $2  instructions/message=$(( $(total "$name") / n ))  (messages in window: $n)"
}

register() { # $1 bin, $2 label, $3 transport
  local name="reg-$3-$2-$RANDOM" count=300
  start "$1" "$name"
  callgrind_control -i on "$vpid" >/dev/null 2>&1
  "$after" bench register --data-dir "$work/$name" --count $count --concurrency 16 \
    --transport "$3" --output json >"$work/$name.json" 2>/dev/null
  callgrind_control -i off "$vpid" >/dev/null 2>&1
  stop
  echo "register-$3  $2  instructions/registration=$(( $(total "$name") / count ))"
}

for _ in $(seq 1 "$rounds"); do
  for inflight in 1 4; do
    telemetry "$before" before "$inflight"
    telemetry "$after" after "$inflight"
  done
  for t in mqtt https; do
    register "$before" before "$t"
    register "$after" after "$t"
  done
done

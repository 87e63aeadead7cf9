#!/usr/bin/env bash
# The performance comparisons of docs/benchmarks.md in one go, with the baselines run on the same
# machine in the same run (issue "Performance"): fleethub vs mosquitto (server CPU per durable QoS 1
# message at 1 and 4 publishes in flight, idle-connection RSS) and DPS registrations vs bare TLS
# handshakes of the same listener (MQTT and HTTPS). Each measurement runs ROUNDS times (default 3),
# fleethub and mosquitto alternated, each after the machine is quiet (wait-quiet.sh); a run during
# which other processes used more than MAX_OTHER cores (default 0.15) is reported as noisy.
# The idle-connection RSS runs once, before the rounds, on the freshly started servers.
# Prints every run and the median ratios; the JSON reports stay in OUT.
#
# Usage: scripts/bench-compare.sh [--bin target/release/fleethub]
#   env: ROUNDS=3 DEVICES=1000 IDLE=10000 REGISTRATIONS=3000 OUT=/tmp/fleethub-bench-compare
#        QUIET_WAIT=600 (longest wait for a quiet machine before each run, seconds)
#        MQTT_PORT=48883 HTTPS_PORT=48443 AMQP_PORT=45671 MOSQ_PORT=48884
# Needs: a release build (cargo build --release -p fleethub-server), mosquitto (Debian:
# apt-get install mosquitto), openssl, python3; about 2 + 3 x ROUNDS minutes on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/fleethub
[[ "${1:-}" == "--bin" ]] && BIN=$2
ROUNDS=${ROUNDS:-3}
DEVICES=${DEVICES:-1000}
IDLE=${IDLE:-10000}
REGISTRATIONS=${REGISTRATIONS:-3000}
OUT=${OUT:-/tmp/fleethub-bench-compare}
MAX_OTHER=${MAX_OTHER:-0.15}
QUIET_WAIT=${QUIET_WAIT:-600}
SCRIPTS=$ROOT/crates/fleethub-bench/scripts
MQTT_PORT=${MQTT_PORT:-48883} HTTPS_PORT=${HTTPS_PORT:-48443} AMQP_PORT=${AMQP_PORT:-45671}
MOSQ_PORT=${MOSQ_PORT:-48884}

[[ -x "$BIN" ]] || { echo "no release binary at $BIN: cargo build --release -p fleethub-server" >&2; exit 2; }
command -v mosquitto >/dev/null || PATH=$PATH:/usr/sbin
command -v mosquitto >/dev/null || { echo "mosquitto is not installed (Debian: apt-get install mosquitto)" >&2; exit 2; }
ulimit -n 20000 2>/dev/null || true

rm -rf "$OUT" && mkdir -p "$OUT/data" "$OUT/mosquitto"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$BIN" serve --data-dir "$OUT/data" --bind 127.0.0.1 --mqtt-port $MQTT_PORT --https-port $HTTPS_PORT \
  --amqp-port $AMQP_PORT --log warn >"$OUT/fleethub.log" 2>&1 &
pids+=($!)
"$SCRIPTS/mosquitto-baseline.sh" "$OUT/mosquitto" $MOSQ_PORT >"$OUT/mosquitto.out" 2>&1
pids+=("$(cat "$OUT/mosquitto/mosquitto.pid")")
for _ in $(seq 1 60); do [[ -f "$OUT/data/server-info.json" ]] && break; sleep 0.5; done
[[ -f "$OUT/data/server-info.json" ]] || { echo "fleethub did not start: $(tail -5 "$OUT/fleethub.log")" >&2; exit 1; }

# run NAME ARGS...: one quiet report in $OUT/NAME-$round.json
run() {
  local name=$1; shift
  "$SCRIPTS/wait-quiet.sh" 0.15 "$QUIET_WAIT" >/dev/null || echo "  (machine still busy: $name runs anyway)" >&2
  if ! timeout 900 "$@" --output json >"$OUT/$name-$round.json" 2>"$OUT/$name-$round.err"; then
    echo "  $name failed: $(tail -3 "$OUT/$name-$round.err")" >&2
    rm -f "$OUT/$name-$round.json"
  fi
}

telemetry=(bench telemetry --devices "$DEVICES" --max --payload-bytes 200 --duration 10 --warmup 2)
mosquitto=(--target mosquitto --port $MOSQ_PORT --tls-ca "$OUT/mosquitto/ca.pem")
# Idle connections once, first, while both servers are fresh: RSS is measured as the growth of
# the server's resident set, and memory a process freed after earlier connections stays resident
# (reused by the next ones), so a later or repeated idle run would read too little.
round=1
echo "idle connections ($IDLE per server)"
run fleethub-idle "$BIN" bench telemetry --data-dir "$OUT/data" --devices "$IDLE" --connect-only --duration 10
run mosquitto-idle "$BIN" bench telemetry "${mosquitto[@]}" --devices "$IDLE" --connect-only --duration 10
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS"
  for inflight in 1 4; do
    run "fleethub-inflight$inflight" "$BIN" "${telemetry[@]}" --data-dir "$OUT/data" --inflight $inflight
    run "mosquitto-inflight$inflight" "$BIN" "${telemetry[@]}" "${mosquitto[@]}" --inflight $inflight
  done
  for transport in mqtt https; do
    run "register-$transport" "$BIN" bench register --data-dir "$OUT/data" --count "$REGISTRATIONS" \
      --concurrency 32 --transport $transport
  done
done

python3 - "$OUT" "$MAX_OTHER" <<'PY'
import glob, json, os, statistics, sys
out, max_other = sys.argv[1], float(sys.argv[2])
def reports(name):
    rs = []
    for f in sorted(glob.glob(os.path.join(out, name + "-*.json"))):
        r = json.load(open(f))
        r["_noisy"] = r.get("otherCpuCores", 0) > max_other
        rs.append(r)
    return rs
def med(rs, key):
    v = [r[key] for r in rs if not r["_noisy"] and r.get(key)] or [r[key] for r in rs if r.get(key)]
    return statistics.median(v) if v else float("nan")
def line(label, rs, keys):
    for r in rs:
        print("  %-26s %s%s" % (label, "  ".join("%s %.1f" % (k, r.get(k) or 0) for k in keys),
                                 "  (noisy: other %.2f cores)" % r["otherCpuCores"] if r["_noisy"] else ""))
rows = []
for inflight in (1, 4):
    f, m = reports("fleethub-inflight%d" % inflight), reports("mosquitto-inflight%d" % inflight)
    keys = ["messagesPerSec", "serverCpuUsPerMsg", "serverUserUsPerMsg", "serverKernelUsPerMsg"]
    line("fleethub, %d in flight" % inflight, f, keys)
    line("mosquitto, %d in flight" % inflight, m, keys)
    rows.append(("server CPU per message, %d in flight: fleethub / mosquitto" % inflight,
                 med(f, "serverCpuUsPerMsg") / med(m, "serverCpuUsPerMsg"),
                 "<= 1.0" if inflight == 1 else "<= 0.6"))
    for part in ("User", "Kernel"):
        rows.append(("  of it %s: fleethub / mosquitto (%.1f / %.1f us)" % (
                         part.lower(), med(f, "server%sUsPerMsg" % part), med(m, "server%sUsPerMsg" % part)),
                     med(f, "server%sUsPerMsg" % part) / med(m, "server%sUsPerMsg" % part), "-"))
f, m = reports("fleethub-idle"), reports("mosquitto-idle")
line("fleethub, idle", f, ["serverRssPerConnectionBytes", "connectsPerSec"])
line("mosquitto, idle", m, ["serverRssPerConnectionBytes", "connectsPerSec"])
rows.append(("idle RSS per connection: fleethub KB", med(f, "serverRssPerConnectionBytes") / 1000, "<= 15"))
rows.append(("idle RSS per connection: fleethub / mosquitto",
             med(f, "serverRssPerConnectionBytes") / med(m, "serverRssPerConnectionBytes"), "-"))
rows.append(("connection set-up rate: fleethub / mosquitto",
             med(f, "connectsPerSec") / med(m, "connectsPerSec"), ">= 1.0"))
for transport in ("mqtt", "https"):
    r = reports("register-" + transport)
    for x in r:
        x["_noisy"] = False
    line("register, " + transport, r, ["registrationsPerSec", "tlsHandshakesPerSec", "ratio"])
    rows.append(("DPS registrations / TLS handshakes, %s" % transport, med(r, "ratio"), ">= 0.7"))
print()
print("%-62s %8s  %s" % ("ratio (median)", "value", "target"))
for label, value, target in rows:
    print("%-62s %8.2f  %s" % (label, value, target))
PY

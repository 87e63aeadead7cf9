#!/usr/bin/env bash
# Official Azure IoT SDK module clients (Python azure-iot-device, Node azure-iot-device-mqtt)
# through the edge hub, against a real `fleethub serve`. The SDKs dial the gateway on the
# fixed port 8883, so everything runs in a private network namespace (needs root):
#
#   cargo build -p fleethub-server && cargo build -p fleetedge-hub --example edgehub_standalone
#   sudo unshare -n crates/fleetedge-hub/scripts/sdk-check/run.sh
#
# Env: T (cargo target dir, default target), PY (python with azure-iot-device),
# NODE_MODULES (with azure-iot-device + azure-iot-device-mqtt), W (work dir, default /tmp/edgeh-sdk).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
T=${T:-target}
PY=${PY:-python3}
W=${W:-/tmp/edgeh-sdk}
F=$T/debug/fleethub
EDGE_BIN=$T/debug/examples/edgehub_standalone
D=$W/data
rm -rf "$W"; mkdir -p "$W"
ip link set lo up
"$F" serve --data-dir "$D" --bind 127.0.0.1 --mqtt-port 38883 --https-port 38443 \
  --hub-hostname localhost --dps-hostname localhost > "$W/server.log" 2>&1 &
SRV=$!
trap 'kill $SRV ${EDGE:-} 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -f "$D/server-info.json" ] && break; sleep 0.1; done
sleep 0.5
"$F" hub device-identity create --device-id edge-1 --edge-enabled --data-dir "$D" > /dev/null
for m in A B; do "$F" hub module-identity create --device-id edge-1 --module-id $m --data-dir "$D" > /dev/null; done
key() { "$F" hub module-identity show --device-id edge-1 --module-id "$1" --data-dir "$D" --output json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["authentication"]["symmetricKey"]["primaryKey"])'; }
KH=$(key '$edgeHub'); KA=$(key A); KB=$(key B)
"$F" hub device-twin update --device-id edge-1 --module-id '$edgeHub' --data-dir "$D" --desired \
  '{"schemaVersion":"1.0","routes":{"AtoB":"FROM /messages/modules/A/outputs/output1 INTO BrokeredEndpoint(\"/modules/B/inputs/input1\")","up":"FROM /messages/modules/A/* INTO $upstream"},"storeAndForwardConfiguration":{"timeToLiveSecs":7200}}' > /dev/null
CA=$(python3 -c "import json; print(json.load(open('$D/server-info.json'))['caCertPath'])")
cat > "$W/edge.json" <<EOC
{"device_id":"edge-1","listen":["127.0.0.3:8883"],"gateway_names":["127.0.0.3"],"hub_hostname":"localhost","hub_mqtt_port":38883,"hub_connect_address":"127.0.0.1","hub_ca":"$CA","state_dir":"$W/state","module_keys":{"\$edgeHub":"$KH","A":"$KA","B":"$KB"}}
EOC
"$EDGE_BIN" "$W/edge.json" > "$W/edge.log" 2>&1 &
EDGE=$!
for _ in $(seq 1 100); do [ -f "$W/state/edge-ca.pem" ] && break; sleep 0.1; done
sleep 1
echo "{\"edge_ca\":\"$W/state/edge-ca.pem\",\"keys\":{\"A\":\"$KA\",\"B\":\"$KB\"}}" > "$W/mods.json"
( "$PY" "$HERE/modules.py" "$W/mods.json" > "$W/py.log" 2>&1; echo "exit $?" >> "$W/py.log" ) &
PYPID=$!
for _ in $(seq 1 200); do grep -q READY-FOR-DESIRED "$W/py.log" && break; sleep 0.1; done
"$F" hub device-twin update --device-id edge-1 --module-id A --data-dir "$D" --desired '{"interval": 7}' > /dev/null
for _ in $(seq 1 200); do grep -q READY-FOR-METHOD "$W/py.log" && break; sleep 0.1; done
"$F" hub invoke-device-method --device-id edge-1 --module-id A --method-name ping --method-payload '{"x":1}' --data-dir "$D"
wait $PYPID || true
if [ -n "${NODE_MODULES:-}" ]; then
  NODE_PATH=$NODE_MODULES node "$HERE/modules.js" "$W/mods.json" > "$W/node.log" 2>&1 || true
fi
"$F" hub monitor-events --data-dir "$D" --timeout 2 --from-start --properties
cat "$W/py.log"; [ -f "$W/node.log" ] && cat "$W/node.log"
grep -q PYTHON-OK "$W/py.log" || { echo "FAIL: Python"; exit 1; }
if [ -n "${NODE_MODULES:-}" ]; then grep -q NODE-OK "$W/node.log" || { echo "FAIL: Node"; exit 1; }; fi
echo "PASS"

#!/usr/bin/env python3
"""Three fleethub nodes behind HAProxy (scripts/test.sh stage `scaleout`; docs/testing.md, docs/scale-out.md).

In network, mount and PID namespaces of its own (so 8883/443/5671 there are free, /etc/hosts is
private and nothing outlives the test):
1. a throwaway PostgreSQL, `nats-server`, three `fleethub serve` nodes on 127.0.0.11/.12/.13 sharing
   the store (`--store-url`, `--node-id node-N`, `--nats-url` when this fleethub has it) and HAProxy
   (TCP mode, health checks) on 127.0.0.1:8883, :443 and :5671, where the official SDKs dial;
2. the official Python and Node SDK compat suites (tests/compat/python, tests/compat/node, as
   scripts/test.sh runs them) through HAProxy, round robin over the three nodes, except: the suites
   in NOT_SHARED_YET (what docs/scale-out.md lists as not shared across nodes yet) and, without
   cross-node delivery (no `--nats-url`), those in NEEDS_CROSS_NODE (a device on one node, the
   service call that must reach it on another) run with HAProxy sending every new connection to
   node 1 (the others drained): they still go through HAProxy and the shared PostgreSQL store;
3. with cross-node delivery: a device held on node 1 (HAProxy pinned while it connects), the
   service calls made on node 2 (its address dialled): presence, a direct method, C2D, a
   desired-property push, revocation (disabling the device closes its connection on node 1);
4. kill -9 of one node under DPS and telemetry load through HAProxy: MQTT devices publishing QoS 1
   telemetry and official-SDK registrations; the devices reconnect through HAProxy to the
   survivors; then, through a surviving node, every registration answered `assigned` has its
   registration record and device identity, and every PUBACKed message is in the telemetry log.

Environment: FLEETHUB_BIN (default target/release/fleethub), FLEETHUB_SCALEOUT_WORK (scratch dir,
default .ci-work/scaleout), FLEETHUB_SCALEOUT_SUITES=0 to leave out step 2, FLEETHUB_SCALEOUT_ONLY
(file names of the suites to run, space-separated; default all), NODE_PATH (the pinned Node
SDKs; the Node suites are skipped without it). Run with the Python of the SDK venv, as root. Prints
PASS/FAIL lines; exit status 0 only when every step passed.
"""

import base64
import glob
import os
import secrets
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cluster  # noqa: E402 (after the path)
from cluster import ROOT, log  # noqa: E402

FLEETHUB = os.environ.get("FLEETHUB_BIN", os.path.join(ROOT, "target", "release", "fleethub"))
WORK = os.path.abspath(os.environ.get("FLEETHUB_SCALEOUT_WORK", os.path.join(ROOT, ".ci-work", "scaleout")))
# Suites with steps that need a service call to reach a device connected to another node (direct
# methods, C2D pushed to a connected device, desired-property pushes, presence, take-over): pinned
# to node 1 only while the nodes have no cross-node delivery (no --nats-url); each with the steps why.
NEEDS_CROSS_NODE = {
    "hub_device.py": "direct methods, C2D pushed to a connected device, take-over by a second connection",
    "hub_service.py": "invoke_device_method on a connected device",
    "hub_amqp_c2d.py": "C2D sent over AMQP pushed to a device connected over MQTT",
    "hub_device_mqtt.js": "direct methods, C2D pushed to a connected device",
    "hub_device_amqp.js": "connection state (presence) of a device connected to another node, methods, C2D",
    # What the cluster bus also carries (with a store re-read behind it, since the bus delivers at
    # most once): configuration changes (each node caches the compiled deployments), appends of
    # other nodes (a live receiver from @latest is woken by them), C2D feedback added on another node.
    "hub_configurations.py": "configuration changes reach the other nodes' deployment engines",
    "hub_configurations.js": "configuration changes reach the other nodes' deployment engines",
    "hub_amqp_events.py": "a live receiver is woken by other nodes' appends",
    "hub_amqp.js": "C2D feedback added by the node where the device completes the message",
}
# Suites that meet what the nodes do not share yet, with or without NATS (docs/scale-out.md lists
# them): always pinned to node 1.
# None left: HTTPS C2D lock tokens, the last one, are in the store since (hub_amqp_trace.py
# completes over HTTPS a message it received over HTTPS, through any node).
NOT_SHARED_YET = {}
# Suites that read every partition from the start with one client: run before the suites that fill
# the log (hub_amqp_events_backlog.py), since the Python client crawls through a large backlog of several
# partitions (issue 13) and would not reach its own events in time. The scale-out has nothing to do
# with it; run first, they meet the same small log the pinned runs gave them.
BEFORE_BACKLOG = ("hub_amqp_events.py",)
SUITE_LIMIT = 300
LOAD_DEVICES = 12
REGISTRANTS = 4

failures = []


def step(name, fn):
    t0 = time.monotonic()
    try:
        detail = fn()
        print("PASS scaleout: %s (%.0fs)%s" % (name, time.monotonic() - t0, " -- %s" % detail if detail else ""),
              flush=True)
    except Exception as e:  # noqa: BLE001 (every failure is reported the same way)
        print("FAIL scaleout: %s -- %s: %s" % (name, type(e).__name__, e), flush=True)
        failures.append(name)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def suite_env(info):
    ca = info["caCertPath"]
    # Not the caller's server settings (scripts/test.sh exports FLEETHUB_* of its own server, and its
    # conformance stage SSL_CERT_FILE with that server's CA): the suites run as in the python and
    # node stages, against this cluster.
    env = {k: v for k, v in os.environ.items()
           if (not k.startswith("FLEETHUB_") or k == "FLEETHUB_BIN") and k != "SSL_CERT_FILE"}
    env.update(FLEETHUB_CA_CERT=ca, FLEETHUB_DPS_HOST=cluster.DPS_HOST, FLEETHUB_ID_SCOPE=info["idScope"],
               FLEETHUB_DPS_SERVICE_CS=info["dpsServiceConnectionString"],
               FLEETHUB_HUB_SERVICE_CS=info["hubServiceConnectionString"],
               FLEETHUB_EVENTHUB_CS=info.get("eventHubCompatibleConnectionString") or "",
               FLEETHUB_COMPAT_PREFIX="scaleout",
               REQUESTS_CA_BUNDLE=ca, NODE_EXTRA_CA_CERTS=ca)
    return env


def run_suite(path, env):
    cmd = [sys.executable, path] if path.endswith(".py") else ["node", path]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=SUITE_LIMIT)
    out = r.stdout + r.stderr
    with open(os.path.join(WORK, "suite-%s.log" % os.path.basename(path)), "w") as f:
        f.write(out)
    bad = [line for line in out.splitlines() if line.startswith("FAIL ")]
    expect(r.returncode == 0, "exit status %d; %s" % (r.returncode, "; ".join(bad[:6]) or out[-800:]))
    summary = [line for line in out.splitlines() if " passed, " in line]
    return summary[-1] if summary else ""


def suites():
    only = os.environ.get("FLEETHUB_SCALEOUT_ONLY", "").split()
    found = sorted(glob.glob(os.path.join(ROOT, "tests", "compat", "python", "[!_]*.py")))
    if os.environ.get("NODE_PATH"):
        found += sorted(glob.glob(os.path.join(ROOT, "tests", "compat", "node", "*.js")))
    else:
        print("SKIP scaleout: Node suites -- NODE_PATH is not set", flush=True)
    return [f for f in found if not only or os.path.basename(f) in only]


def compat_suites(c):
    env = suite_env(c.info)
    all_suites = suites()
    pinned_why = dict(NOT_SHARED_YET, **({} if c.cross_node else NEEDS_CROSS_NODE))
    spread = [s for s in all_suites if os.path.basename(s) not in pinned_why]
    spread.sort(key=lambda s: os.path.basename(s) not in BEFORE_BACKLOG)
    # The pinned suites first, the deployment ones at the very start: without the cluster bus every
    # node sweeps its deployments when it starts and then once a minute with its cached
    # configurations, so a sweep of node 2 or 3 during those suites would undo node 1's work.
    pinned = sorted((s for s in all_suites if s not in spread), key=lambda s: "configurations" not in s)
    if pinned:
        c.haproxy.pin(c.nodes[0], c.nodes)
        try:
            for s in pinned:
                why = pinned_why[os.path.basename(s)]
                step("compat %s through HAProxy (new connections to node 1, not shared across nodes yet: %s)"
                     % (os.path.basename(s), why), lambda s=s: run_suite(s, env))
        finally:
            c.haproxy.unpin(c.nodes)
    for s in spread:
        step("compat %s through HAProxy (round robin over 3 nodes)" % os.path.basename(s),
             lambda s=s: run_suite(s, env))


def cross_node(c):
    """A device held on node 1 (HAProxy pinned while it connects), every service call made on node 2
    (its address dialled): presence, a direct method, C2D, a desired-property push, revocation."""
    import queue

    from azure.iot.device import IoTHubDeviceClient, MethodResponse

    from load import HUB_API, Rest

    info, n1, n2 = c.info, c.nodes[0], c.nodes[1]
    ca = info["caCertPath"]
    on_n2 = Rest(info["hubServiceConnectionString"], ca, HUB_API, addr=n2.addr)
    dev, key = "scaleout-cross-%s" % secrets.token_hex(3), base64.b64encode(secrets.token_bytes(32)).decode()
    on_n2.ok("PUT", "/devices/%s" % dev, {"deviceId": dev, "authentication": {
        "type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}})
    got = queue.Queue()
    client = IoTHubDeviceClient.create_from_connection_string(
        "HostName=%s;DeviceId=%s;SharedAccessKey=%s" % (cluster.HUB_HOST, dev, key),
        server_verification_cert=open(ca).read(), connection_retry=False)

    def on_method(req):
        got.put(("method", req.name))
        client.send_method_response(MethodResponse.create_from_method_request(req, 200, {"on": "node1"}))

    before = c.haproxy.connections(n1)
    # Setting a handler makes the SDK connect (auto_connect): pinned before the first one.
    c.haproxy.pin(n1, c.nodes)
    try:
        client.on_method_request_received = on_method
        client.on_message_received = lambda m: got.put(("c2d", m.data.decode()))
        client.on_twin_desired_properties_patch_received = lambda p: got.put(("desired", p.get("color")))
        client.on_connection_state_change = lambda: got.put(("state", client.connected))
        client.connect()
    finally:
        c.haproxy.unpin(c.nodes)

    def wait(kind, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                k, v = got.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if k == kind:
                return v
        raise AssertionError("no %s event on the device within %d s" % (kind, timeout))

    try:
        expect(c.haproxy.connections(n1) > before, "the device's connection is not on node 1: %s" % [
            (r["svname"], r["pxname"], r["scur"], r["stot"], r["status"]) for r in c.haproxy.stats()])
        wait_until = time.monotonic() + 15
        while on_n2.ok("GET", "/devices/%s" % dev).get("connectionState") != "Connected":
            expect(time.monotonic() < wait_until, "node 2 does not see the device on node 1 as Connected")
            time.sleep(0.3)
        answer = on_n2.ok("POST", "/twins/%s/methods" % dev, {"methodName": "whereAreYou", "payload": {},
                                                              "responseTimeoutInSeconds": 15})
        expect(answer.get("status") == 200 and answer.get("payload") == {"on": "node1"}, "method: %s" % answer)
        expect(wait("method") == "whereAreYou", "method name")
        on_n2.ok("POST", "/devices/%s/messages/deviceBound" % dev, {"body": "from node 2"})
        expect(wait("c2d") == "from node 2", "C2D body")
        on_n2.ok("PATCH", "/twins/%s" % dev, {"properties": {"desired": {"color": "blue"}}}, {"If-Match": "*"})
        expect(wait("desired") == "blue", "desired property")
        device = on_n2.ok("GET", "/devices/%s" % dev)
        device["status"] = "disabled"
        on_n2.ok("PUT", "/devices/%s" % dev, device, {"If-Match": "*"})
        expect(wait("state") is False, "the disabled device's connection on node 1 stays open")
    finally:
        client.shutdown()
    return "device %s on node 1; presence, method, C2D, desired push and revocation from node 2" % dev


def kill9_under_load(c):
    from load import DPS_API, HUB_API, Registrant, Rest, TelemetryDevice

    info = c.info
    ca = info["caCertPath"]
    ca_pem = open(ca).read()
    hub = Rest(info["hubServiceConnectionString"], ca, HUB_API)
    dps = Rest(info["dpsServiceConnectionString"], ca, DPS_API)
    run = secrets.token_hex(3)

    # The load: devices created and an enrollment group made through HAProxy.
    devices = []
    for i in range(LOAD_DEVICES):
        dev, key = "scaleout-load-%s-%d" % (run, i), base64.b64encode(secrets.token_bytes(32)).decode()
        hub.ok("PUT", "/devices/%s" % dev, {"deviceId": dev, "authentication": {
            "type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}})
        devices.append((dev, key))
    group, group_key = "scaleout-group-%s" % run, base64.b64encode(secrets.token_bytes(32)).decode()
    dps.ok("PUT", "/enrollmentGroups/%s" % group, {"enrollmentGroupId": group, "attestation": {
        "type": "symmetricKey", "symmetricKey": {"primaryKey": group_key, "secondaryKey": group_key}}})

    stop = threading.Event()
    senders = [TelemetryDevice(d, k, ca, stop) for d, k in devices]
    registrants = [Registrant("scaleout-reg-%s-%d" % (run, i), info["idScope"], group_key, ca_pem, stop)
                   for i in range(REGISTRANTS)]
    for t in senders + registrants:
        t.start()
    try:
        time.sleep(8)
        victim = max(c.nodes, key=c.haproxy.connections)
        on_victim = c.haproxy.connections(victim)
        expect(on_victim > 0, "no MQTT connection on any node after 8 s")
        acked_before = sum(len(s.acked) for s in senders)
        assigned_before = sum(len(r.assigned) for r in registrants)
        expect(acked_before > 0 and assigned_before > 0,
               "no load before the kill: %d PUBACKs, %d assigned; errors: %s %s" % (
                   acked_before, assigned_before, [s.errors[:2] for s in senders][:3],
                   [r.errors[:2] for r in registrants]))
        killed_at = time.monotonic()
        victim.kill9()
        log("kill -9 %s (pid %d) with %d MQTT connections through HAProxy; %d PUBACKs, %d assigned so far"
            % (victim.name, victim.pid, on_victim, acked_before, assigned_before))
        # The survivors take the load: every device publishes again after the kill.
        deadline = time.monotonic() + 40
        recovered = None
        while time.monotonic() < deadline:
            if all(any(t > killed_at + 1 for _, t in s.acked[-5:]) for s in senders) and \
                    any(t > killed_at + 1 for r in registrants for *_, t in r.assigned[-3:]):
                recovered = time.monotonic() - killed_at
                break
            time.sleep(0.5)
        time.sleep(3)
        # A load thread that ended early would read as a device the cluster left behind.
        ended = [t.name for t in senders + registrants if not t.is_alive()]
        expect(not ended, "load threads ended before the stop: %s" % ended)
    finally:
        stop.set()
        for t in senders + registrants:
            t.join(30)
    behind = [s.device_id for s in senders if not any(t > killed_at + 1 for _, t in s.acked)]
    expect(not behind, "devices that published nothing after the kill: %s; connects, last errors: %s" % (
        behind, [(s.connects, s.errors[-3:]) for s in senders if s.device_id in behind][:3]))
    after_kill = [a for r in registrants for a in r.assigned if a[3] > killed_at + 1]
    expect(after_kill, "no registration assigned after the kill; errors: %s" % [r.errors[-3:] for r in registrants])

    # Checked through one surviving node (pinned to its address), from the shared store.
    survivor = next(n for n in c.nodes if n.alive())
    hub_s = Rest(info["hubServiceConnectionString"], ca, HUB_API, addr=survivor.addr)
    dps_s = Rest(info["dpsServiceConnectionString"], ca, DPS_API, addr=survivor.addr)
    acked = {mid for s in senders for mid, _ in s.acked}
    stored, after = set(), 0
    while True:
        page = hub_s.ok("GET", "/messages/events?from=%d&limit=1000" % after)
        if not page["messages"]:
            break
        for m in page["messages"]:
            mid = m["systemProperties"].get("message-id")
            if mid:
                stored.add(mid)
        after = page["next"]
    lost = sorted(acked - stored)
    expect(not lost, "%d of %d PUBACKed messages are not in the log, e.g. %s" % (len(lost), len(acked), lost[:5]))
    assigned = [a for r in registrants for a in r.assigned]
    missing = []
    for reg, device_id, assigned_hub, _ in assigned:
        status, record = dps_s.call("GET", "/registrations/%s" % reg)
        if status != 200 or record.get("status") != "assigned" or record.get("deviceId") != device_id:
            missing.append("%s: record HTTP %d %s" % (reg, status, str(record)[:120]))
            continue
        status, _ = hub_s.call("GET", "/devices/%s" % device_id)
        if status != 200:
            missing.append("%s: device %s HTTP %d" % (reg, device_id, status))
    expect(not missing, "%d of %d assigned registrations are missing: %s" % (len(missing), len(assigned),
                                                                           missing[:5]))
    reconnects = sum(s.connects for s in senders) - len(senders)
    return ("killed %s with %d MQTT connections; %d PUBACKed messages all in the log (%d after the kill), "
            "%d reconnects, all devices publishing again after %s s; %d registrations assigned (%d after the kill), all with record and device"
            % (victim.name, on_victim, len(acked), sum(1 for s in senders for _, t in s.acked if t > killed_at),
               reconnects, "%.1f" % recovered if recovered else "?", len(assigned), len(after_kill)))


def main():
    cluster.enter_namespace(WORK)
    for f in glob.glob(os.path.join(WORK, "*.log")):
        os.remove(f)
    expect(os.path.exists(FLEETHUB), "no fleethub binary at %s (FLEETHUB_BIN)" % FLEETHUB)
    c = cluster.Cluster(FLEETHUB, WORK, 3)
    try:
        print("PASS scaleout: PostgreSQL, nats-server, 3 nodes (one ID scope %s), HAProxy on 8883/443/5671"
              % c.info["idScope"], flush=True)
        if os.environ.get("FLEETHUB_SCALEOUT_SUITES") != "0":
            compat_suites(c)
        if c.cross_node:
            step("cross-node: device on node 1, service calls on node 2", lambda: cross_node(c))
        else:
            print("SKIP scaleout: cross-node -- this fleethub has no --nats-url", flush=True)
        step("kill -9 of one node under DPS and telemetry load", lambda: kill9_under_load(c))
    finally:
        dead = [n.name for n in c.nodes if n.proc.poll() not in (None, -9)]
        c.stop()
        for n in dead:
            print("node %s exited on its own; its log:\n%s" % (n, cluster.tail_of(os.path.join(WORK, n + ".log"))))
    print("scaleout: %d failed" % len(failures), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

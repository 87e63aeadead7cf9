#!/usr/bin/env python3
"""DPS across two hubs with the official SDKs (scripts/test.sh stage `multihub`; docs/testing.md).

1. makes one operator CA (openssl) and starts two `fleethub serve`: the DPS with its own hub
   (hub1.multihub.test) on 127.0.0.31 and a second hub (hub2.multihub.test) on 127.0.0.32, both on
   the ports the SDKs dial (8883, 443), each with its own data directory, certificates from the
   shared CA; the host names go into /etc/hosts for the test and are removed afterwards;
2. links hub2 to the DPS with weight 3 (`fleethub dps linked-hub create`);
3. hashed allocation: 100 devices of a group registered with azure-iot-device spread over both hubs
   by weight (hub2 gets 3/4, within a tolerance); the Node provisioning client assigns more group
   devices the same way;
4. static allocation pins a device to hub2 (Python) and one to hub1 (Node);
5. a custom allocation webhook (a small HTTP server here) picks the hub per registration ID, sets the
   initial twin and returns a payload that the device receives (Python and Node);
6. reprovisioning: a device moves hub1 -> hub2 with its twin (deviceDataMigrated, gone from hub1),
   back with the initial twin (deviceDataReset), and stays put with `never`;
7. every device then connects to its assigned hub with the official device SDK (trusting the one CA).

Environment: FLEETHUB_BIN (release binary), FLEETHUB_MULTIHUB_WORK (scratch dir),
FLEETHUB_MULTIHUB_ADDRS (default "127.0.0.31 127.0.0.32"), NODE_PATH (the pinned Node SDKs; the Node
part is skipped without it). Needs root (ports 443/8883, /etc/hosts). Prints PASS/FAIL lines; exit
status 0 only when every step passed.
"""

import base64
import concurrent.futures
import hashlib
import hmac
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FLEETHUB = os.environ.get("FLEETHUB_BIN", os.path.join(ROOT, "target", "release", "fleethub"))
WORK = os.path.abspath(os.environ.get("FLEETHUB_MULTIHUB_WORK", os.path.join(ROOT, ".ci-work", "multihub")))
ADDR1, ADDR2 = os.environ.get("FLEETHUB_MULTIHUB_ADDRS", "127.0.0.31 127.0.0.32").split()
# The environment of every fleethub process this test starts: without the FLEETHUB_* settings of the
# caller (scripts/test.sh exports FLEETHUB_CA_CERT and connection strings for its own server, which the
# CLI would take instead of these servers' data directories).
FLEETHUB_ENV = {k: v for k, v in os.environ.items() if not k.startswith("FLEETHUB_")}
DPS_HOST, HUB1, HUB2 = "dps.multihub.test", "hub1.multihub.test", "hub2.multihub.test"
HOSTS_MARK = "# fleethub-dps-multihub test"
HOSTS_LINES = ["%s %s %s %s" % (ADDR1, DPS_HOST, HUB1, HOSTS_MARK),
               "%s dps2.multihub.test %s %s" % (ADDR2, HUB2, HOSTS_MARK)]
WEIGHT2 = 3
DEVICES = 100
TOTAL_LIMIT = 900
START = time.monotonic()
RUN = uuid.uuid4().hex[:6]

failures = []
servers = []


def log(msg):
    print("[%5.1fs] %s" % (time.monotonic() - START, msg), flush=True)


def step(name, fn):
    try:
        detail = fn()
        print("PASS multihub: %s%s" % (name, " -- %s" % detail if detail else ""), flush=True)
        return True
    except Exception as e:  # noqa: BLE001 (every failure is reported the same way)
        print("FAIL multihub: %s -- %s: %s" % (name, type(e).__name__, e), flush=True)
        failures.append(name)
        return False


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def derive(group_key, registration_id):
    mac = hmac.new(base64.b64decode(group_key), registration_id.encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


# --- set-up -----------------------------------------------------------------------------------------

def hosts_set(add):
    with open("/etc/hosts") as f:
        kept = [line for line in f.read().splitlines() if HOSTS_MARK not in line]
    with open("/etc/hosts", "w") as f:  # in place: /etc/hosts may be a bind mount
        f.write("\n".join(kept + (HOSTS_LINES if add else [])) + "\n")


def make_ca():
    ca, key = os.path.join(WORK, "ca.pem"), os.path.join(WORK, "ca.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "30", "-subj", "/CN=fleethub multihub test CA %s" % RUN,
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout", key, "-out", ca], check=True, capture_output=True)
    return ca, key


class Server:
    def __init__(self, name, addr, dps_host, hub_host, ca):
        self.name, self.addr, self.hub_host = name, addr, hub_host
        self.data = os.path.join(WORK, name)
        self.log_path = os.path.join(WORK, name + ".log")
        args = [FLEETHUB, "serve", "--data-dir", self.data, "--dps-hostname", dps_host, "--hub-hostname", hub_host,
                "--bind", addr, "--ca-cert", ca[0], "--ca-key", ca[1]]
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                     env=FLEETHUB_ENV)
        servers.append(self)
        deadline = time.monotonic() + 60
        while True:
            expect(self.proc.poll() is None, "%s exited at start-up:\n%s" % (name, self.tail()))
            r = subprocess.run([FLEETHUB, "info", "--data-dir", self.data, "--output", "json"], capture_output=True,
                               env=FLEETHUB_ENV)
            if r.returncode == 0 and all(self.port_open(p) for p in (443, 8883)):
                self.info = json.loads(r.stdout)
                return
            expect(time.monotonic() < deadline, "%s not ready after 60 s:\n%s" % (name, self.tail()))
            time.sleep(0.5)

    def port_open(self, port):
        try:
            socket.create_connection((self.addr, port), timeout=2).close()
            return True
        except OSError:
            return False

    def tail(self, n=40):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def cli(self, *args):
        r = subprocess.run([FLEETHUB, *args, "--data-dir", self.data, "--output", "json"], capture_output=True,
                           text=True, timeout=60, env=FLEETHUB_ENV)
        expect(r.returncode == 0, "fleethub %s: %s" % (" ".join(args), r.stderr.strip()))
        return json.loads(r.stdout) if r.stdout.strip() else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --- the webhook ------------------------------------------------------------------------------------

webhook_requests = []


class Webhook(http.server.BaseHTTPRequestHandler):
    """Registration IDs ending in -h2 go to hub2, -hx to a hub that is not linked, others to hub1; the
    answer echoes the device's payload."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        webhook_requests.append(req)
        ctx = req["deviceRuntimeContext"]
        reg = ctx["registrationId"]
        hub = HUB2 if reg.endswith("-h2") else "nowhere.multihub.test" if reg.endswith("-hx") else HUB1
        answer = {"iotHubHostName": hub,
                  "initialTwin": {"properties": {"desired": {"fromWebhook": reg}}},
                  "payload": {"chosen": hub, "yourModel": (ctx.get("payload") or {}).get("model")}}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# --- the official SDKs ------------------------------------------------------------------------------

def register(reg, key, payload=None):
    from azure.iot.device import ProvisioningDeviceClient
    pdc = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=DPS_HOST, registration_id=reg, id_scope=SCOPE, symmetric_key=key,
        server_verification_cert=CA_PEM)
    if payload is not None:
        pdc.provisioning_payload = payload
    result = pdc.register()
    expect(result.status == "assigned", "%s: status %s" % (reg, result.status))
    return result.registration_state


def connect_and_twin(hub, device_id, key):
    """Connects to the hub the device was assigned, sends one message, returns its desired properties."""
    from azure.iot.device import IoTHubDeviceClient, Message
    c = IoTHubDeviceClient.create_from_symmetric_key(symmetric_key=key, hostname=hub, device_id=device_id,
                                                     server_verification_cert=CA_PEM, connection_retry=False)
    try:
        c.connect()
        c.send_message(Message(json.dumps({"from": device_id})))
        return c.get_twin()["desired"]
    finally:
        c.shutdown()


def registry(server):
    from azure.iot.hub import IoTHubRegistryManager
    return IoTHubRegistryManager.from_connection_string(server.info["hubServiceConnectionString"])


def exists(server, device_id):
    try:
        registry(server).get_device(device_id)
        return True
    except Exception as e:  # noqa: BLE001 (msrest's HttpOperationError)
        if "404" in str(e) or "not found" in str(e).lower():
            return False
        raise


def node(*args):
    r = subprocess.run(["node", os.path.join(HERE, "multihub_node.js"), *args], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, NODE_EXTRA_CA_CERTS=CA_PATH))
    expect(r.returncode == 0, "node %s: %s %s" % (" ".join(args), r.stdout[-1500:], r.stderr[-1500:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


# --- the steps --------------------------------------------------------------------------------------

def main():
    global SCOPE, CA_PEM, CA_PATH
    if os.geteuid() != 0:
        print("FAIL multihub: needs root (ports 443/8883 on %s and %s, /etc/hosts)" % (ADDR1, ADDR2))
        return 1
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    ca = make_ca()
    CA_PATH = ca[0]
    CA_PEM = open(CA_PATH).read()
    os.environ["REQUESTS_CA_BUNDLE"] = CA_PATH  # the Python service SDK (msrest -> requests)
    hosts_set(True)
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    hook_url = "http://127.0.0.1:%d/api/allocate?code=function-key" % hook.server_address[1]
    try:
        return run(ca, hook_url)
    finally:
        hook.shutdown()
        for s in servers:
            s.stop()
        hosts_set(False)


def run(ca, hook_url):
    global SCOPE
    dps = hub2 = None

    def start():
        nonlocal dps, hub2
        hub2 = Server("hub2", ADDR2, "dps2.multihub.test", HUB2, ca)
        dps = Server("dps", ADDR1, DPS_HOST, HUB1, ca)
        return "DPS + hub1 on %s, hub2 on %s, one CA" % (ADDR1, ADDR2)

    if not step("two servers start", start):
        for s in servers:
            print(s.tail())
        return 1
    SCOPE = dps.info["idScope"]

    def link():
        dps.cli("dps", "linked-hub", "create", "--connection-string", hub2.info["hubServiceConnectionString"],
                "--allocation-weight", str(WEIGHT2))
        names = [h["name"] for h in dps.cli("dps", "linked-hub", "list")]
        expect(names == [HUB1, HUB2], "linked hubs %s" % names)
        return "linked: %s" % names

    step("link hub2 to the DPS (weight %d)" % WEIGHT2, link)

    # Hashed allocation over a group, Python SDK.
    group = "mh-hashed-%s" % RUN
    placed = {}

    def hashed():
        g = dps.cli("dps", "enrollment-group", "create", "--group-id", group, "--allocation-policy", "hashed")
        gkey = g["attestation"]["symmetricKey"]["primaryKey"]
        regs = ["mh-%s-%03d" % (RUN, i) for i in range(DEVICES)]

        def one(reg):
            key = derive(gkey, reg)
            return reg, key, register(reg, key).assigned_hub

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for reg, key, hub in pool.map(one, regs):
                placed[reg] = (hub, key)
        counts = {h: sum(1 for v in placed.values() if v[0] == h) for h in (HUB1, HUB2)}
        expect(sum(counts.values()) == DEVICES, "assigned outside the two hubs: %s" % counts)
        want2 = DEVICES * WEIGHT2 / (WEIGHT2 + 1)
        expect(abs(counts[HUB2] - want2) <= 15, "hub2 got %d of %d, want %d +- 15" % (counts[HUB2], DEVICES, want2))
        return "hub1 %d, hub2 %d (weights 1:%d)" % (counts[HUB1], counts[HUB2], WEIGHT2)

    if step("hashed allocation spreads %d devices by weight (azure-iot-device)" % DEVICES, hashed):
        def identities():
            for reg, (hub, _) in list(placed.items())[:20]:
                here, there = (dps, hub2) if hub == HUB1 else (hub2, dps)
                expect(exists(here, reg), "%s missing on %s" % (reg, hub))
                expect(not exists(there, reg), "%s also on the other hub" % reg)
            return "20 checked with azure-iot-hub on both hubs"

        step("each device exists on its hub only (azure-iot-hub)", identities)

        def connect_some():
            for hub in (HUB1, HUB2):
                reg, (_, key) = next((r, v) for r, v in placed.items() if v[0] == hub)
                connect_and_twin(hub, reg, key)
            return "one device per hub connected and sent"

        step("devices connect to their assigned hub (azure-iot-device)", connect_some)

    node_ok = bool(os.environ.get("NODE_PATH"))

    def node_hashed():
        g = dps.cli("dps", "enrollment-group", "show", "--group-id", group, "--show-keys")
        gkey = g["attestation"]["symmetricKey"]["primaryKey"]
        regs = ["mh-node-%s-%d" % (RUN, i) for i in range(8)]
        got = node("register", DPS_HOST, SCOPE, json.dumps([[r, derive(gkey, r), None] for r in regs]))
        hubs = {r["registrationId"]: r["assignedHub"] for r in got}
        expect(set(hubs.values()) <= {HUB1, HUB2}, "hubs %s" % hubs)
        # The hash is the registration ID's: the Python client would land the same way.
        for r in got:
            expect(r["connected"], "%s did not connect to %s" % (r["registrationId"], r["assignedHub"]))
        return "assigned %s, each connected with azure-iot-device-mqtt" % sorted(hubs.values())

    if node_ok:
        step("hashed allocation with the Node provisioning client (Mqtt, Http)", node_hashed)
    else:
        print("SKIP multihub: Node steps (NODE_PATH not set)")

    def static():
        e = dps.cli("dps", "enrollment", "create", "--registration-id", "mh-static-%s" % RUN,
                    "--allocation-policy", "static", "--iot-hubs", HUB2)
        key = e["attestation"]["symmetricKey"]["primaryKey"]
        st = register("mh-static-%s" % RUN, key)
        expect(st.assigned_hub == HUB2, "assigned %s" % st.assigned_hub)
        connect_and_twin(HUB2, st.device_id, key)
        out = "python: %s" % st.assigned_hub
        if node_ok:
            e = dps.cli("dps", "enrollment", "create", "--registration-id", "mh-static-n-%s" % RUN,
                        "--allocation-policy", "static", "--iot-hubs", HUB1)
            got = node("register", DPS_HOST, SCOPE, json.dumps(
                [["mh-static-n-%s" % RUN, e["attestation"]["symmetricKey"]["primaryKey"], None]]))
            expect(got[0]["assignedHub"] == HUB1 and got[0]["connected"], "node: %s" % got)
            out += ", node: %s" % got[0]["assignedHub"]
        return out

    step("static allocation pins the hub named", static)

    def custom():
        results = []
        for reg in ("mh-wh-%s-h1" % RUN, "mh-wh-%s-h2" % RUN):
            e = dps.cli("dps", "enrollment", "create", "--registration-id", reg, "--allocation-policy", "custom",
                        "--webhook-url", hook_url, "--api-version", "2021-10-01")
            key = e["attestation"]["symmetricKey"]["primaryKey"]
            st = register(reg, key, payload={"model": "thermo-%s" % reg[-2:]})
            want = HUB2 if reg.endswith("-h2") else HUB1
            expect(st.assigned_hub == want, "%s assigned %s, want %s" % (reg, st.assigned_hub, want))
            got = st.response_payload  # azure-iot-device 2.14 hands it over as JSON text
            got = json.loads(got) if isinstance(got, str) else got
            expect(got == {"chosen": want, "yourModel": "thermo-%s" % reg[-2:]}, "payload the device got: %r" % (got,))
            desired = connect_and_twin(want, reg, key)
            expect(desired.get("fromWebhook") == reg, "desired %s" % desired)
            results.append("%s -> %s" % (reg[-2:], want))
        req = webhook_requests[-1]
        expect(req["deviceRuntimeContext"]["payload"] == {"model": "thermo-h2"}, "request %s" % req)
        expect(req["linkedHubs"] == [HUB1, HUB2], "linkedHubs %s" % req["linkedHubs"])
        expect("symmetricKey" not in req["individualEnrollment"]["attestation"], "keys sent to the webhook")
        if node_ok:
            reg = "mh-wh-n-%s-h2" % RUN
            e = dps.cli("dps", "enrollment", "create", "--registration-id", reg, "--allocation-policy", "custom",
                        "--webhook-url", hook_url)
            got = node("register", DPS_HOST, SCOPE, json.dumps(
                [[reg, e["attestation"]["symmetricKey"]["primaryKey"], {"model": "node"}]]))[0]
            expect(got["assignedHub"] == HUB2 and got["connected"], "node: %s" % got)
            expect(got["payload"] == {"chosen": HUB2, "yourModel": "node"}, "node payload %s" % got["payload"])
            results.append("node -> hub2 with payload")
        return ", ".join(results)

    step("custom allocation webhook chooses per registration ID and answers the device", custom)

    def custom_unlinked():
        reg = "mh-wh-%s-hx" % RUN
        e = dps.cli("dps", "enrollment", "create", "--registration-id", reg, "--allocation-policy", "custom",
                    "--webhook-url", hook_url)
        try:
            register(reg, e["attestation"]["symmetricKey"]["primaryKey"])
            raise AssertionError("assigned, though the webhook named a hub that is not linked")
        except AssertionError as err:
            if "assigned, though" in str(err):
                raise
            outcome = str(err)
        except Exception as err:  # noqa: BLE001 (the SDK's own error for a failed registration)
            outcome = "%s: %s" % (type(err).__name__, str(err)[:120])
        rec = dps.cli("dps", "registration", "show", "--registration-id", reg)
        expect((rec.get("status"), rec.get("errorCode")) == ("failed", 400208), "record %s" % rec)
        expect(not exists(dps, reg) and not exists(hub2, reg), "created although the registration failed")
        return "device: %s; record: failed 400208" % outcome

    step("a webhook naming a hub that is not linked fails the registration (400208)", custom_unlinked)

    def reprovision():
        reg = "mh-move-%s" % RUN
        e = dps.cli("dps", "enrollment", "create", "--registration-id", reg, "--allocation-policy", "static",
                    "--iot-hubs", HUB1, "--initial-twin-properties", json.dumps({"v": 1}))
        key = e["attestation"]["symmetricKey"]["primaryKey"]
        st = register(reg, key)
        expect((st.assigned_hub, st.sub_status) == (HUB1, "initialAssignment"), "first: %s" % st.sub_status)
        from azure.iot.hub.models import Twin, TwinProperties
        registry(dps).update_twin(reg, Twin(tags={"moved": "yes"}, properties=TwinProperties(desired={"mode": "eco"})),
                                  "*")
        steps = []

        def again(hub, policy):
            dps.cli("dps", "enrollment", "update", "--registration-id", reg, "--iot-hubs", hub,
                    "--reprovision-policy", policy)
            return register(reg, key)

        st = again(HUB2, "reprovisionandmigratedata")
        expect((st.assigned_hub, st.sub_status) == (HUB2, "deviceDataMigrated"), "%s %s" % (st.assigned_hub, st.sub_status))
        desired = connect_and_twin(HUB2, reg, key)
        expect(desired.get("mode") == "eco" and desired.get("v") == 1, "migrated desired %s" % desired)
        expect(registry(hub2).get_twin(reg).tags.get("moved") == "yes", "tags not migrated")
        expect(not exists(dps, reg), "still on hub1 after the move")
        steps.append("hub2 deviceDataMigrated")

        st = again(HUB1, "reprovisionandresetdata")
        expect((st.assigned_hub, st.sub_status) == (HUB1, "deviceDataReset"), "%s %s" % (st.assigned_hub, st.sub_status))
        desired = connect_and_twin(HUB1, reg, key)
        expect(desired.get("v") == 1 and "mode" not in desired, "reset desired %s" % desired)
        expect(not exists(hub2, reg), "still on hub2 after the move")
        steps.append("hub1 deviceDataReset")

        st = again(HUB2, "never")
        expect((st.assigned_hub, st.sub_status) == (HUB1, "reprovisionedToInitialAssignment"),
               "%s %s" % (st.assigned_hub, st.sub_status))
        connect_and_twin(HUB1, reg, key)
        steps.append("never: stays on hub1")
        return ", ".join(steps)

    step("reprovisioning moves the device and its twin per policy", reprovision)

    if failures:
        for s in servers:
            print("---- last lines of %s ----\n%s" % (s.log_path, s.tail()))
    print("multihub: %d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

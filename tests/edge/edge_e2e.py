#!/usr/bin/env python3
"""End-to-end test of the edge workflow (scripts/test.sh stage `edge`; docs/testing.md).

1. starts its own `fleethub serve` (127.0.0.1, MQTT 18883, HTTPS 18443, fresh data dir);
2. creates an edge-enabled enrollment group with the initial twin tag environment=test and an edge
   deployment targeting tags.environment='test' (two process modules, routes) with the fleethub CLI;
3. writes a fleetedge config with `fleetedge config init --dps-symmetric-key` and the group-derived
   key (`fleethub dps enrollment-group compute-device-key`), starts `fleetedge run`;
4. waits until it provisioned, received the deployment and runs both modules: `emitter` (official
   Python SDK, create_from_edge_environment, sends on output1) and `receiver` (same SDK, gets them
   on input1 through an edge hub route and forwards them on `forwarded`, routed to $upstream);
5. `fleetedge list` shows both running, `fleetedge check` passes, the forwarded telemetry arrives
   in the hub's built-in endpoint;
6. stops the hub for a while, starts it again, and checks that no module telemetry was lost: the
   emitter's counter arrives without gaps across the outage.

With Podman installed (.ci/run installs it; FLEETHUB_EDGE_CONTAINERS=0 turns this off) the receiver
is a container module instead (`"type": "docker"`, an image imported from the module Python and
its venv, no registry; a private `podman system service` in the work directory, tests/edge/
podman_env.py) next to the emitter process module, and the test also checks `fleetedge logs` of the
container, the reported `imageHash`, that a deployment update replaces the container, that a
crash-looping container backs off, and that a deployment with bad createOptions JSON is rejected
(400 with the reason) while the last good one keeps running.

Environment: FLEETHUB_BIN, FLEETEDGE_BIN (release binaries), FLEETHUB_MODULE_PYTHON (a python
with azure-iot-device), FLEETHUB_EDGE_WORK (scratch dir), FLEETHUB_EDGE_GATEWAY (default
127.0.0.2: the edge hub listens on <it>:8883, the port the SDK dials, next to a hub on 127.0.0.1).
Prints PASS/FAIL lines; exit status 0 only when every step passed.
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

import podman_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FLEETHUB = os.environ.get("FLEETHUB_BIN", os.path.join(ROOT, "target", "release", "fleethub"))
FLEETEDGE = os.environ.get("FLEETEDGE_BIN", os.path.join(ROOT, "target", "release", "fleetedge"))
MODULE_PYTHON = os.environ.get("FLEETHUB_MODULE_PYTHON", os.path.join(ROOT, ".ci-work", "venv", "bin", "python"))
WORK = os.path.abspath(os.environ.get("FLEETHUB_EDGE_WORK", os.path.join(ROOT, ".ci-work", "edge")))
GATEWAY = os.environ.get("FLEETHUB_EDGE_GATEWAY", "127.0.0.2")
MQTT_PORT, HTTPS_PORT, AMQP_PORT = 18883, 18443, 15671
TOTAL_LIMIT = 900
CONTAINERS = os.environ.get("FLEETHUB_EDGE_CONTAINERS", "1") != "0" and podman_env.available()
IMAGE = "localhost/fleetedge-e2e-python:1"
START = time.monotonic()

failures = []


def log(msg):
    print("[%5.1fs] %s" % (time.monotonic() - START, msg), flush=True)


def step(name, fn):
    try:
        detail = fn()
        print("PASS edge-e2e: %s%s" % (name, " -- %s" % detail if detail else ""), flush=True)
        return True
    except Exception as e:  # noqa: BLE001 (every failure is reported the same way)
        print("FAIL edge-e2e: %s -- %s: %s" % (name, type(e).__name__, e), flush=True)
        failures.append(name)
        return False


def wait_for(what, fn, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if time.monotonic() - START > TOTAL_LIMIT:
            raise TimeoutError("whole test over %ds while waiting for %s" % (TOTAL_LIMIT, what))
        try:
            got = fn()
            if got:
                return got
        except Exception as e:  # noqa: BLE001
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError("%s: not after %ds%s" % (what, timeout, " (last error: %s)" % last if last else ""))
        time.sleep(interval)


# The commands talk to this test's own server: settings exported for the main test server
# (scripts/test.sh exports FLEETHUB_CA_CERT, connection strings, ...) must not leak into them.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETHUB_", "FLEETEDGE_"))}


def run(args, check=True, timeout=60):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=CLEAN_ENV)
    if check and r.returncode != 0:
        raise RuntimeError("%s exited %d: %s %s" % (" ".join(args[:4]), r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    return r


class Hub:
    """The fleethub server under test (a process we can stop and start again)."""

    def __init__(self):
        self.data = os.path.join(WORK, "hub-data")
        self.log_path = os.path.join(WORK, "hub.log")
        self.proc = None

    def start(self):
        logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [FLEETHUB, "serve", "--data-dir", self.data, "--bind", "127.0.0.1", "--mqtt-port", str(MQTT_PORT),
             "--https-port", str(HTTPS_PORT), "--amqp-port", str(AMQP_PORT), "--hub-hostname", "localhost", "--dps-hostname", "localhost"],
            stdout=logf, stderr=subprocess.STDOUT, env=CLEAN_ENV)
        wait_for("fleethub serve answering", self.ready, 60)

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("fleethub serve exited with %s (see %s)" % (self.proc.returncode, self.log_path))
        self.info = json.loads(run([FLEETHUB, "info", "--data-dir", self.data, "--output", "json"]).stdout)
        self.request("GET", "/devices?top=1")
        return True

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def sas(self):
        cs = dict(p.split("=", 1) for p in self.info["hubServiceConnectionString"].split(";"))
        sr = urllib.parse.quote(cs["HostName"], safe="")
        expiry = int(time.time()) + 600
        sig = base64.b64encode(hmac.new(base64.b64decode(cs["SharedAccessKey"]), ("%s\n%d" % (sr, expiry)).encode(),
                                        hashlib.sha256).digest()).decode()
        return "SharedAccessSignature sr=%s&sig=%s&se=%d&skn=%s" % (sr, urllib.parse.quote(sig, safe=""), expiry,
                                                                  cs["SharedAccessKeyName"])

    def request(self, method, path, body=None):
        ctx = ssl.create_default_context(cafile=self.info["caCertPath"])
        sep = "&" if "?" in path else "?"
        req = urllib.request.Request("https://localhost:%d%s%sapi-version=2021-04-12" % (HTTPS_PORT, path, sep),
                                     method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": self.sas(), "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=15) as r:
            data = r.read()
            return json.loads(data) if data else None

    def cli(self, *args):
        return run([FLEETHUB, *args, "--data-dir", self.data])


class Events:
    """Reads the hub's built-in endpoint from the start, remembering what it saw."""

    def __init__(self, hub):
        self.hub, self.after, self.messages = hub, 0, []

    def poll(self):
        while True:
            page = self.hub.request("GET", "/messages/events?from=%d&limit=1000" % self.after)
            self.messages.extend(page["messages"])
            if not page["messages"] or page["next"] == self.after:
                return
            self.after = page["next"]

    def forwarded_ns(self, device_id):
        out = []
        for m in self.messages:
            sp, props = m.get("systemProperties", {}), m.get("properties", {})
            if sp.get("iothub-connection-device-id") == device_id and sp.get("iothub-connection-module-id") == "receiver" \
                    and props.get("via") == "receiver" and "n" in props:
                out.append(int(props["n"]))
        return out


def container_module(script, order, version="1.0", create_options=None):
    """A module running `script` with the module Python inside the test image."""
    opts = create_options if create_options is not None else json.dumps(
        {"Cmd": [MODULE_PYTHON, os.path.join(HERE, "modules", script)]})
    return {"version": version, "type": "docker", "status": "running", "restartPolicy": "always",
            "startupOrder": order, "imagePullPolicy": "never", "env": {"PYTHONUNBUFFERED": {"value": "1"}},
            "settings": {"image": IMAGE, "createOptions": opts}}


def manifest(receiver=None, extra=None):
    py = MODULE_PYTHON

    def module(script, order):
        return {"version": "1.0", "type": "process", "status": "running", "restartPolicy": "always",
                "startupOrder": order, "env": {"PYTHONUNBUFFERED": {"value": "1"}},
                "settings": {"command": py, "args": [os.path.join(HERE, "modules", script)]}}

    if receiver is None:
        receiver = container_module("receiver.py", 1) if CONTAINERS else module("receiver.py", 1)
    modules = {"receiver": receiver, "emitter": module("emitter.py", 2)}
    modules.update(extra or {})
    return {"content": {"modulesContent": {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "process", "settings": {}},
            "systemModules": {"edgeAgent": {"type": "process", "settings": {}},
                              "edgeHub": {"type": "process", "status": "running", "restartPolicy": "always",
                                          "settings": {}}},
            "modules": modules}},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1",
            "routes": {
                "emitterToReceiver": "FROM /messages/modules/emitter/outputs/output1 "
                                     "INTO BrokeredEndpoint(\"/modules/receiver/inputs/input1\")",
                "receiverToUpstream": "FROM /messages/modules/receiver/outputs/* INTO $upstream"},
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}}}


def main():
    for path, what in ((FLEETHUB, "fleethub"), (FLEETEDGE, "fleetedge"), (MODULE_PYTHON, "module python")):
        if not os.access(path, os.X_OK):
            print("FAIL edge-e2e: setup -- %s not found at %s" % (what, path))
            return 1
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    run_id = uuid.uuid4().hex[:8]
    group, reg_id = "edge-e2e-group-%s" % run_id, "edge-e2e-dev-%s" % run_id
    hub = Hub()
    podman = podman_env.Podman(WORK)
    edge = None
    edge_log = os.path.join(WORK, "fleetedge.log")
    config = os.path.join(WORK, "edge", "config.toml")
    env = dict(CLEAN_ENV, FLEETEDGE_CONFIG=config)
    try:
        if not step("fleethub serve starts", lambda: hub.start() or "ports %d/%d" % (MQTT_PORT, HTTPS_PORT)):
            return 1
        state = {}

        def enroll():
            g = json.loads(hub.cli("dps", "enrollment-group", "create", "--group-id", group, "--edge-enabled",
                                   "--initial-twin-tags", json.dumps({"environment": "test"})).stdout)
            key = g["attestation"]["symmetricKey"]["primaryKey"]
            out = run([FLEETHUB, "dps", "enrollment-group", "compute-device-key", "--key", key,
                       "--registration-id", reg_id]).stdout.strip()
            state["device_key"] = json.loads(out) if out.startswith('"') else out.split()[-1]
            return "group %s, derived key for %s" % (group, reg_id)

        def deploy():
            path = os.path.join(WORK, "deployment.json")
            with open(path, "w") as f:
                json.dump(manifest(), f, indent=2)
            hub.cli("edge", "deployment", "create", "--deployment-id", "edge-e2e-%s" % run_id, "--content", path,
                    "--target-condition", "tags.environment='test'", "--priority", "10")
            return "deployment edge-e2e-%s (priority 10)" % run_id

        def start_podman():
            podman.start()
            return "%s; image %s" % (podman.uri, podman.import_python_image(
                IMAGE, MODULE_PYTHON, [os.path.join(HERE, "modules", m) for m in ("receiver.py", "emitter.py")]))

        def start_edge():
            nonlocal edge
            run([FLEETEDGE, "--config", config, "config", "init", "--dps-symmetric-key",
                 "--scope-id", hub.info["idScope"], "--registration-id", reg_id, "--symmetric-key", state["device_key"],
                 "--global-endpoint", "https://localhost:%d" % HTTPS_PORT, "--trust-bundle", hub.info["caCertPath"],
                 "--hostname", GATEWAY, "--homedir", os.path.join(WORK, "edge", "home"),
                 "--hub-mqtt-port", str(MQTT_PORT), "--hub-https-port", str(HTTPS_PORT),
                 "--edge-hub-listen", "%s:8883" % GATEWAY], timeout=30)
            if CONTAINERS:
                with open(config, "a") as f:
                    f.write('\n[moby_runtime]\nuri = "%s"\nnetwork = "azure-iot-edge"\n' % podman.uri)
            run([FLEETEDGE, "--config", config, "config", "apply"], timeout=30)
            edge = subprocess.Popen([FLEETEDGE, "--config", config, "run"], stdout=open(edge_log, "a"),
                                    stderr=subprocess.STDOUT, env=env)
            return "config %s" % config

        if CONTAINERS:
            if not step("podman system service (private) + module image imported without a registry", start_podman):
                return 1
        else:
            print("NOTE edge-e2e: podman/runc not installed (or FLEETHUB_EDGE_CONTAINERS=0): receiver runs as a "
                  "process; the container steps are left out", flush=True)
        ok = step("enrollment group with initial twin tag environment=test; derived device key", enroll) \
            and step("edge deployment targeting tags.environment='test'", deploy) \
            and step("fleetedge config init --dps-symmetric-key + config apply + run", start_edge)
        if not ok:
            return 1

        def provisioned():
            dev = wait_for("device %s in the registry" % reg_id,
                           lambda: hub.request("GET", "/devices/%s" % reg_id), 90)
            if not dev.get("capabilities", {}).get("iotEdge"):
                raise AssertionError("device is not edge-enabled: %s" % dev)
            twin = hub.request("GET", "/twins/%s" % reg_id)
            if twin.get("tags", {}).get("environment") != "test":
                raise AssertionError("initial twin tags missing: %s" % twin.get("tags"))
            return "device %s, tags %s" % (reg_id, twin["tags"])

        def list_running():
            def both_running():
                out = run([FLEETEDGE, "--config", config, "list"], check=False).stdout
                rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if line.split()}
                return out if rows.get("emitter") == "running" and rows.get("receiver") == "running" else None
            out = wait_for("fleetedge list shows emitter and receiver running", both_running, 150)
            return "\n" + out.rstrip()

        events = Events(hub)

        def telemetry_arrives():
            def some():
                events.poll()
                return len(events.forwarded_ns(reg_id)) >= 10
            wait_for("forwarded module telemetry in the built-in endpoint", some, 90)
            ns = events.forwarded_ns(reg_id)
            return "%d forwarded messages so far (n %d..%d)" % (len(ns), min(ns), max(ns))

        def check_passes():
            r = run([FLEETEDGE, "--config", config, "check", "--output", "json"], check=False, timeout=120)
            doc = json.loads(r.stdout)
            checks = doc["checks"] if isinstance(doc, dict) else doc
            failed = [c for c in checks if c.get("result", c.get("status")) in ("fail", "failed", "error")]
            if r.returncode != 0 or failed:
                raise AssertionError("fleetedge check exit %d, failed: %s" % (r.returncode, failed or r.stderr[-500:]))
            engine = [c for c in checks if c.get("id") == "container-engine"]
            if CONTAINERS and (not engine or engine[0].get("result") != "ok"):
                raise AssertionError("container-engine check: %s" % engine)
            return "%d checks, none failed%s" % (len(checks), "; container-engine: %s" % engine[0].get("details")
                                                 if engine else "")

        def reported():
            # The agent reports at start and then every status_report_interval (5 s): a module
            # that started after the last report shows "running" in the next one.
            def running():
                twin = hub.request("GET", "/twins/%s/modules/$edgeAgent" % reg_id)
                rep = twin["properties"]["reported"]
                if rep.get("lastDesiredStatus", {}).get("code") != 200:
                    raise AssertionError("lastDesiredStatus %s" % rep.get("lastDesiredStatus"))
                mods = rep.get("modules", {})
                if any(mods.get(m, {}).get("runtimeStatus") != "running" for m in ("emitter", "receiver")):
                    raise AssertionError("modules reported %s" % json.dumps(mods)[:500])
                return True
            wait_for("$edgeAgent reporting emitter and receiver running", running, 30)
            return "lastDesiredStatus 200, emitter and receiver running"

        def deployment_metrics():
            def counted():
                c = json.loads(hub.cli("edge", "deployment", "show", "--deployment-id", "edge-e2e-%s" % run_id).stdout)
                r = c["systemMetrics"]["results"]
                return r if r.get("reportedSuccessfulCount", 0) >= 1 else None
            r = wait_for("the deployment's reportedSuccessfulCount", counted, 30)
            if r.get("targetedCount", 0) < 1 or r.get("appliedCount", 0) < 1:
                raise AssertionError("system metrics %s" % r)
            return "system metrics %s" % json.dumps(r, sort_keys=True)

        def agent_reported():
            return hub.request("GET", "/twins/%s/modules/$edgeAgent" % reg_id)["properties"]["reported"]

        def list_rows():
            out = run([FLEETEDGE, "--config", config, "list"], check=False).stdout
            return {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.split()}

        def deploy_version(name, priority, content):
            path = os.path.join(WORK, "deployment-%s.json" % name)
            with open(path, "w") as f:
                json.dump(content, f, indent=2)
            hub.cli("edge", "deployment", "create", "--deployment-id", "edge-e2e-%s-%s" % (name, run_id),
                    "--content", path, "--target-condition", "tags.environment='test'", "--priority", str(priority))

        def container_details():
            # The whole log holds the receiver's first line. --tail is handed to the engine: Podman 4.3
            # counts the partial records an unbuffered Python writes (text, then "\n") as lines, so
            # its tail may hold fewer lines than asked, never more, and only lines of the log.
            def logged():
                r = run([FLEETEDGE, "--config", config, "logs", "receiver"], check=False)
                return r.stdout if "receiver connected as" in r.stdout else None
            whole = wait_for("fleetedge logs receiver (the container's log)", logged, 30)
            tail = run([FLEETEDGE, "--config", config, "logs", "receiver", "--tail", "1"], check=False)
            tail_lines = [l for l in tail.stdout.splitlines() if l.strip()]
            if tail.returncode != 0 or len(tail_lines) > 1 or not all(l in whole for l in tail_lines):
                raise AssertionError("fleetedge logs receiver --tail 1 printed %r" % tail.stdout[-600:])
            rep = agent_reported()["modules"]["receiver"]
            settings = rep.get("settings", {})
            if rep.get("type") != "docker" or settings.get("image") != IMAGE or not settings.get("imageHash"):
                raise AssertionError("reported receiver %s" % json.dumps(rep)[:600])
            labels = json.loads(podman.cli("inspect", "--format", "{{json .Config.Labels}}", "receiver"))
            if labels.get("net.fleetedge.module") != "receiver":
                raise AssertionError("labels %s" % labels)
            row = list_rows().get("receiver", [])
            if IMAGE not in row:
                raise AssertionError("fleetedge list row %s" % row)
            return "logs from the engine, reported type docker, imageHash %s, labels %s" % (
                settings["imageHash"][:19], sorted(labels))

        def update_and_crash_loop():
            old_id = podman.container_id("receiver")
            events.poll()
            before = len(events.forwarded_ns(reg_id))
            crasher = container_module("emitter.py", 3, create_options=json.dumps(
                {"Cmd": [MODULE_PYTHON, "-c", "import sys; print('crashing', flush=True); sys.exit(3)"]}))
            deploy_version("v2", 20, manifest(receiver=container_module("receiver.py", 1, version="2.0"),
                                              extra={"crasher": crasher}))

            def replaced():
                cid = podman.container_id("receiver")
                rows = list_rows()
                return cid if cid and cid != old_id and rows.get("receiver", [""])[1:2] == ["running"] else None
            new_id = wait_for("the receiver's container replaced by the update", replaced, 180)

            def backing_off():
                rep = agent_reported().get("modules", {}).get("crasher", {})
                return rep if rep.get("exitCode") == 3 and rep.get("restartCount", 0) >= 1 \
                    and list_rows().get("crasher", [""])[1:2] in (["backoff"], ["running"]) else None
            rep = wait_for("the crash-looping container backing off", backing_off, 120)

            def flowing():
                events.poll()
                return len(events.forwarded_ns(reg_id)) >= before + 10
            wait_for("telemetry through the new receiver container", flowing, 90)
            return "container %s -> %s; crasher exitCode 3, restartCount %d, %s" % (
                old_id[:12], new_id[:12], rep["restartCount"], rep.get("statusDescription"))

        def bad_create_options():
            good_id = podman.container_id("receiver")
            deploy_version("v3", 30, manifest(receiver=container_module(
                "receiver.py", 1, version="3.0", create_options='{"Cmd": ["python", ')))

            def rejected():
                st = agent_reported().get("lastDesiredStatus", {})
                return st if st.get("code") == 400 else None
            st = wait_for("the deployment with bad createOptions rejected", rejected, 120)
            if "createOptions" not in st.get("description", ""):
                raise AssertionError("lastDesiredStatus %s" % st)
            if podman.container_id("receiver") != good_id or list_rows().get("receiver", [""])[1:2] != ["running"]:
                raise AssertionError("the last good receiver container is not kept")
            return "400: %s; receiver %s kept running" % (st["description"], good_id[:12])

        def outage():
            events.poll()
            before = max(events.forwarded_ns(reg_id))
            hub.stop()
            log("hub stopped; the modules keep sending (the edge hub queues on disk)")
            time.sleep(10)
            hub.start()
            log("hub started again")
            target = before + 40  # 10 s at 5 messages/s, plus what was in flight

            def caught_up():
                events.poll()
                return max(events.forwarded_ns(reg_id)) >= target
            wait_for("telemetry sent during the outage arriving after it", caught_up, 120)
            ns = events.forwarded_ns(reg_id)
            seen = set(ns)
            top = max(ns)
            missing = [n for n in range(min(ns), top + 1) if n not in seen]
            if missing:
                raise AssertionError("%d messages lost, e.g. n=%s" % (len(missing), missing[:10]))
            return "n %d..%d all arrived (%d duplicates), %d sent while the hub was down" % (
                min(ns), top, len(ns) - len(seen), top - before)

        for name, fn in (("the device provisions through DPS (derived key) with its initial twin", provisioned),
                         ("fleetedge list: emitter and receiver running", list_running),
                         ("module telemetry: emitter -> route -> receiver -> $upstream -> built-in endpoint",
                          telemetry_arrives),
                         ("$edgeAgent reported properties: deployment applied, modules running", reported),
                         ("fleetedge check passes", check_passes),
                         ("fleethub edge deployment show: targeted, applied, reporting success", deployment_metrics),
                         *((("container module: fleetedge logs, reported imageHash, labels", container_details),
                            ("deployment update replaces the container; a crash-looping container backs off",
                             update_and_crash_loop),
                            ("bad createOptions JSON: deployment rejected with the reason, last good kept",
                             bad_create_options)) if CONTAINERS else ()),
                         ("hub stopped and started again: no module telemetry lost", outage)):
            if not step(name, fn):
                break
    finally:
        if edge and edge.poll() is None:
            edge.send_signal(signal.SIGTERM)
            try:
                edge.wait(20)
            except subprocess.TimeoutExpired:
                edge.kill()
        hub.stop()
        if CONTAINERS:
            podman.stop()
        if failures:
            for path in (edge_log, hub.log_path):
                if os.path.exists(path):
                    print("---- last 40 lines of %s ----" % path)
                    with open(path, errors="replace") as f:
                        print("".join(f.readlines()[-40:]))
    print("edge-e2e: %s" % ("FAILED: %s" % ", ".join(failures) if failures else "all steps passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

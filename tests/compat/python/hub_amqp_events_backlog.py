#!/usr/bin/env python3
"""A backlog of several hundred events over every partition of the Event Hubs-compatible endpoint, read by one
official Python azure-eventhub 5.15.1 EventHubConsumerClient (all partitions, no partition_id), over AMQP/TCP
and AMQP over WebSocket; and the client's network trace (logging_enable=True), which builds every frame it
receives from all of the performative's fields.

Three devices send 200 events each (the device HTTPS API's batch send: the backlog is what matters here,
hub_amqp_events.py covers events sent by the official device SDK). With four partitions at least one partition
holds none of them. Each read must return all 600 exactly once within BACKLOG_BOUND seconds:
- the asyncio client (azure.eventhub.aio: one task per partition) over TCP;
- the synchronous client's receive_batch over TCP and over WebSocket (wss://{hub}/$servicebus/websocket).
The synchronous client's per-event receive() is not timed: it serves the partitions in turn and waits its socket
timeout (0.2 s over TCP, 1 s over WebSocket) on every partition with nothing to read before it hands out the next
event, against any server (Azure/azure-sdk-for-python#27314; docs/protocol-notes.md, "Event Hubs receivers").
The trace step receives with logging_enable=True and checks that the client traced our Disposition frames with
their `batchable` field and got every event (docs/protocol-notes.md, "AMQP: performatives with every field").

Its name sorts after hub_amqp_events.py on purpose: the backlog stays in the hub's log, and that suite reads
every partition from the start with the synchronous per-event receive(), which the backlog would slow down as
described above (scripts/test.sh and the scale-out test run the suites in name order against one hub).

FLEETHUB_COMPAT_AMQP_PORT / FLEETHUB_COMPAT_HTTPS_PORT (defaults 5671 / 443) point the clients at other ports for
a manual run. Run by scripts/test.sh; configuration in _harness.py.
"""
import asyncio
import base64
import json
import logging
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Config, Suite, env, error_text, expect, parse_cs, random_key, unique_id  # noqa: E402
from _hub import API_VERSION, device_sas, service_sas  # noqa: E402

import requests  # noqa: E402
from azure.eventhub import EventHubConsumerClient, TransportType  # noqa: E402
from azure.eventhub.aio import EventHubConsumerClient as AsyncConsumerClient  # noqa: E402

SUITE = "py-hub-amqp-events-backlog"
DEVICES = 3
PER_DEVICE = 200
# The sequential receive() reads this backlog at ~15 events/s over TCP with an empty partition (40 s);
# every way below takes a few seconds.
BACKLOG_BOUND = 20


def endpoints(cfg):
    amqp_port = int(env("FLEETHUB_COMPAT_AMQP_PORT", "5671"))
    https_port = int(env("FLEETHUB_COMPAT_HTTPS_PORT", "443"))
    tcp = {"transport_type": TransportType.Amqp}
    if amqp_port != 5671:
        tcp["custom_endpoint_address"] = "sb://%s:%d" % (cfg.hub_host, amqp_port)
    ws = {"transport_type": TransportType.AmqpOverWebsocket}
    if https_port != 443:
        ws["custom_endpoint_address"] = "https://%s:%d" % (cfg.hub_host, https_port)
    base = "https://%s" % cfg.hub_host + ("" if https_port == 443 else ":%d" % https_port)
    return tcp, ws, base


def eventhub_cs(cfg):
    cs = env("FLEETHUB_EVENTHUB_CS")
    if cs:
        return cs
    p = parse_cs(cfg.hub_service_cs)
    return "Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s;EntityPath=%s" % (
        cfg.hub_host, p["SharedAccessKeyName"], p["SharedAccessKey"], cfg.hub_host.split(".")[0])


def main():
    cfg = Config(SUITE)
    s = Suite(SUITE)
    tcp, ws, base = endpoints(cfg)
    http = requests.Session()
    run = unique_id("backlog")
    devices = ["%s-%d" % (run, i) for i in range(DEVICES)]

    def create_devices():
        for d in devices:
            key = random_key()
            r = http.put("%s/devices/%s?api-version=%s" % (base, d, API_VERSION), timeout=30, verify=cfg.ca_path,
                         headers={"Authorization": service_sas(cfg)},
                         json={"deviceId": d, "status": "enabled", "authentication": {
                             "type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": random_key()}}})
            expect(r.status_code == 200, "create %s: %s %s" % (d, r.status_code, r.text[:200]))
            s.cleanup("delete device " + d, lambda d=d: http.delete(
                "%s/devices/%s?api-version=%s" % (base, d, API_VERSION), timeout=30, verify=cfg.ca_path,
                headers={"Authorization": service_sas(cfg), "If-Match": "*"}))
            devices_keys[d] = key
        return ", ".join(devices)

    devices_keys = {}
    if not s.step("create %d devices" % DEVICES, create_devices):
        s.finish()

    def send_backlog():
        for d in devices:
            batch = [{"body": base64.b64encode(json.dumps({"run": run, "device": d, "i": i}).encode()).decode(),
                      "properties": {"iothub-app-run": run}} for i in range(PER_DEVICE)]
            r = http.post("%s/devices/%s/messages/events?api-version=%s" % (base, d, API_VERSION), timeout=60, verify=cfg.ca_path,
                          data=json.dumps(batch),
                          headers={"Authorization": device_sas(cfg, d, devices_keys[d], 3600),
                                   "Content-Type": "application/vnd.microsoft.iothub.json"})
            expect(r.status_code == 204, "send as %s: %s %s" % (d, r.status_code, r.text[:200]))
        return "%d events" % (DEVICES * PER_DEVICE)

    if not s.step("send a backlog of %d events (%d devices)" % (DEVICES * PER_DEVICE, DEVICES), send_backlog):
        s.finish()

    want = DEVICES * PER_DEVICE

    def ours(ev):
        try:
            body = json.loads(ev.body_as_str())
        except ValueError:
            return None
        if body.get("run") != run:
            return None
        # How the device authenticated (HTTPS, its own key), as IoT Hub writes it.
        auth = json.loads(ev.system_properties[b"iothub-connection-auth-method"])
        if (auth["scope"], auth["type"], auth["issuer"]) != ("device", "sas", "iothub"):
            return ("bad auth method", json.dumps(auth))
        return (body["device"], body["i"])

    def check(seen, elapsed, how):
        keys = [k for k in seen if k is not None]
        expect(len(set(keys)) == want, "%s: %d of %d events after %.1f s" % (how, len(set(keys)), want, elapsed))
        expect(len(keys) == want, "%s: %d duplicates" % (how, len(keys) - len(set(keys))))
        expect(elapsed <= BACKLOG_BOUND, "%s: %.1f s for %d events (bound %d s)" % (how, elapsed, want, BACKLOG_BOUND))
        return "%d events in %.1f s" % (want, elapsed)

    def async_tcp():
        seen = []

        async def read():
            client = AsyncConsumerClient.from_connection_string(
                eventhub_cs(cfg), consumer_group="$Default", connection_verify=cfg.ca_path, retry_total=1, **tcp)

            async def on_event(ctx, ev):
                if ev is not None:
                    seen.append(ours(ev))

            t0 = time.time()
            task = asyncio.ensure_future(client.receive(on_event=on_event, starting_position="-1"))
            while time.time() - t0 < BACKLOG_BOUND + 10 and len([k for k in seen if k]) < want:
                await asyncio.sleep(0.1)
            elapsed = time.time() - t0
            await client.close()
            task.cancel()
            return elapsed

        elapsed = asyncio.run(read())
        return check(seen, elapsed, "asyncio client")

    s.step("azure.eventhub.aio EventHubConsumerClient.receive, all partitions, TCP", async_tcp, timeout=60)

    def sync_batch(transport):
        def run_it():
            client = EventHubConsumerClient.from_connection_string(
                eventhub_cs(cfg), consumer_group="$Default", connection_verify=cfg.ca_path, retry_total=1,
                **transport)
            seen = []

            def on_batch(ctx, events):
                seen.extend(ours(ev) for ev in events)

            t0 = time.time()
            t = threading.Thread(target=lambda: client.receive_batch(
                on_event_batch=on_batch, starting_position="-1", max_batch_size=300), daemon=True)
            t.start()
            while time.time() - t0 < BACKLOG_BOUND + 10 and len([k for k in seen if k]) < want:
                time.sleep(0.1)
            elapsed = time.time() - t0
            client.close()
            t.join(10)
            return check(seen, elapsed, "receive_batch")
        return run_it

    s.step("EventHubConsumerClient.receive_batch, all partitions, TCP", sync_batch(tcp), timeout=60)
    s.step("EventHubConsumerClient.receive_batch, all partitions, WebSocket", sync_batch(ws), timeout=60)

    def traced():
        records = []

        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record.getMessage())

        logger = logging.getLogger("azure.eventhub")
        handler = Keep(level=logging.DEBUG)
        old_level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            client = EventHubConsumerClient.from_connection_string(
                eventhub_cs(cfg), consumer_group="$Default", connection_verify=cfg.ca_path, retry_total=0,
                logging_enable=True, **tcp)
            seen, errors = [], []
            t = threading.Thread(target=lambda: client.receive_batch(
                on_event_batch=lambda ctx, evs: seen.extend(ours(ev) for ev in evs),
                on_error=lambda ctx, e: errors.append(e), starting_position="-1", max_batch_size=300), daemon=True)
            t0 = time.time()
            t.start()
            while time.time() - t0 < 30 and len([k for k in seen if k]) < want and not errors:
                time.sleep(0.1)
            client.close()
            t.join(10)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        expect(not errors, "errors with logging_enable=True: %s" % [error_text(e, 300) for e in errors])
        failures = [r for r in records if "missing" in r and "required positional argument" in r]
        expect(not failures, "trace failed: %s" % failures[:1])
        dispositions = [r for r in records if r.startswith("<- DispositionFrame(")]
        expect(dispositions and all("batchable=" in r for r in dispositions), "no Disposition traced")
        expect(any(r.startswith("<- TransferFrame(") for r in records), "no Transfer traced")
        expect(len(set(k for k in seen if k)) == want, "got %d of %d events" % (len(set(k for k in seen if k)), want))
        return "%d frames traced, %d dispositions, %d events" % (
            len([r for r in records if r.startswith("<- ")]), len(dispositions), want)

    s.step("logging_enable=True: the network trace reads our frames (receive_batch, TCP)", traced, timeout=60)
    s.finish()


if __name__ == "__main__":
    main()

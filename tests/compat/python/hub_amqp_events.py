#!/usr/bin/env python3
"""The Event Hubs-compatible built-in endpoint over AMQP with the official Python Event Hubs client
azure-eventhub 5.15.1 (EventHubConsumerClient, pure-Python AMQP), reading telemetry that the official
Python device SDK azure-iot-device 2.14.0 sent over MQTT.

get_eventhub_properties (name, partition ids) and get_partition_properties; receive from the start of
every partition (all events of our devices, in order per partition, with the annotations, properties,
content type and body IoT Hub sets); receive from @latest (only events sent after the receiver
attached); a checkpoint store (a second client resumes after the checkpoint, nothing twice); AMQP over
WebSocket (port 443, /$servicebus/websocket, with the asyncio client); a partition that does not exist and an unknown consumer
group are refused.
The client connects with an Event Hubs connection string: FLEETHUB_EVENTHUB_CS (the server's
eventHubCompatibleConnectionString), else one built from the hub's service connection string
(Endpoint=sb://{hub}/;SharedAccessKeyName=..;SharedAccessKey=..;EntityPath={hub name}).
Run by scripts/test.sh; configuration in _harness.py.
"""
import asyncio
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Config, Suite, env, error_text, expect, parse_cs, unique_id  # noqa: E402
from _hub import device_cs  # noqa: E402

from azure.eventhub import EventHubConsumerClient, TransportType  # noqa: E402
from azure.eventhub.aio import EventHubConsumerClient as AsyncConsumerClient  # noqa: E402
from azure.iot.device import IoTHubDeviceClient, Message  # noqa: E402
from azure.iot.hub import IoTHubRegistryManager  # noqa: E402

SUITE = "py-hub-amqp-events"
PER_DEVICE = 4


def eventhub_cs(cfg):
    cs = env("FLEETHUB_EVENTHUB_CS")
    if cs:
        return cs
    p = parse_cs(cfg.hub_service_cs)
    return "Endpoint=sb://%s/;SharedAccessKeyName=%s;SharedAccessKey=%s;EntityPath=%s" % (
        cfg.hub_host, p["SharedAccessKeyName"], p["SharedAccessKey"], cfg.hub_host.split(".")[0])


class MemoryCheckpointStore:
    """A checkpoint store kept in memory (the interface of azure.eventhub's CheckpointStore): ownership and
    checkpoints, as a blob or table store would keep them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ownership = {}
        self.checkpoints = {}

    def list_ownership(self, fully_qualified_namespace, eventhub_name, consumer_group, **kwargs):
        with self.lock:
            return [dict(o) for o in self.ownership.values()]

    def claim_ownership(self, ownership_list, **kwargs):
        out = []
        with self.lock:
            for o in ownership_list:
                o = dict(o)
                o["etag"] = str(time.time())
                o["last_modified_time"] = time.time()
                self.ownership[o["partition_id"]] = o
                out.append(o)
        return out

    def update_checkpoint(self, checkpoint, **kwargs):
        with self.lock:
            self.checkpoints[checkpoint["partition_id"]] = dict(checkpoint)

    def list_checkpoints(self, fully_qualified_namespace, eventhub_name, consumer_group, **kwargs):
        with self.lock:
            return [dict(c) for c in self.checkpoints.values()]


def consumer(cfg, **kwargs):
    return EventHubConsumerClient.from_connection_string(
        eventhub_cs(cfg), consumer_group="$Default", connection_verify=cfg.ca_path, retry_total=1, **kwargs)


def collect(cfg, want, timeout=30, **receive_kwargs):
    """Receives (in a thread) until `want(events)` holds or timeout; returns the events seen."""
    client = consumer(cfg, **receive_kwargs.pop("client_kwargs", {}))
    events, errors = [], []

    def on_event(ctx, ev):
        if ev is not None:
            events.append((ctx, ev))

    def on_error(ctx, err):
        errors.append(err)

    t = threading.Thread(target=lambda: client.receive(on_event=on_event, on_error=on_error, **receive_kwargs),
                         daemon=True)
    t.start()
    deadline = time.time() + timeout
    while time.time() < deadline and not want(events):
        time.sleep(0.2)
    client.close()
    t.join(10)
    return events, errors


def main():
    cfg = Config(SUITE)
    s = Suite(SUITE)
    rm = IoTHubRegistryManager.from_connection_string(cfg.hub_service_cs)
    devices = [unique_id("py-eh-%d" % i) for i in range(3)]
    keys = {}

    def create_devices():
        for d in devices:
            dev = rm.create_device_with_sas(d, None, None, "enabled")
            s.cleanup("delete device " + d, lambda d=d: rm.delete_device(d))
            keys[d] = dev.authentication.symmetric_key.primary_key
        return ", ".join(devices)

    if not s.step("create 3 devices", create_devices):
        s.finish()

    def send(tag, n=PER_DEVICE):
        for d in devices:
            c = IoTHubDeviceClient.create_from_connection_string(device_cs(cfg.hub_host, d, keys[d]),
                                                                 server_verification_cert=cfg.ca_pem)
            c.connect()
            try:
                for i in range(n):
                    m = Message(json.dumps({"device": d, "i": i, "tag": tag}))
                    m.content_type, m.content_encoding = "application/json", "utf-8"
                    m.message_id = "%s-%s-%d" % (d, tag, i)
                    m.custom_properties["tag"] = tag
                    c.send_message(m)
            finally:
                c.shutdown()
        return "%d messages" % (n * len(devices))

    s.step("azure-iot-device sends %d messages per device (MQTT)" % PER_DEVICE, lambda: send("first"))

    props = {}

    def eventhub_properties():
        c = consumer(cfg)
        try:
            p = c.get_eventhub_properties()
        finally:
            c.close()
        expect(p["eventhub_name"] == cfg.hub_host.split(".")[0], "name %r" % p["eventhub_name"])
        expect(len(p["partition_ids"]) >= 1 and p["partition_ids"][0] == "0", "partition ids %r" % p["partition_ids"])
        props.update(p)
        return "name=%s partitions=%s" % (p["eventhub_name"], p["partition_ids"])

    s.step("get_eventhub_properties", eventhub_properties)

    def partition_properties():
        c = consumer(cfg)
        try:
            ps = [c.get_partition_properties(pid) for pid in props.get("partition_ids", ["0"])]
        finally:
            c.close()
        total = sum(p["last_enqueued_sequence_number"] - p["beginning_sequence_number"] + 1
                    for p in ps if not p["is_empty"])
        expect(total >= PER_DEVICE * len(devices), "partitions hold %d events, want >= %d" % (
            total, PER_DEVICE * len(devices)))
        return "; ".join("%s: %s..%s" % (p["id"], p["beginning_sequence_number"], p["last_enqueued_sequence_number"])
                         for p in ps)

    s.step("get_partition_properties of every partition", partition_properties)

    def ours(events, tag):
        out = []
        for ctx, ev in events:
            try:
                body = json.loads(ev.body_as_str())
            except ValueError:
                continue
            if body.get("device") in devices and body.get("tag") == tag:
                out.append((ctx, ev, body))
        return out

    def from_start():
        events, errors = collect(cfg, lambda evs: len(ours(evs, "first")) >= PER_DEVICE * len(devices),
                                 starting_position="-1")
        got = ours(events, "first")
        expect(len(got) == PER_DEVICE * len(devices), "got %d of %d events (errors: %s)" % (
            len(got), PER_DEVICE * len(devices), [error_text(e) for e in errors]))
        for d in devices:
            seq = [b["i"] for _, _, b in got if b["device"] == d]
            expect(seq == list(range(PER_DEVICE)), "%s: events out of order or missing: %s" % (d, seq))
            parts = {ctx.partition_id for ctx, _, b in got if b["device"] == d}
            expect(len(parts) == 1, "%s: events in several partitions %s" % (d, parts))
        _, ev, body = got[0]
        sysp = ev.system_properties
        expect(sysp.get(b"iothub-connection-device-id") == body["device"].encode(), "device id annotation %r" % sysp)
        expect(sysp.get(b"iothub-message-source") == b"Telemetry", "message source %r" % sysp.get(b"iothub-message-source"))
        expect(json.loads(sysp.get(b"iothub-connection-auth-method"))["type"] == "sas", "auth method %r" % sysp)
        expect(ev.content_type == "application/json", "content type %r" % ev.content_type)
        expect(ev.properties.get(b"tag") == b"first", "application properties %r" % ev.properties)
        expect(ev.message_id == "%s-first-%d" % (body["device"], body["i"]), "message id %r" % ev.message_id)
        expect(isinstance(ev.sequence_number, int) and ev.offset and ev.enqueued_time, "sequence/offset/time")
        return "%d events from %d partitions" % (len(got), len({c.partition_id for c, _, _ in got}))

    s.step("receive from the start of every partition (starting_position=-1)", from_start)

    def from_latest():
        box = {}
        initialized = set()
        ready = threading.Event()

        def on_init(ctx):
            initialized.add(ctx.partition_id)
            if len(initialized) >= len(props.get("partition_ids", ["0"])):
                ready.set()

        def later():
            # Send once every partition's receiver is set up (and its link had time to attach).
            ready.wait(30)
            time.sleep(3)
            box["sent"] = send("latest", 2)

        threading.Thread(target=later, daemon=True).start()
        events, errors = collect(cfg, lambda evs: len(ours(evs, "latest")) >= 2 * len(devices), timeout=60,
                                 starting_position="@latest", on_partition_initialize=on_init)
        expect(not ours(events, "first"), "@latest delivered %d old events" % len(ours(events, "first")))
        expect(len(ours(events, "latest")) == 2 * len(devices), "got %d of %d new events (errors: %s)" % (
            len(ours(events, "latest")), 2 * len(devices), [error_text(e) for e in errors]))
        return "only the %d events sent after attaching" % len(ours(events, "latest"))

    s.step("receive from @latest", from_latest, timeout=90)

    def checkpoints():
        store = MemoryCheckpointStore()
        first_total = PER_DEVICE * len(devices)
        seen1 = []

        def on_event_1(ctx, ev):
            if ev is not None and ours([(ctx, ev)], "first"):
                seen1.append(ev.message_id)
                ctx.update_checkpoint(ev)

        c1 = consumer(cfg, checkpoint_store=store)
        t1 = threading.Thread(target=lambda: c1.receive(on_event=on_event_1, starting_position="-1"), daemon=True)
        t1.start()
        deadline = time.time() + 30
        while time.time() < deadline and len(seen1) < first_total:
            time.sleep(0.2)
        c1.close()
        t1.join(10)
        expect(len(seen1) == first_total, "first client saw %d of %d" % (len(seen1), first_total))
        expect(store.checkpoints, "no checkpoint stored")
        send("after-checkpoint", 1)
        seen2 = []

        def on_event_2(ctx, ev):
            if ev is not None:
                seen2.append((ctx, ev))

        c2 = consumer(cfg, checkpoint_store=store)
        t2 = threading.Thread(target=lambda: c2.receive(on_event=on_event_2, starting_position="-1"), daemon=True)
        t2.start()
        deadline = time.time() + 30
        while time.time() < deadline and len(ours(seen2, "after-checkpoint")) < len(devices):
            time.sleep(0.2)
        c2.close()
        t2.join(10)
        expect(len(ours(seen2, "after-checkpoint")) == len(devices), "second client saw %d new events" % len(
            ours(seen2, "after-checkpoint")))
        again = ours(seen2, "first")
        expect(not again, "second client got %d checkpointed events again" % len(again))
        return "%d checkpoints; the second client resumed after them" % len(store.checkpoints)

    s.step("checkpoint store: a second client resumes after the checkpoints", checkpoints, timeout=90)

    def websocket():
        # The asyncio client (one task per partition). The synchronous client's per-event receive() hands out one
        # event per partition per round and waits its WebSocket read timeout (1 s) on every partition with
        # nothing new, so a dozen events in one partition take it half a minute against any server
        # (Azure/azure-sdk-for-python#27314; docs/protocol-notes.md, "Event Hubs receivers"). Its WebSocket
        # transport is covered by hub_amqp_events_backlog.py (receive_batch).
        events, errors = [], []

        async def read():
            client = AsyncConsumerClient.from_connection_string(
                eventhub_cs(cfg), consumer_group="$Default", connection_verify=cfg.ca_path, retry_total=1,
                transport_type=TransportType.AmqpOverWebsocket)

            async def on_event(ctx, ev):
                if ev is not None:
                    events.append((ctx, ev))

            async def on_error(ctx, err):
                errors.append(err)

            task = asyncio.ensure_future(client.receive(on_event=on_event, on_error=on_error,
                                                        starting_position="-1"))
            deadline = time.time() + 30
            while time.time() < deadline and len(ours(events, "first")) < PER_DEVICE * len(devices):
                await asyncio.sleep(0.1)
            await client.close()
            task.cancel()

        asyncio.run(read())
        expect(len(ours(events, "first")) == PER_DEVICE * len(devices), "got %d events over WebSocket (errors: %s)" % (
            len(ours(events, "first")), [error_text(e) for e in errors]))
        return "%d events over wss://%s/$servicebus/websocket" % (len(ours(events, "first")), cfg.hub_host)

    s.step("AMQP over WebSocket (TransportType.AmqpOverWebsocket, azure.eventhub.aio)", websocket, timeout=60)

    def bad_partition():
        c = consumer(cfg)
        try:
            c.get_partition_properties("99")
        except Exception as e:  # noqa: BLE001
            return error_text(e, 200)
        finally:
            c.close()
        raise AssertionError("partition 99 answered")

    s.step("partition 99 does not exist -> refused", bad_partition)

    def unknown_group():
        client = EventHubConsumerClient.from_connection_string(
            eventhub_cs(cfg), consumer_group="no-such-group", connection_verify=cfg.ca_path, retry_total=0)
        errors = []
        t = threading.Thread(target=lambda: client.receive(on_event=lambda c, e: None, partition_id="0",
                                                           on_error=lambda c, e: errors.append(e)), daemon=True)
        t.start()
        deadline = time.time() + 20
        while time.time() < deadline and not errors:
            time.sleep(0.2)
        client.close()
        expect(errors, "no error for an unknown consumer group")
        text = error_text(errors[0], 300)
        expect("not-found" in text or "not found" in text.lower(), "error %s" % text)
        return text

    s.step("unknown consumer group -> amqp:not-found", unknown_group)
    s.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Cloud-to-device send and feedback over AMQP with the AMQP stack of the official Python Event Hubs client
(azure-eventhub 5.15.1's pure-Python AMQP, `azure.eventhub._pyamqp`: SendClient / ReceiveClient, the clients
its EventHubProducerClient/ConsumerClient are built on) with its network trace on (network_trace=True, what
logging_enable=True turns on): the trace builds every frame it receives (Open, Begin, Attach, Flow, Transfer,
Disposition, Detach, End, Close) from all of the performative's fields, and its receiver reads a Transfer's
`more` flag by position (docs/protocol-notes.md, "AMQP: performatives with every field").

A SendClient on /messages/devicebound sends a message with iothub-ack=full; the server's Disposition
(accepted) is traced; the device completes it (device HTTPS API); a ReceiveClient on
/messages/servicebound/feedback gets the feedback batch (a Transfer without `batchable`) with our message id
and statusCode Success. (The clients close without reading the server's Detach, End and Close; the Rust unit
tests of `full_fields` cover those.)

FLEETHUB_COMPAT_AMQP_PORT / FLEETHUB_COMPAT_HTTPS_PORT (defaults 5671 / 443) point the clients at other ports for
a manual run. Run by scripts/test.sh; configuration in _harness.py.
"""
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Config, Suite, env, expect, parse_cs, random_key, unique_id  # noqa: E402
from _hub import API_VERSION, device_sas, service_sas  # noqa: E402

import requests  # noqa: E402
from azure.eventhub._pyamqp import ReceiveClient, SendClient  # noqa: E402
from azure.eventhub._pyamqp.authentication import SASTokenAuth  # noqa: E402
from azure.eventhub._pyamqp.constants import TransportType  # noqa: E402
from azure.eventhub._pyamqp.message import Message, Properties  # noqa: E402

SUITE = "py-hub-amqp-trace"


class Trace(logging.Handler):
    """Keeps the pyamqp network trace (and any error it logs)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def received(self, frame):
        return [line for line in self.lines if line.startswith("<- %s(" % frame)]

    def failures(self):
        return [line for line in self.lines if "required positional argument" in line or "Traceback" in line]


def main():
    cfg = Config(SUITE)
    s = Suite(SUITE)
    amqp_port = int(env("FLEETHUB_COMPAT_AMQP_PORT", "5671"))
    https_port = int(env("FLEETHUB_COMPAT_HTTPS_PORT", "443"))
    base = "https://%s" % cfg.hub_host + ("" if https_port == 443 else ":%d" % https_port)
    cs = parse_cs(cfg.hub_service_cs)
    trace = Trace()
    logger = logging.getLogger("azure.eventhub._pyamqp")
    logger.addHandler(trace)
    logger.setLevel(logging.DEBUG)
    dev = unique_id("py-trace")
    key = random_key()
    msg_id = unique_id("c2d")

    def client_kwargs():
        kw = {"network_trace": True, "connection_verify": cfg.ca_path}
        if amqp_port != 5671:
            kw["custom_endpoint_address"] = "amqps://%s:%d" % (cfg.hub_host, amqp_port)
            kw["transport_type"] = TransportType.Amqp
        return kw

    def auth(path):
        uri = "amqps://%s/%s" % (cfg.hub_host, path)
        return SASTokenAuth(uri, uri, cs["SharedAccessKeyName"], cs["SharedAccessKey"])

    def create():
        r = requests.put("%s/devices/%s?api-version=%s" % (base, dev, API_VERSION), verify=cfg.ca_path, timeout=30,
                         headers={"Authorization": service_sas(cfg)},
                         json={"deviceId": dev, "authentication": {
                             "type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": random_key()}}})
        expect(r.status_code == 200, "create: %s %s" % (r.status_code, r.text[:200]))
        s.cleanup("delete device " + dev, lambda: requests.delete(
            "%s/devices/%s?api-version=%s" % (base, dev, API_VERSION), verify=cfg.ca_path, timeout=30,
            headers={"Authorization": service_sas(cfg), "If-Match": "*"}))

    if not s.step("create device %s" % dev, create):
        s.finish()

    def send():
        client = SendClient(cfg.hub_host, "amqps://%s/messages/devicebound" % cfg.hub_host,
                            auth=auth("messages/devicebound"), **client_kwargs())
        try:
            client.open()
            client.send_message(Message(
                data=[b"traced hello"],
                properties=Properties(message_id=msg_id, to="/devices/%s/messages/devicebound" % dev),
                application_properties={"iothub-ack": "full"}))
        finally:
            client.close()
        dispositions = trace.received("DispositionFrame")
        expect(dispositions, "no Disposition traced")
        expect(all("batchable=" in d for d in dispositions), "dispositions %s" % dispositions[:1])
        expect(not trace.failures(), "trace failed: %s" % trace.failures()[:1])
        return "%d dispositions traced, e.g. %s" % (len(dispositions), dispositions[-1][:120])

    if not s.step("SendClient on /messages/devicebound (iothub-ack=full), network_trace=True", send):
        s.finish()

    def complete():
        sas = device_sas(cfg, dev, key, 3600)
        url = "%s/devices/%s/messages/deviceBound" % (base, dev)
        r = requests.get("%s?api-version=%s" % (url, API_VERSION), verify=cfg.ca_path, timeout=30,
                         headers={"Authorization": sas})
        expect(r.status_code == 200, "receive: %s %s" % (r.status_code, r.text[:200]))
        expect(r.content == b"traced hello", "body %r" % r.content)
        etag = r.headers["ETag"].strip('"')
        r = requests.delete("%s/%s?api-version=%s" % (url, etag, API_VERSION), verify=cfg.ca_path, timeout=30,
                            headers={"Authorization": sas})
        expect(r.status_code == 204, "complete: %s %s" % (r.status_code, r.text[:200]))

    if not s.step("the device receives and completes it (HTTPS)", complete):
        s.finish()

    def feedback():
        client = ReceiveClient(cfg.hub_host, "amqps://%s/messages/servicebound/feedback" % cfg.hub_host,
                               auth=auth("messages/servicebound/feedback"), **client_kwargs())
        found = []
        try:
            client.open()
            deadline = time.time() + 30
            while time.time() < deadline and not found:
                for m in client.receive_message_batch(max_batch_size=10, timeout=2000):
                    body = b"".join(m.data or [])
                    for rec in json.loads(body):
                        if rec.get("originalMessageId") == msg_id:
                            found.append(rec)
        finally:
            client.close()
        expect(found, "no feedback record for %s" % msg_id)
        expect(found[0]["statusCode"] == "Success" and found[0]["deviceId"] == dev, "record %s" % found[0])
        transfers = trace.received("TransferFrame")
        expect(transfers, "no Transfer traced")
        expect(not trace.failures(), "trace failed: %s" % trace.failures()[:1])
        return "record %s; %d transfers traced" % (json.dumps(found[0]), len(transfers))

    s.step("ReceiveClient on /messages/servicebound/feedback gets the Success record, network_trace=True", feedback)

    s.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""IoT Hub device API with the official Python device SDK azure-iot-device 2.14.0, over MQTT (8883) and
MQTT over WebSocket (443, /$iothub/websocket); devices and modules made with azure-iot-hub 2.7.0.

Per transport: IoTHubDeviceClient.create_from_connection_string + connect (service sees Connected),
send_message with custom properties (with characters that need percent-encoding), message id, correlation
id, content type/encoding (read back from fleethub's GET /messages/events), get_twin,
patch_twin_reported_properties (seen by the service), on_twin_desired_properties_patch_received for a
service-side desired patch, on_method_request_received answered to invoke_device_method,
on_message_received for a C2D message queued through fleethub's REST API (the Python service client sends
C2D over AMQP, which fleethub does not speak), disconnect (Disconnected). C2D queued while the device is offline arrives after reconnect (persistent
session, the SDK does not subscribe again); a second connection with the same device id closes the first.
IoTHubModuleClient.create_from_connection_string with a module connection string: send_message + get_twin.
A client made from a SAS token that expires after a few seconds (create_from_sastoken, no renewal) is
disconnected by the hub when the token expires (fleethub allows token_skew_secs, default 30 s:
FLEETHUB_COMPAT_TOKEN_SKEW), and a new CONNECT with the expired token is refused.
Run by scripts/test.sh; configuration in _harness.py; gap ids in tests/compat/known-gaps.txt.
"""
import json
import logging
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Config, Suite, env, error_text, expect, http_status, random_key, unique_id  # noqa: E402
from _hub import EventReader, device_cs, device_sas, purge_c2d, queue_c2d, wait_until  # noqa: E402

from azure.iot.device import IoTHubDeviceClient, IoTHubModuleClient, Message, MethodResponse  # noqa: E402
from azure.iot.device import exceptions as dev_exc  # noqa: E402
from azure.iot.hub import IoTHubRegistryManager  # noqa: E402
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties  # noqa: E402

SUITE = "py-hub-device"
SAS_TTL = int(env("FLEETHUB_COMPAT_SAS_TTL", "15"))  # seconds a short-lived device token lives
# fleethub tolerates this much clock skew on SAS expiry (config token_skew_secs, default 30): it closes a
# connection at expiry + skew and refuses the token from then on.
TOKEN_SKEW = int(env("FLEETHUB_COMPAT_TOKEN_SKEW", "30"))


class Inbox:
    """Collects callback arguments from SDK handler threads; wait() for one matching a predicate."""

    def __init__(self):
        self.items = []
        self.cv = threading.Condition()

    def put(self, item):
        with self.cv:
            self.items.append(item)
            self.cv.notify_all()

    def wait(self, pred, timeout, what):
        deadline = time.time() + timeout
        with self.cv:
            while True:
                for it in self.items:
                    if pred(it):
                        return it
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("%s: nothing after %ss (got %d other items)" % (what, timeout, len(self.items)))
                self.cv.wait(left)


def main():
    if env("FLEETHUB_COMPAT_DEBUG") != "1":
        # The SDK logs the connections this test drops on purpose (takeover, token expiry) as errors on stderr.
        logging.getLogger("azure.iot.device").setLevel(logging.CRITICAL)
    cfg = Config(SUITE)
    s = Suite(SUITE)
    rm = IoTHubRegistryManager.from_connection_string(cfg.hub_service_cs)
    events = EventReader(cfg, "compat")
    run_id = unique_id("run")

    def create_device(device_id):
        d = rm.create_device_with_sas(device_id, None, None, "enabled")
        s.cleanup("delete device " + device_id, lambda: rm.delete_device(device_id))
        return d.authentication.symmetric_key.primary_key

    def connection_state_is(device_id, want, timeout=15):
        def check():
            st = rm.get_device(device_id).connection_state
            return st == want, "connectionState %s, want %s" % (st, want)

        return wait_until("connectionState of " + device_id, check, timeout=timeout)

    def shutdown_later(client, title):
        state = {"down": False}

        def shutdown():
            if not state["down"]:
                state["down"] = True
                client.shutdown()

        s.cleanup(title, shutdown)
        return shutdown

    for t, websockets in (("mqtt", False), ("mqtt-ws", True)):
        dev = unique_id("py-" + t)
        key = s.step("%s: create_device_with_sas %s" % (t, dev), lambda dev=dev: {"detail": "", "key": create_device(dev)})
        if not key:
            continue
        client = IoTHubDeviceClient.create_from_connection_string(
            device_cs(cfg.hub_host, dev, key["key"]), server_verification_cert=cfg.ca_pem, websockets=websockets,
            connection_retry=False)
        shutdown = shutdown_later(client, "%s: shut down client" % t)

        def connect(client=client, dev=dev):
            client.connect()
            expect(client.connected, "client.connected is False after connect()")
            connection_state_is(dev, "Connected")
            return "connectionState=Connected"

        if not s.step("%s: create_from_connection_string + connect -> service sees Connected" % t, connect,
                      gap=t + "-connect"):
            s.skip("%s: telemetry, twin, methods, C2D" % t, "connect failed")
            shutdown()
            continue

        # --- telemetry --------------------------------------------------------------------------------
        def telemetry(client=client, dev=dev, t=t):
            body = {"temperature": 21.5, "transport": t, "run": run_id}
            m = Message(json.dumps(body), message_id=dev + "-m1", content_encoding="utf-8", content_type="application/json")
            m.correlation_id = dev + "-c1"
            m.custom_properties["compat-run"] = run_id
            m.custom_properties["unit type"] = "deg/C & more=1"
            client.send_message(m)
            e = events.wait_for(lambda x: x.get("deviceId") == dev
                                and (x.get("systemProperties") or {}).get("message-id") == dev + "-m1")[0]
            sp, props = e["systemProperties"], e["properties"]
            expect(props.get("compat-run") == run_id, "properties %r" % props)
            expect(props.get("unit type") == "deg/C & more=1",
                   "property 'unit type' = %r (percent-decoding of the topic's property bag)" % props.get("unit type"))
            expect(sp.get("correlation-id") == dev + "-c1", "correlation-id %r" % sp.get("correlation-id"))
            expect(sp.get("content-type") == "application/json", "content-type %r" % sp.get("content-type"))
            expect(sp.get("content-encoding") == "utf-8", "content-encoding %r" % sp.get("content-encoding"))
            expect(sp.get("iothub-connection-device-id") == dev, "iothub-connection-device-id %r"
                   % sp.get("iothub-connection-device-id"))
            expect(json.loads(e["body"]) == body, "body %r" % e["body"])
            return "sequenceNumber=%s" % e["sequenceNumber"]

        s.step("%s: send_message (message id, correlation id, JSON content type/encoding, custom properties) "
               "-> stored with them" % t, telemetry, gap=t + "-telemetry")

        # --- twin ---------------------------------------------------------------------------------------
        def get_twin(client=client):
            tw = client.get_twin()
            expect(isinstance(tw.get("desired", {}).get("$version"), int), "twin %r" % tw)
            expect(isinstance(tw.get("reported", {}).get("$version"), int), "twin %r" % tw)
            return "desired.$version=%s reported.$version=%s" % (tw["desired"]["$version"], tw["reported"]["$version"])

        s.step("%s: get_twin" % t, get_twin, gap=t + "-twin")

        def reported(client=client, dev=dev, t=t):
            client.patch_twin_reported_properties({"firmware": "1.2.3", "transport": t, "nested": {"a": 1, "b": "x"}})

            def check():
                rep = rm.get_twin(dev).properties.reported
                return rep.get("firmware") == "1.2.3" and rep.get("nested", {}).get("b") == "x", "reported %r" % rep

            wait_until("reported properties", check, timeout=10)
            client.patch_twin_reported_properties({"nested": {"a": None}})
            wait_until("reported null deletes", lambda: (
                "a" not in rm.get_twin(dev).properties.reported.get("nested", {}), "reported %r"
                % rm.get_twin(dev).properties.reported), timeout=10)
            return "ok"

        s.step("%s: patch_twin_reported_properties -> service get_twin shows it (null deletes)" % t, reported,
               gap=t + "-twin")

        def desired(client=client, dev=dev):
            inbox = Inbox()
            client.on_twin_desired_properties_patch_received = inbox.put  # returns once subscribed
            tw = rm.update_twin(dev, Twin(properties=TwinProperties(desired={"setting": run_id, "speed": 3})), "*")
            patch = inbox.wait(lambda p: p.get("setting") == run_id, 20, "desired patch")
            expect(patch.get("speed") == 3, "patch %r" % patch)
            expect(patch.get("$version") == tw.properties.desired["$version"],
                   "patch $version %r, service says %r" % (patch.get("$version"), tw.properties.desired["$version"]))
            return "$version=%s" % patch["$version"]

        s.step("%s: on_twin_desired_properties_patch_received gets a service update_twin patch" % t, desired,
               gap=t + "-twin")

        # --- methods ------------------------------------------------------------------------------------
        def methods(client=client, dev=dev, t=t):
            def on_method(req):
                client.send_method_response(MethodResponse.create_from_method_request(
                    req, 200, {"ok": True, "echo": req.payload, "name": req.name, "transport": t}))

            client.on_method_request_received = on_method  # returns once subscribed
            r = rm.invoke_device_method(dev, CloudToDeviceMethod(
                method_name="reboot", payload={"delay": 1, "run": run_id}, response_timeout_in_seconds=15))
            expect(r.status == 200, "status %r" % r.status)
            expect((r.payload or {}).get("echo") == {"delay": 1, "run": run_id} and r.payload.get("name") == "reboot",
                   "payload %r" % r.payload)
            return "status=200"

        s.step("%s: on_method_request_received answers invoke_device_method -> status 200 + payload" % t, methods,
               gap=t + "-methods")

        # --- C2D ----------------------------------------------------------------------------------------
        def c2d(client=client, dev=dev, t=t):
            inbox = Inbox()
            client.on_message_received = inbox.put  # returns once subscribed
            q = queue_c2d(cfg, dev, body="hello " + t, messageId=dev + "-c2d", correlationId="corr-1",
                          contentType="text/plain", contentEncoding="utf-8",
                          properties={"color": "blue", "with space": "a/b&c=d"})
            m = inbox.wait(lambda x: x.message_id == dev + "-c2d", 30, "C2D message")
            expect(m.data == ("hello " + t).encode(), "data %r" % m.data)
            expect(m.correlation_id == "corr-1", "correlation_id %r" % m.correlation_id)
            expect(m.content_type == "text/plain", "content_type %r" % m.content_type)
            expect(m.content_encoding == "utf-8", "content_encoding %r" % m.content_encoding)
            expect(m.custom_properties.get("color") == "blue", "custom_properties %r" % m.custom_properties)
            expect(m.custom_properties.get("with space") == "a/b&c=d", "custom_properties %r" % m.custom_properties)
            time.sleep(1)  # the SDK PUBACKs on receipt: that completes the message
            purged = purge_c2d(cfg, dev)
            expect(purged == 0, "%d message(s) still queued after the PUBACK (purged them)" % purged)
            return "sequenceNumber=%s, completed by PUBACK" % q.get("sequenceNumber")

        s.step("%s: on_message_received gets a C2D message queued via REST (properties, ids, content type)" % t, c2d,
               timeout=45, gap=t + "-c2d")

        def disconnect(client=client, dev=dev):
            client.disconnect()
            connection_state_is(dev, "Disconnected")
            return "connectionState=Disconnected"

        s.step("%s: disconnect -> service sees Disconnected" % t, disconnect, gap=t + "-connect")
        shutdown()

    # --- persistent session, takeover ------------------------------------------------------------------
    def persistent_session():
        dev = unique_id("py-session")
        key = create_device(dev)
        c = IoTHubDeviceClient.create_from_connection_string(
            device_cs(cfg.hub_host, dev, key), server_verification_cert=cfg.ca_pem, connection_retry=False)
        c.on_background_exception = lambda e: None
        inbox = Inbox()
        try:
            c.connect()
            c.on_message_received = inbox.put  # SUBSCRIBE devices/{id}/messages/devicebound/# (clean_session=0)
            c.disconnect()
            connection_state_is(dev, "Disconnected")
            queue_c2d(cfg, dev, body="while offline", messageId=dev + "-offline")
            # The SDK does not subscribe again on reconnect: the hub must keep the session's subscriptions.
            c.connect()
            m = inbox.wait(lambda x: x.message_id == dev + "-offline", 20, "C2D queued while offline")
            expect(m.data == b"while offline", "data %r" % m.data)
            return "delivered after reconnect without a new SUBSCRIBE"
        finally:
            c.shutdown()

    s.step("mqtt: C2D queued while offline is delivered on reconnect (persistent session, no re-subscribe)",
           persistent_session, timeout=60, gap="mqtt-session")

    def takeover():
        dev = unique_id("py-takeover")
        key = create_device(dev)
        mk = lambda: IoTHubDeviceClient.create_from_connection_string(  # noqa: E731
            device_cs(cfg.hub_host, dev, key), server_verification_cert=cfg.ca_pem, connection_retry=False)
        first, second = mk(), mk()
        first.on_background_exception = lambda e: None
        changes = Inbox()
        first.on_connection_state_change = lambda: changes.put(first.connected)
        try:
            first.connect()
            second.connect()
            changes.wait(lambda connected: connected is False, 15, "first connection closed by the takeover")
            expect(second.connected, "the second client is not connected")
            second.send_message("after takeover")
            return "first connection dropped, second works"
        finally:
            first.shutdown()
            second.shutdown()

    s.step("mqtt: a second connection with the same device id takes over (the first is closed)", takeover,
           gap="mqtt-takeover")

    # --- wrong key ------------------------------------------------------------------------------------
    def wrong_key():
        dev = unique_id("py-badkey")
        create_device(dev)
        c = IoTHubDeviceClient.create_from_connection_string(
            device_cs(cfg.hub_host, dev, random_key()), server_verification_cert=cfg.ca_pem, connection_retry=False)
        try:
            c.connect()
        except Exception as e:  # noqa: BLE001
            expect(isinstance(e, dev_exc.CredentialError) or http_status(e) == 401,
                   "got %s, want CredentialError (CONNACK 5)" % error_text(e))
            return type(e).__name__
        finally:
            c.shutdown()
        raise AssertionError("connect succeeded with a wrong key")

    s.step("mqtt: connect with a wrong key -> CredentialError", wrong_key, gap="mqtt-auth")

    # --- module client --------------------------------------------------------------------------------
    mdev, mod = unique_id("py-mdev"), unique_id("py-mod")

    def create_module():
        create_device(mdev)
        m = rm.create_module_with_sas(mdev, mod, None, None, None)
        return {"detail": "", "key": m.authentication.symmetric_key.primary_key}

    mkey = s.step("create_device_with_sas %s + create_module_with_sas %s" % (mdev, mod), create_module, gap="modules")
    if mkey:
        mc = IoTHubModuleClient.create_from_connection_string(
            device_cs(cfg.hub_host, mdev, mkey["key"], mod), server_verification_cert=cfg.ca_pem, connection_retry=False)
        mshutdown = shutdown_later(mc, "shut down module client")

        def module_send():
            mc.connect()
            m = Message(json.dumps({"module": True, "run": run_id}), message_id=mod + "-m1")
            m.custom_properties["compat-run"] = run_id
            mc.send_message(m)
            e = events.wait_for(lambda x: x.get("deviceId") == mdev
                                and (x.get("systemProperties") or {}).get("message-id") == mod + "-m1")[0]
            expect(e.get("moduleId") == mod, "moduleId %r" % e.get("moduleId"))
            expect(e["systemProperties"].get("iothub-connection-module-id") == mod,
                   "iothub-connection-module-id %r" % e["systemProperties"].get("iothub-connection-module-id"))
            expect(e["properties"].get("compat-run") == run_id, "properties %r" % e["properties"])

        s.step("module %s/%s: connect + send_message -> stored with moduleId" % (mdev, mod), module_send,
               gap="module-client")

        def module_twin():
            tw = mc.get_twin()
            expect(isinstance(tw.get("desired", {}).get("$version"), int), "twin %r" % tw)
            mc.patch_twin_reported_properties({"moduleState": "ok"})
            wait_until("module reported", lambda: (
                rm.get_module_twin(mdev, mod).properties.reported.get("moduleState") == "ok", "not yet"), timeout=10)
            expect("moduleState" not in rm.get_twin(mdev).properties.reported, "the module report landed in the device twin")

        s.step("module %s/%s: get_twin + patch_twin_reported_properties -> get_module_twin shows it" % (mdev, mod),
               module_twin, gap="module-client")
        mshutdown()
    else:
        s.skip("module client: connect, send_message, get_twin", "the module could not be created")

    # --- SAS token expiry -----------------------------------------------------------------------------
    def sas_expiry():
        dev = unique_id("py-sas")
        key = create_device(dev)
        token = device_sas(cfg, dev, key, SAS_TTL)
        expiry = int(token.rsplit("se=", 1)[1].split("&")[0])
        c = IoTHubDeviceClient.create_from_sastoken(token, server_verification_cert=cfg.ca_pem, connection_retry=False)
        c.on_background_exception = lambda e: None  # the dropped connection is expected here
        changes = Inbox()
        c.on_connection_state_change = lambda: changes.put((time.time(), c.connected))
        try:
            c.connect()
            expect(c.connected, "not connected")
            connection_state_is(dev, "Connected")
            # The SDK never renews a token it was given (it only raises on_new_sastoken_required): only the hub
            # can end this connection when the token expires.
            when, _ = changes.wait(lambda x: x[1] is False, SAS_TTL + TOKEN_SKEW + 20,
                                   "disconnect after the token expired (+%ds skew)" % TOKEN_SKEW)
            late = when - expiry
            expect(late >= -2, "disconnected %.1fs before the token expired" % -late)
            expect(late <= TOKEN_SKEW + 10, "disconnected %.1fs after expiry, allowed skew %ds" % (late, TOKEN_SKEW))
            connection_state_is(dev, "Disconnected")
            time.sleep(max(0.0, expiry + TOKEN_SKEW + 2 - time.time()))
            try:
                c.connect()
            except Exception as e:  # noqa: BLE001
                expect(isinstance(e, dev_exc.CredentialError), "reconnect with the expired token: %s, want CredentialError"
                       % error_text(e))
                return "disconnected %.1fs after expiry (skew %ds); reconnect refused (%s)" % (
                    late, TOKEN_SKEW, type(e).__name__)
            raise AssertionError("reconnect with the expired token was accepted")
        finally:
            c.shutdown()

    s.step("a device connected with a %ds SAS token (create_from_sastoken) is disconnected when it expires "
           "(within the server's %ds skew); reconnecting with it is refused" % (SAS_TTL, TOKEN_SKEW), sas_expiry,
           timeout=SAS_TTL + TOKEN_SKEW + 60, gap="sas-expiry")
    s.finish()


if __name__ == "__main__":
    main()

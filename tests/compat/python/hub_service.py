#!/usr/bin/env python3
"""IoT Hub service API with the official Python service SDK azure-iot-hub 2.7.0 (IoTHubRegistryManager, REST).

create_device_with_sas without keys (None: `symmetricKey: {}`) and with empty keys (""), edge device
(iot_edge=True) -> keys generated; duplicate create -> 409; get_device; get_devices; update_device_with_sas
with the etag (and a stale etag -> 412); get_twin / update_twin (tags + desired, with etag; stale -> 412),
replace_twin; C2D queue of an offline device (cloudToDeviceMessageCount, purge);
query_iot_hub with max_item_count=1 (continuation token); get_service_statistics and
get_device_registry_statistics; bulk_create_or_update_devices create/delete (200 or 400 with the result);
modules: create_module_with_sas (keys generated), get_module, get_modules, get_module_twin,
update_module_twin, delete_module; invoke_device_method on a device connected with azure-iot-device (MQTT)
and on an offline device (404); delete_device -> 404.
Run by scripts/test.sh; configuration in _harness.py; gap ids in tests/compat/known-gaps.txt.
"""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Config, Suite, error_text, expect, unique_id  # noqa: E402
from _hub import device_cs, purge_c2d, queue_c2d, wait_until  # noqa: E402

from azure.iot.device import IoTHubDeviceClient, MethodResponse  # noqa: E402
from azure.iot.hub import IoTHubRegistryManager  # noqa: E402
from azure.iot.hub.models import (  # noqa: E402
    AuthenticationMechanism, CloudToDeviceMethod, ExportImportDevice, QuerySpecification, SymmetricKey, Twin,
    TwinProperties,
)

SUITE = "py-hub-service"


def status_of(e):
    """HTTP status of an msrest HttpOperationError (e.response is the requests response), else None."""
    resp = getattr(e, "response", None)
    return getattr(resp, "status_code", None)


def expect_status(fn, want):
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - msrest HttpOperationError
        got = status_of(e)
        expect(got == want, "got %s (HTTP %s), want HTTP %s" % (error_text(e, 300), got, want))
        return "HTTP %s" % got
    raise AssertionError("succeeded, want HTTP %s: %r" % (want, getattr(out, "as_dict", lambda: out)()))


def expect_generated_keys(auth, what):
    expect(auth is not None and auth.type == "sas", "%s: authentication %r" % (what, auth and auth.as_dict()))
    sk = auth.symmetric_key
    for name in ("primary_key", "secondary_key"):
        v = getattr(sk, name, None)
        expect(isinstance(v, str) and v, "%s: %s not generated: %r" % (what, name, sk and sk.as_dict()))
        n = len(base64.b64decode(v))
        expect(16 <= n <= 64, "%s: %s is not base64 of 16-64 bytes: %r" % (what, name, v))
    expect(sk.primary_key != sk.secondary_key, "%s: primary and secondary key are the same" % what)


def main():
    cfg = Config(SUITE)
    s = Suite(SUITE)
    rm = IoTHubRegistryManager.from_connection_string(cfg.hub_service_cs)
    dev, dev2, edge = unique_id("py-svc"), unique_id("py-svc-empty"), unique_id("py-svc-edge")
    env_tag = unique_id("env")
    deleted = set()

    def cleanup_device(device_id):
        s.cleanup("delete device " + device_id, lambda: None if device_id in deleted else rm.delete_device(device_id))

    # --- create / get / list / update ----------------------------------------------------------------
    def create(device_id, pk, sk, iot_edge=False):
        d = rm.create_device_with_sas(device_id, pk, sk, "enabled", iot_edge=iot_edge)
        cleanup_device(device_id)
        expect(d.device_id == device_id, "deviceId %r" % d.device_id)
        expect(d.status == "enabled", "status %r" % d.status)
        expect(d.etag, "no etag")
        expect(bool(d.capabilities and d.capabilities.iot_edge) == iot_edge, "capabilities %r" % (
            d.capabilities and d.capabilities.as_dict()))
        expect_generated_keys(d.authentication, device_id)
        return {"detail": "etag=%s" % d.etag, "device": d}

    created = s.step("create_device_with_sas %s, keys None (symmetricKey: {}) -> 200, keys generated" % dev,
                     lambda: create(dev, None, None), gap="create")
    if not created:
        s.finish()
    s.step("create_device_with_sas %s, keys \"\" -> keys generated" % dev2, lambda: create(dev2, "", ""), gap="create")
    edge_ok = s.step("create_device_with_sas %s iot_edge=True -> edge device, keys generated" % edge,
                     lambda: create(edge, None, None, iot_edge=True), gap="create")
    s.step("create_device_with_sas %s again -> 409" % dev,
           lambda: expect_status(lambda: rm.create_device_with_sas(dev, None, None, "enabled"), 409), gap="create")

    def get():
        d = rm.get_device(dev)
        want = created["device"].authentication.symmetric_key
        expect(d.device_id == dev, "deviceId %r" % d.device_id)
        expect(d.authentication.symmetric_key.primary_key == want.primary_key, "primary key differs from create")
        expect(d.etag == created["device"].etag, "etag %r, create said %r" % (d.etag, created["device"].etag))
        expect(d.connection_state == "Disconnected", "connectionState %r" % d.connection_state)
        return "connectionState=%s" % d.connection_state

    s.step("get_device %s -> same keys and etag" % dev, get, gap="get")
    s.step("get_device of an unknown id -> 404", lambda: expect_status(lambda: rm.get_device(unique_id("py-nobody")), 404),
           gap="get")

    def get_devices():
        ids = [d.device_id for d in rm.get_devices()]
        missing = [i for i in (dev, dev2, edge) if i not in ids]
        expect(not missing, "missing %s in %d devices" % (missing, len(ids)))
        few = rm.get_devices(max_number_of_devices=1)
        expect(len(few) == 1, "get_devices(max_number_of_devices=1) gave %d devices" % len(few))
        return "%d devices" % len(ids)

    s.step("get_devices (GET /devices) contains the 3 devices; max_number_of_devices=1 -> 1", get_devices, gap="list")

    def update():
        cur = rm.get_device(dev)
        sk = cur.authentication.symmetric_key
        d = rm.update_device_with_sas(dev, cur.etag, sk.primary_key, sk.secondary_key, "disabled",
                                      status_reason="compat test")
        expect(d.status == "disabled", "status %r" % d.status)
        expect(d.etag and d.etag != cur.etag, "etag %r (was %r)" % (d.etag, cur.etag))
        expect(d.authentication.symmetric_key.primary_key == sk.primary_key, "keys changed")
        expect(rm.get_device(dev).status == "disabled", "get_device does not show disabled")
        expect_status(lambda: rm.update_device_with_sas(dev, cur.etag, sk.primary_key, sk.secondary_key, "enabled"), 412)
        back = rm.update_device_with_sas(dev, d.etag, sk.primary_key, sk.secondary_key, "enabled")
        expect(back.status == "enabled", "re-enable: status %r" % back.status)
        return "etag %s -> %s -> %s; stale etag -> 412" % (cur.etag, d.etag, back.etag)

    s.step("update_device_with_sas with the etag (disable, re-enable); stale etag -> 412", update, gap="update")

    # --- twins ---------------------------------------------------------------------------------------
    def get_twin():
        t = rm.get_twin(dev)
        expect(t.device_id == dev, "deviceId %r" % t.device_id)
        expect(t.etag and t.etag != "*", "etag %r" % t.etag)
        expect(isinstance(t.properties.desired.get("$version"), int), "desired %r" % t.properties.desired)
        expect(isinstance(t.properties.reported.get("$version"), int), "reported %r" % t.properties.reported)
        return {"detail": "etag=%s version=%s" % (t.etag, t.version), "twin": t}

    twin0 = s.step("get_twin " + dev, get_twin, gap="twin")

    def update_twin():
        patch = Twin(tags={"environment": env_tag, "site": {"building": 43}},
                     properties=TwinProperties(desired={"telemetryInterval": 5, "mode": {"fast": True}}))
        t = rm.update_twin(dev, patch, twin0["twin"].etag)
        expect(t.tags.get("environment") == env_tag and t.tags.get("site", {}).get("building") == 43, "tags %r" % t.tags)
        d = t.properties.desired
        expect(d.get("telemetryInterval") == 5 and d.get("mode", {}).get("fast") is True, "desired %r" % d)
        v0 = twin0["twin"].properties.desired["$version"]
        expect(d.get("$version") == v0 + 1, "desired $version %r, was %r" % (d.get("$version"), v0))
        expect(t.etag != twin0["twin"].etag, "etag unchanged")
        expect_status(lambda: rm.update_twin(dev, Twin(tags={"stale": True}), twin0["twin"].etag), 412)
        return "etag %s -> %s; stale etag -> 412" % (twin0["twin"].etag, t.etag)

    twin1 = twin0 and s.step("update_twin %s tags + desired with the etag -> merged; stale etag -> 412" % dev,
                             update_twin, gap="twin")

    def replace_twin():
        t = rm.get_twin(dev)
        r = rm.replace_twin(dev, Twin(tags={"environment": env_tag, "replaced": True},
                                      properties=TwinProperties(desired={"only": 1})), t.etag)
        expect(r.tags == {"environment": env_tag, "replaced": True}, "tags %r (replace keeps nothing else)" % r.tags)
        d = {k: v for k, v in r.properties.desired.items() if not k.startswith("$")}
        expect(d == {"only": 1}, "desired %r (replace keeps nothing else)" % d)
        expect(r.properties.desired.get("$version") == t.properties.desired["$version"] + 1, "desired $version %r"
               % r.properties.desired.get("$version"))
        return "etag %s -> %s" % (t.etag, r.etag)

    if twin1:
        s.step("replace_twin %s (PUT /twins) with the etag -> tags and desired replaced" % dev, replace_twin, gap="twin")

    # --- query ---------------------------------------------------------------------------------------
    def tag_others():
        for other in (dev2, edge):
            t = rm.update_twin(other, Twin(tags={"environment": env_tag}))  # If-Match "*"
            expect(t.tags.get("environment") == env_tag, "tags %r" % t.tags)

    tagged = twin1 and s.step("update_twin %s, %s tags.environment (If-Match \"*\")" % (dev2, edge), tag_others, gap="twin")

    def query():
        spec = QuerySpecification(query="SELECT * FROM devices WHERE tags.environment = '%s'" % env_tag)
        seen, token, pages = [], None, 0
        while True:
            r = rm.query_iot_hub(spec, token, 1)
            items = r.items or []
            expect(len(items) <= 1, "page with %d items with max_item_count=1" % len(items))
            seen.extend(t.device_id for t in items)
            pages += 1
            token = r.continuation_token
            expect(pages <= 20, "more than 20 pages: continuation never ends?")
            if not token:
                break
        expect(sorted(seen) == sorted([dev, dev2, edge]), "got %r, want %r" % (seen, [dev, dev2, edge]))
        whole = rm.query_iot_hub(spec)
        expect(len(whole.items) == 3 and not whole.continuation_token,
               "without max_item_count: %d items, continuation %r" % (len(whole.items), whole.continuation_token))
        return "%d pages, type=%s" % (pages, whole.type)

    if tagged:
        s.step("query_iot_hub(tags.environment = '%s', max_item_count=1): continuation through 3 pages" % env_tag,
               query, gap="query")
    else:
        s.skip("query_iot_hub", "the twins could not be tagged")

    def statistics():
        st = rm.get_service_statistics()
        expect(isinstance(st.connected_device_count, int), "connectedDeviceCount %r" % st.connected_device_count)
        reg = rm.get_device_registry_statistics()
        expect(isinstance(reg.total_device_count, int) and reg.total_device_count >= 3,
               "totalDeviceCount %r" % reg.total_device_count)
        expect(reg.enabled_device_count + reg.disabled_device_count == reg.total_device_count,
               "enabled + disabled != total: %r" % reg.as_dict())
        return "connected=%d total=%d" % (st.connected_device_count, reg.total_device_count)

    s.step("get_service_statistics + get_device_registry_statistics", statistics, gap="statistics")

    # --- C2D queue of an offline device (REST; the SDK's send_c2d_message is AMQP) -------------------------
    def c2d_queue():
        for i in range(2):
            queue_c2d(cfg, dev2, body="queued %d" % i)
        return "2 queued"

    queued = s.step("queue 2 C2D messages for %s via REST (POST /devices/{id}/messages/deviceBound)" % dev2, c2d_queue,
                    gap="c2d")
    if queued:
        s.step("get_device %s: cloud_to_device_message_count = 2" % dev2, lambda: expect(
            rm.get_device(dev2).cloud_to_device_message_count == 2, "cloudToDeviceMessageCount %r"
            % rm.get_device(dev2).cloud_to_device_message_count), gap="c2d-message-count")

        def purge():
            n = purge_c2d(cfg, dev2)
            expect(n == 2, "totalMessagesPurged %r, want 2" % n)
            expect(purge_c2d(cfg, dev2) == 0, "second purge found messages")
            return "totalMessagesPurged=2, then 0"

        s.step("purge (DELETE /devices/{id}/commands) -> totalMessagesPurged 2, then 0", purge, gap="c2d")

    # --- bulk ------------------------------------------------------------------------------------------
    bulk = [unique_id("py-bulk"), unique_id("py-bulk")]

    def bulk_op(mode):
        devices = [ExportImportDevice(id=i, import_mode=mode,
                                      authentication=AuthenticationMechanism(type="sas", symmetric_key=SymmetricKey()))
                   for i in bulk]
        return rm.bulk_create_or_update_devices(devices)

    def bulk_create():
        r = bulk_op("create")
        for i in bulk:
            cleanup_device(i)
        expect(r.is_successful is True, "result %r" % r.as_dict())
        for i in bulk:
            expect_generated_keys(rm.get_device(i).authentication, i)

    bulk_ok = s.step("bulk_create_or_update_devices x2 (importMode create) -> isSuccessful, keys generated", bulk_create,
                     gap="bulk")

    def bulk_duplicate():
        # The hub answers 400 + BulkRegistryOperationResult when an item fails; azure-iot-hub accepts 200 and 400.
        r = bulk_op("create")
        expect(r.is_successful is False, "result %r" % r.as_dict())
        errs = [e for e in (r.errors or []) if e.device_id in bulk]
        expect(len(errs) == 2 and all(e.error_code == "DeviceAlreadyExists" for e in errs), "errors %r" % r.as_dict())
        return "errorCode=%s" % errs[0].error_code

    def bulk_delete():
        r = bulk_op("delete")
        expect(r.is_successful is True, "result %r" % r.as_dict())
        for i in bulk:
            deleted.add(i)
            expect_status(lambda i=i: rm.get_device(i), 404)

    if bulk_ok:
        s.step("bulk create of existing ids -> isSuccessful false, DeviceAlreadyExists per device", bulk_duplicate,
               gap="bulk")
        s.step("bulk_create_or_update_devices x2 (importMode delete) -> isSuccessful; get -> 404", bulk_delete, gap="bulk")

    # --- modules ---------------------------------------------------------------------------------------
    mod = unique_id("py-mod")

    def edge_modules():
        ids = [m.module_id for m in rm.get_modules(edge)]
        expect("$edgeAgent" in ids and "$edgeHub" in ids, "modules %r" % ids)
        return ", ".join(ids)

    if edge_ok:
        s.step("get_modules %s -> $edgeAgent and $edgeHub" % edge, edge_modules, gap="modules")

    def create_module():
        m = rm.create_module_with_sas(dev, mod, None, None, None)
        s.cleanup("delete module %s/%s" % (dev, mod), lambda: None if dev in deleted else rm.delete_module(dev, mod))
        expect(m.module_id == mod and m.device_id == dev, "module %r" % m.as_dict())
        expect_generated_keys(m.authentication, "module")
        return {"detail": "etag=%s" % m.etag, "module": m}

    module = s.step("create_module_with_sas %s/%s without keys -> keys generated" % (dev, mod), create_module, gap="modules")
    if module:
        def get_module():
            m = rm.get_module(dev, mod)
            expect(m.module_id == mod, "moduleId %r" % m.module_id)
            expect(m.authentication.symmetric_key.primary_key == module["module"].authentication.symmetric_key.primary_key,
                   "primary key differs")
            ids = [x.module_id for x in rm.get_modules(dev)]
            expect(ids == [mod], "get_modules %r" % ids)

        s.step("get_module + get_modules %s" % dev, get_module, gap="modules")

        def module_twin():
            t = rm.get_module_twin(dev, mod)
            expect(t.device_id == dev and t.module_id == mod, "twin ids %r/%r" % (t.device_id, t.module_id))
            t2 = rm.update_module_twin(dev, mod, Twin(properties=TwinProperties(desired={"rate": 7})), t.etag)
            expect(t2.properties.desired.get("rate") == 7, "desired %r" % t2.properties.desired)
            expect(rm.get_module_twin(dev, mod).properties.desired.get("rate") == 7, "get_module_twin: no rate")
            expect_status(lambda: rm.update_module_twin(dev, mod, Twin(tags={"x": 1}), t.etag), 412)
            expect("rate" not in rm.get_twin(dev).properties.desired, "the module patch changed the device twin")
            return "etag %s -> %s" % (t.etag, t2.etag)

        s.step("get_module_twin + update_module_twin with etag (stale -> 412)", module_twin, gap="module-twin")

        def delete_module():
            rm.delete_module(dev, mod)
            return expect_status(lambda: rm.get_module(dev, mod), 404)

        s.step("delete_module -> get_module 404", delete_module, gap="modules")
    else:
        s.skip("get_module, get_modules, module twin, delete_module", "create_module_with_sas failed")

    # --- direct method on a connected device --------------------------------------------------------------
    key = created["device"].authentication.symmetric_key.primary_key
    dc = IoTHubDeviceClient.create_from_connection_string(
        device_cs(cfg.hub_host, dev, key), server_verification_cert=cfg.ca_pem, connection_retry=False)
    dc_state = {"down": False}

    def shutdown():
        if not dc_state["down"]:
            dc_state["down"] = True
            dc.shutdown()

    s.cleanup("shut down device client", shutdown)

    def on_method(req):
        dc.send_method_response(MethodResponse.create_from_method_request(req, 200, {"ok": True, "got": req.payload}))

    def connect():
        dc.connect()
        dc.on_method_request_received = on_method  # returns once the SUBSCRIBE is acknowledged
        return wait_until("connectionState", lambda: (rm.get_device(dev).connection_state == "Connected",
                                                      rm.get_device(dev).connection_state))

    connected = s.step("azure-iot-device connects %s (MQTT) and handles methods -> service sees Connected" % dev, connect,
                       gap="methods")

    def invoke():
        r = rm.invoke_device_method(dev, CloudToDeviceMethod(method_name="getStatus", payload={"verbose": True},
                                                            response_timeout_in_seconds=15))
        expect(r.status == 200, "status %r" % r.status)
        expect((r.payload or {}).get("ok") is True and r.payload.get("got") == {"verbose": True}, "payload %r" % r.payload)
        return "status=200 payload=%s" % r.payload

    if connected:
        s.step("invoke_device_method on the connected device -> status + payload from the device", invoke, gap="methods")

        def invoke_no_payload():
            r = rm.invoke_device_method(dev, CloudToDeviceMethod(method_name="ping", response_timeout_in_seconds=15))
            expect(r.status == 200 and r.payload.get("got") in ("", None), "status %r payload %r" % (r.status, r.payload))
            return "payload sent as \"\" by the SDK, got back %r" % r.payload.get("got")

        s.step("invoke_device_method without payload (the SDK sends \"\")", invoke_no_payload, gap="methods")
    shutdown()

    def offline():
        return expect_status(lambda: rm.invoke_device_method(dev2, CloudToDeviceMethod(
            method_name="x", payload={}, response_timeout_in_seconds=5, connect_timeout_in_seconds=0)), 404)

    s.step("invoke_device_method on a device that never connected -> 404", offline, gap="methods")

    # --- delete -----------------------------------------------------------------------------------------
    def delete():
        rm.delete_device(dev)
        deleted.add(dev)
        expect_status(lambda: rm.get_device(dev), 404)
        expect_status(lambda: rm.get_twin(dev), 404)
        return expect_status(lambda: rm.delete_device(dev), 404)

    s.step("delete_device %s -> get_device/get_twin 404, second delete 404" % dev, delete, gap="delete")
    s.finish()


if __name__ == "__main__":
    main()

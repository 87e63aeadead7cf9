#!/usr/bin/env python3
"""Configurations / IoT Edge deployments at scale with the official Python service SDK azure-iot-hub 2.7.0
(IoTHubConfigurationManager, REST).

create_configuration (edge deployment with labels, metrics, target condition) -> etag, createdTimeUtc;
create again -> 409; get_configuration; get_configurations (max_count); update_configuration with the etag
(priority, target condition) and with a stale etag -> 412; test_configuration_queries (valid and invalid);
the $edgeAgent / $edgeHub module twins of a targeted edge device show the manifest and its device twin
`configurations` says Applied; systemMetrics targetedCount/appliedCount; a bad manifest -> 400;
apply_configuration_on_edge_device on a device no deployment targets -> module twins show it;
delete_configuration -> 404 afterwards.
Run by scripts/test.sh; configuration in _harness.py; gap ids in tests/compat/known-gaps.txt.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Config, Suite, error_text, expect, unique_id  # noqa: E402
from _hub import wait_until  # noqa: E402

from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager  # noqa: E402
from azure.iot.hub.models import (  # noqa: E402
    Configuration, ConfigurationContent, ConfigurationMetrics, ConfigurationQueriesTestInput, Twin,
)

SUITE = "py-hub-configurations"


def status_of(e):
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


def manifest(image):
    return {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}},
            },
            "modules": {"sensor": {"version": "1.0", "type": "docker", "status": "running",
                                   "restartPolicy": "always", "settings": {"image": image}}},
        }},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1",
            "routes": {"upstream": "FROM /messages/* INTO $upstream"},
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
        }},
    }


def main():
    cfg = Config(SUITE)
    s = Suite(SUITE)
    cm = IoTHubConfigurationManager.from_connection_string(cfg.hub_service_cs)
    rm = IoTHubRegistryManager.from_connection_string(cfg.hub_service_cs)
    dep_id = unique_id("py-dep").lower()
    edge, manual_dev = unique_id("py-dep-edge"), unique_id("py-dep-manual")
    env_tag = unique_id("env")
    deleted = set()

    def setup():
        for d in (edge, manual_dev):
            rm.create_device_with_sas(d, "", "", "enabled", iot_edge=True)
            s.cleanup("delete device " + d, lambda d=d: rm.delete_device(d))
        rm.update_twin(edge, Twin(tags={"environment": env_tag}), "*")

    if not s.step("create edge devices %s, %s; tag %s" % (edge, manual_dev, edge), setup):
        s.finish()

    state = {}

    def create():
        c = Configuration(
            id=dep_id, schema_version="1.0", labels={"team": "compat"},
            content=ConfigurationContent(modules_content=manifest("sensor:py1")),
            target_condition="tags.environment='%s'" % env_tag, priority=10,
            metrics=ConfigurationMetrics(queries={"tagged": "SELECT deviceId FROM devices WHERE tags.environment='%s'"
                                                  % env_tag}))
        out = cm.create_configuration(c)
        s.cleanup("delete configuration " + dep_id,
                  lambda: None if dep_id in deleted else cm.delete_configuration(dep_id))
        expect(out.id == dep_id, "id %r" % out.id)
        expect(out.etag, "no etag")
        expect(out.created_time_utc is not None, "no createdTimeUtc")
        expect(out.labels == {"team": "compat"}, "labels %r" % out.labels)
        expect(out.content.modules_content["$edgeAgent"]["properties.desired"]["schemaVersion"] == "1.1",
               "content %r" % out.content.as_dict())
        state["etag"] = out.etag
        return "etag %s" % out.etag

    if not s.step("create_configuration %s (edge deployment) -> etag, createdTimeUtc, content" % dep_id, create,
                  gap="create"):
        s.finish()
    s.step("create_configuration %s again -> 409" % dep_id, lambda: expect_status(lambda: cm.create_configuration(
        Configuration(id=dep_id, content=ConfigurationContent(modules_content=manifest("x")),
                      target_condition="*", priority=1)), 409), gap="create")

    def bad():
        m = manifest("x")
        del m["$edgeHub"]
        r = expect_status(lambda: cm.create_configuration(Configuration(
            id=dep_id + "-bad", content=ConfigurationContent(modules_content=m), target_condition="*", priority=1)),
            400)
        expect_status(lambda: cm.get_configuration(dep_id + "-bad"), 404)
        return r

    s.step("create_configuration with a manifest without $edgeHub -> 400, nothing stored", bad, gap="validate")

    def get():
        c = cm.get_configuration(dep_id)
        expect(c.etag == state["etag"], "etag %r vs %r" % (c.etag, state["etag"]))
        expect(c.priority == 10, "priority %r" % c.priority)
        expect(c.system_metrics is not None and "targetedCount" in c.system_metrics.results,
               "systemMetrics %r" % (c.system_metrics and c.system_metrics.as_dict()))

    s.step("get_configuration %s -> same etag, systemMetrics" % dep_id, get, gap="get")

    def listed():
        all_ids = [c.id for c in cm.get_configurations()]
        expect(dep_id in all_ids, "%s not in %r" % (dep_id, all_ids))
        one = cm.get_configurations(1)
        expect(len(one) == 1, "max_count=1 gave %d" % len(one))

    s.step("get_configurations contains it; max_count=1 -> 1", listed, gap="list")

    def applied():
        def check():
            t = rm.get_module_twin(edge, "$edgeAgent")
            img = t.properties.desired.get("modules", {}).get("sensor", {}).get("settings", {}).get("image")
            return img == "sensor:py1", "sensor image %r" % img
        wait_until("$edgeAgent desired shows the deployment", check)

        # The deployment engine writes one module twin after the other and the device twin's
        # configurations last (a plan is not one transaction): wait for that last write.
        def applied_status():
            twin = rm.get_twin(edge)
            got = (twin.additional_properties or {}).get("configurations") or getattr(twin, "configurations", None)
            return got == {dep_id: {"status": "Applied"}}, "twin configurations %r" % got
        wait_until("the device twin shows the deployment Applied", applied_status)
        h = rm.get_module_twin(edge, "$edgeHub")
        expect(h.properties.desired.get("routes", {}).get("upstream") == "FROM /messages/* INTO $upstream",
               "$edgeHub desired %r" % h.properties.desired)
        m = cm.get_configuration(dep_id)
        res = m.system_metrics.results
        expect(res.get("targetedCount") == 1 and res.get("appliedCount") == 1, "systemMetrics %r" % res)
        expect(m.metrics.results.get("tagged") == 1, "metrics %r" % m.metrics.as_dict())

    s.step("targeted edge device: $edgeAgent/$edgeHub module twins show the manifest, Applied, metrics", applied,
           gap="apply")

    def update():
        c = cm.get_configuration(dep_id)
        c.priority = 20
        out = cm.update_configuration(c, c.etag)
        expect(out.priority == 20, "priority %r" % out.priority)
        expect(out.etag != c.etag, "etag did not change")
        stale = cm.get_configuration(dep_id)
        stale.priority = 30
        return expect_status(lambda: cm.update_configuration(stale, c.etag), 412)

    s.step("update_configuration with the etag (priority 20); stale etag -> 412", update, gap="update")

    def queries():
        ok = cm.test_configuration_queries(ConfigurationQueriesTestInput(
            target_condition="tags.a='b'", custom_metric_queries={"m": "SELECT deviceId FROM devices"}))
        expect(not ok.target_condition_error, "error %r" % ok.target_condition_error)
        bad = cm.test_configuration_queries(ConfigurationQueriesTestInput(
            target_condition="tags.a=", custom_metric_queries={"m": "SELECT nope"}))
        expect(bad.target_condition_error, "no targetConditionError")
        expect("m" in (bad.custom_metric_query_errors or {}), "no customMetricQueryErrors")

    s.step("test_configuration_queries: valid -> no errors, invalid -> errors", queries, gap="testqueries")

    def manual():
        cm.apply_configuration_on_edge_device(manual_dev, ConfigurationContent(modules_content=manifest("sensor:m")))

        def check():
            t = rm.get_module_twin(manual_dev, "$edgeAgent")
            img = t.properties.desired.get("modules", {}).get("sensor", {}).get("settings", {}).get("image")
            return img == "sensor:m", "sensor image %r" % img
        wait_until("$edgeAgent desired shows the content", check)

    s.step("apply_configuration_on_edge_device %s -> module twins show it" % manual_dev, manual, gap="setmodules")

    def delete():
        cm.delete_configuration(dep_id)
        deleted.add(dep_id)
        return expect_status(lambda: cm.get_configuration(dep_id), 404)

    s.step("delete_configuration -> get 404", delete, gap="delete")
    s.finish()


if __name__ == "__main__":
    main()

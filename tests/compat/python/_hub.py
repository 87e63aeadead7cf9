"""IoT Hub helpers for fleethub's own official-SDK compatibility tests (not a test itself).

- service_sas(): a hub service SAS from FLEETHUB_HUB_SERVICE_CS, made by azure-iot-hub's own SasToken
- rest(): one bounded HTTPS request to the hub with that SAS (requests, the server's CA)
- queue_c2d(): queue a cloud-to-device message through fleethub's REST API
  (POST /devices/{id}/messages/deviceBound). The official service clients send C2D over AMQP
  (IoTHubRegistryManager.send_c2d_message, uamqp): hub_amqp_c2d.py tests that path.
- purge_c2d(): DELETE /devices/{id}/commands -> totalMessagesPurged
- EventReader: stored telemetry from GET /messages/events?consumerGroup=compat&from=N&limit=1000, fleethub's
  read path for device-to-cloud messages (the SDKs have none: Azure uses Event Hubs over AMQP)
- device_cs(): HostName=...;DeviceId=...[;ModuleId=...];SharedAccessKey=...
"""
import time
import urllib.parse

import requests
from azure.iot.hub.sastoken import SasToken

from _harness import parse_cs

API_VERSION = "2021-04-12"


def service_sas(cfg):
    cs = parse_cs(cfg.hub_service_cs)
    return str(SasToken(cs["HostName"], cs["SharedAccessKey"], cs["SharedAccessKeyName"]))


def device_sas(cfg, device_id, key, ttl):
    """A device SAS token for {hub}/devices/{id} valid for ttl seconds (signed like the Python device SDK)."""
    return str(SasToken("%s/devices/%s" % (cfg.hub_host, device_id), key, None, ttl))


def rest(cfg, method, path, body=None, timeout=30):
    """One HTTPS request with a service SAS -> (status, parsed JSON or text, response)."""
    sep = "&" if "?" in path else "?"
    url = "https://%s%s%sapi-version=%s" % (cfg.hub_host, path, sep, API_VERSION)
    headers = {"Authorization": service_sas(cfg), "Accept": "application/json"}
    r = requests.request(method, url, json=body, headers=headers, verify=cfg.ca_path, timeout=timeout)
    parsed = r.text
    if "application/json" in r.headers.get("Content-Type", "") and r.content:
        try:
            parsed = r.json()
        except ValueError:
            pass
    return r.status_code, parsed, r


def queue_c2d(cfg, device_id, **msg):
    """Queues a C2D message (body, messageId, correlationId, contentType, properties, ...); returns the 200 body."""
    status, body, r = rest(cfg, "POST", "/devices/%s/messages/deviceBound" % urllib.parse.quote(device_id, safe=""),
                           msg)
    if status != 200:
        raise AssertionError("queue C2D for %s: HTTP %s %s" % (device_id, status, r.text[:300]))
    return body


def purge_c2d(cfg, device_id):
    status, body, r = rest(cfg, "DELETE", "/devices/%s/commands" % urllib.parse.quote(device_id, safe=""))
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("totalMessagesPurged"), int):
        raise AssertionError("purge C2D queue of %s: HTTP %s %s" % (device_id, status, r.text[:300]))
    return body["totalMessagesPurged"]


class EventReader:
    """Reads stored telemetry from the start (from=0) and keeps its cursor between calls."""

    def __init__(self, cfg, consumer_group="compat"):
        self.cfg = cfg
        self.consumer_group = consumer_group
        self.cursor = 0
        self.seen = []

    def _read_available(self):
        for _ in range(1000):
            status, page, r = rest(self.cfg, "GET", "/messages/events?consumerGroup=%s&from=%d&limit=1000" % (
                urllib.parse.quote(self.consumer_group), self.cursor))
            if status != 200:
                raise AssertionError("GET /messages/events: HTTP %s %s" % (status, r.text[:300]))
            if not isinstance(page, dict) or not isinstance(page.get("messages"), list):
                raise AssertionError("GET /messages/events: no \"messages\" array: %s" % r.text[:300])
            self.seen.extend(page["messages"])
            if isinstance(page.get("next"), int) and page["next"] > self.cursor:
                self.cursor = page["next"]
            if not page["messages"]:
                return

    def wait_for(self, pred, count=1, timeout=20):
        """The stored messages matching pred once there are `count` of them (polls every 500 ms)."""
        deadline = time.time() + timeout
        while True:
            self._read_available()
            found = [m for m in self.seen if pred(m)]
            if len(found) >= count:
                return found
            if time.time() > deadline:
                raise AssertionError("%d of %d expected messages in GET /messages/events after %ss (read %d, cursor %d)"
                                     % (len(found), count, timeout, len(self.seen), self.cursor))
            time.sleep(0.5)


def device_cs(host, device_id, key, module_id=None):
    return "HostName=%s;DeviceId=%s%s;SharedAccessKey=%s" % (
        host, device_id, (";ModuleId=" + module_id) if module_id else "", key)


def wait_until(what, fn, timeout=15, interval=0.3):
    """Calls fn() until it returns (True, info); raises with the last info after timeout seconds."""
    deadline = time.time() + timeout
    while True:
        ok, info = fn()
        if ok:
            return info
        if time.time() > deadline:
            raise AssertionError("%s: %s after %ss" % (what, info, timeout))
        time.sleep(interval)

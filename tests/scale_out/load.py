"""Load that records what the cluster acknowledged, for the kill -9 check (not a test itself).

- TelemetryDevice: one device publishing QoS 1 telemetry over MQTT/TLS through HAProxy (paho-mqtt,
  which azure-iot-device is built on), one message in flight; a message id is recorded only when
  its PUBACK came back. A lost connection (a publish paho did not send) or a PUBACK that does not
  come within 5 s ends that connection; the device reconnects through HAProxy (to a surviving node)
  and goes on with new ids. Every failure is recorded in `errors` and followed by a reconnect: the
  thread never ends before `stop`, so a device that publishes nothing after a kill is the cluster's
  doing, not a dead client thread.
- Registrant: registers new devices of an enrollment group with the official azure-iot-device
  ProvisioningDeviceClient through HAProxy; records every registration answered `assigned`.
- Rest: the hub and DPS service REST APIs with a service SAS, through HAProxy or pinned to one node.
"""

import base64
import hashlib
import hmac
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse

from cluster import DPS_HOST, HUB_HOST

HUB_API = "2021-04-12"
DPS_API = "2021-10-01"


def sas(resource, key_b64, key_name=None, ttl=3600):
    expiry = int(time.time()) + ttl
    sr = urllib.parse.quote(resource, safe="")
    mac = hmac.new(base64.b64decode(key_b64), ("%s\n%d" % (sr, expiry)).encode(), hashlib.sha256)
    token = "SharedAccessSignature sr=%s&sig=%s&se=%d" % (
        sr, urllib.parse.quote(base64.b64encode(mac.digest()).decode(), safe=""), expiry)
    return token + ("&skn=%s" % key_name if key_name else "")


def derive(group_key, registration_id):
    mac = hmac.new(base64.b64decode(group_key), registration_id.encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def parse_cs(cs):
    return dict(p.split("=", 1) for p in cs.split(";") if "=" in p)


class Rest:
    """Service REST calls with the SAS of a connection string; `addr` pins the TCP connection to one
    node (TLS still checks the host name), else the host name resolves to HAProxy."""

    def __init__(self, connection_string, ca_path, api_version, addr=None):
        cs = parse_cs(connection_string)
        self.host, self.key, self.key_name = cs["HostName"], cs["SharedAccessKey"], cs["SharedAccessKeyName"]
        self.api_version, self.addr = api_version, addr
        self.ctx = ssl.create_default_context(cafile=ca_path)

    def call(self, method, path, body=None, headers=None):
        conn = http.client.HTTPSConnection(self.host, 443, timeout=30, context=self.ctx)
        if self.addr:
            addr, ctx, host = self.addr, self.ctx, self.host

            def connect():
                conn.sock = ctx.wrap_socket(socket.create_connection((addr, 443), 30), server_hostname=host)

            conn.connect = connect
        sep = "&" if "?" in path else "?"
        headers = dict(headers or {}, Authorization=sas(self.host, self.key, self.key_name), Accept="application/json")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, "%s%sapi-version=%s" % (path, sep, self.api_version), body=data, headers=headers)
            r = conn.getresponse()
            text = r.read().decode()
            return r.status, (json.loads(text) if text and text[0] in "[{" else text)
        finally:
            conn.close()

    def ok(self, method, path, body=None, headers=None):
        status, parsed = self.call(method, path, body, headers)
        if status >= 300:
            raise AssertionError("%s %s: HTTP %d %s" % (method, path, status, str(parsed)[:300]))
        return parsed


class TelemetryDevice(threading.Thread):
    def __init__(self, device_id, key, ca_path, stop):
        super().__init__(daemon=True, name=device_id)
        self.device_id, self.key, self.ca_path, self.stop = device_id, key, ca_path, stop
        self.acked = []  # (message id, monotonic time of the PUBACK)
        self.connects = 0
        self.errors = []

    def _connect(self):
        import paho.mqtt.client as mqtt

        connected = threading.Event()
        c = mqtt.Client(client_id=self.device_id, clean_session=True, protocol=mqtt.MQTTv311)
        c.username_pw_set("%s/%s/?api-version=%s" % (HUB_HOST, self.device_id, HUB_API),
                          sas("%s/devices/%s" % (HUB_HOST, self.device_id), self.key))
        c.tls_set(ca_certs=self.ca_path)

        def on_connect(_c, _u, _f, rc):
            # paho's network thread also reconnects by itself: every CONNACK 0 counts.
            if rc == 0:
                self.connects += 1
                connected.set()

        c.on_connect = on_connect
        c.connect(HUB_HOST, 8883, keepalive=30)
        c.loop_start()
        if not connected.wait(10):
            c.loop_stop()
            c.disconnect()
            raise ConnectionError("no CONNACK 0 within 10 s")
        return c

    def run(self):
        seq = 0
        while not self.stop.is_set():
            try:
                c = self._connect()
            except Exception as e:  # noqa: BLE001 (a node just died: try again through HAProxy)
                self.errors.append("connect: %s" % e)
                time.sleep(0.5)
                continue
            try:
                seq = self._publish_until_lost(c, seq)
            except Exception as e:  # noqa: BLE001 (recorded, then a new connection: the thread must not die)
                self.errors.append("publishing: %s: %s" % (type(e).__name__, e))
            finally:
                # disconnect() first: it also ends the automatic reconnects of paho's network thread,
                # which loop_stop() then joins.
                c.disconnect()
                c.loop_stop()

    def _publish_until_lost(self, c, seq):
        """Publishes one message at a time on `c` until one is not PUBACKed; returns the last seq."""
        import paho.mqtt.client as mqtt

        while not self.stop.is_set():
            seq += 1
            mid = "%s-%d" % (self.device_id, seq)
            info = c.publish("devices/%s/messages/events/%%24.mid=%s" % (self.device_id, mid),
                             json.dumps({"seq": seq}), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # paho's network thread saw the connection drop before this publish (after a kill -9:
                # MQTT_ERR_NO_CONN): nothing was sent and is_published() would raise.
                self.errors.append("%s not sent: %s" % (mid, mqtt.error_string(info.rc)))
                return seq
            info.wait_for_publish(5)
            if not info.is_published():
                self.errors.append("no PUBACK for %s within 5 s" % mid)
                return seq
            self.acked.append((mid, time.monotonic()))
        return seq


class Registrant(threading.Thread):
    def __init__(self, name, id_scope, group_key, ca_pem, stop):
        super().__init__(daemon=True, name=name)
        self.name_, self.id_scope, self.group_key, self.ca_pem, self.stop = name, id_scope, group_key, ca_pem, stop
        self.assigned = []  # (registration id, device id, assigned hub, monotonic time)
        self.errors = []

    def run(self):
        from azure.iot.device import ProvisioningDeviceClient

        i = 0
        while not self.stop.is_set():
            i += 1
            reg = "%s-%d" % (self.name_, i)
            try:
                pdc = ProvisioningDeviceClient.create_from_symmetric_key(
                    provisioning_host=DPS_HOST, registration_id=reg, id_scope=self.id_scope,
                    symmetric_key=derive(self.group_key, reg), server_verification_cert=self.ca_pem)
                result = pdc.register()
                if result.status == "assigned":
                    st = result.registration_state
                    self.assigned.append((reg, st.device_id, st.assigned_hub, time.monotonic()))
                else:
                    self.errors.append("%s: %s" % (reg, result.status))
            except Exception as e:  # noqa: BLE001 (not answered `assigned`: nothing to check)
                self.errors.append("%s: %s" % (reg, type(e).__name__))

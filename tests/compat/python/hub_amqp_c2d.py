#!/usr/bin/env python3
"""Service-side cloud-to-device messages over AMQP with the official Python service SDK azure-iot-hub
2.7.0 (IoTHubRegistryManager.send_c2d_message, uamqp 1.6.11 on port 5671), received by the official
Python device SDK azure-iot-device 2.14.0 over MQTT.

send_c2d_message with custom properties and a content type -> the device receives body, properties and
content type; a message to a device that does not exist is refused (send_c2d_message raises).
Run by scripts/test.sh; configuration in _harness.py.
"""
import os
import queue
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Config, Suite, error_text, expect, unique_id  # noqa: E402
from _hub import device_cs  # noqa: E402

from azure.iot.device import IoTHubDeviceClient  # noqa: E402
from azure.iot.hub import IoTHubRegistryManager  # noqa: E402

SUITE = "py-hub-amqp-c2d"


def main():
    cfg = Config(SUITE)
    # uamqp's OpenSSL reads the trusted CAs from SSL_CERT_FILE when the process starts (setting it
    # later is not seen): run again with it pointing at the server's CA.
    if os.environ.get("SSL_CERT_FILE") != cfg.ca_path:
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, SSL_CERT_FILE=cfg.ca_path))
    s = Suite(SUITE)
    rm = IoTHubRegistryManager.from_connection_string(cfg.hub_service_cs)
    dev = unique_id("py-c2d")
    box = {}

    def create():
        d = rm.create_device_with_sas(dev, None, None, "enabled")
        s.cleanup("delete device " + dev, lambda: rm.delete_device(dev))
        box["key"] = d.authentication.symmetric_key.primary_key

    if not s.step("create device %s" % dev, create):
        s.finish()
    inbox = queue.Queue()

    def connect():
        c = IoTHubDeviceClient.create_from_connection_string(device_cs(cfg.hub_host, dev, box["key"]),
                                                             server_verification_cert=cfg.ca_pem)
        c.on_message_received = inbox.put
        c.connect()
        s.cleanup("disconnect " + dev, c.shutdown)

    s.step("device connects (MQTT) and listens for C2D", connect)

    def send():
        rm.send_c2d_message(dev, "hello over amqp", properties={"colour": "green", "contentType": "text/plain",
                                                                   "iothub-ack": "full"})
        m = inbox.get(timeout=20)
        expect(m.data == b"hello over amqp", "body %r" % m.data)
        expect(m.custom_properties.get("colour") == "green", "properties %r" % m.custom_properties)
        expect(m.content_type == "text/plain", "content type %r" % m.content_type)
        expect(m.message_id, "no message id")
        return "message id %s" % m.message_id

    s.step("send_c2d_message (AMQP) -> the device receives it", send, timeout=60)

    def unknown():
        try:
            rm.send_c2d_message(unique_id("nobody"), "x")
        except Exception as e:  # noqa: BLE001 - the SDK raises a plain Exception
            return error_text(e, 200)
        raise AssertionError("a message to a device that does not exist was accepted")

    s.step("send_c2d_message to a device that does not exist -> refused", unknown, timeout=60)

    def close():
        rm.amqp_svc_client.disconnect_sync()

    s.step("disconnect the AMQP client", close)
    s.finish()


if __name__ == "__main__":
    main()

"""Edge module for the end-to-end test: sends {"n": 0, 1, 2, ...} on output `output1`, forever.

Written against the unmodified official Python device SDK, connected the way IoT Edge modules
connect: IoTHubModuleClient.create_from_edge_environment() (IOTEDGE_* variables, the workload API
signs its tokens and hands out the edge hub's trust bundle).
"""

import json
import os
import sys
import time

from azure.iot.device import IoTHubModuleClient, Message

INTERVAL = float(os.environ.get("EMIT_INTERVAL_SECS", "0.2"))


def main():
    client = IoTHubModuleClient.create_from_edge_environment()
    client.connect()
    print("emitter connected as %s/%s" % (os.environ["IOTEDGE_DEVICEID"], os.environ["IOTEDGE_MODULEID"]), flush=True)
    n = 0
    while True:
        msg = Message(json.dumps({"n": n}))
        msg.content_type = "application/json"
        msg.content_encoding = "utf-8"
        msg.custom_properties["n"] = str(n)
        msg.message_id = "emit-%d" % n
        client.send_message_to_output(msg, "output1")
        if n % 25 == 0:
            print("sent %d" % n, flush=True)
        n += 1
        time.sleep(INTERVAL)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)

"""Edge module for the end-to-end test: receives messages on input `input1` (routed from the
emitter by the edge hub) and forwards each one, with its properties plus via=receiver, on output
`forwarded` (routed to $upstream). Official Python SDK, create_from_edge_environment()."""

import os
import sys
import threading

from azure.iot.device import IoTHubModuleClient, Message


def main():
    client = IoTHubModuleClient.create_from_edge_environment()
    count = [0]

    def on_message(msg):
        if msg.input_name != "input1":
            print("ignored a message on input %r" % msg.input_name, flush=True)
            return
        out = Message(msg.data)
        out.content_type = msg.content_type
        out.content_encoding = msg.content_encoding
        out.custom_properties.update(msg.custom_properties)
        out.custom_properties["via"] = "receiver"
        client.send_message_to_output(out, "forwarded")
        count[0] += 1
        if count[0] % 25 == 1:
            print("forwarded %d (n=%s)" % (count[0], msg.custom_properties.get("n")), flush=True)

    client.on_message_received = on_message
    client.connect()
    print("receiver connected as %s/%s" % (os.environ["IOTEDGE_DEVICEID"], os.environ["IOTEDGE_MODULEID"]), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)

import json, sys, time, threading
from azure.iot.device import IoTHubModuleClient, Message

cfg = json.load(open(sys.argv[1]))
ca = open(cfg["edge_ca"]).read()
def cs(m):
    return f"HostName=localhost;DeviceId=edge-1;ModuleId={m};SharedAccessKey={cfg['keys'][m]};GatewayHostName=127.0.0.3"

b = IoTHubModuleClient.create_from_connection_string(cs("B"), server_verification_cert=ca)
got = []
ev = threading.Event()
def on_msg(msg):
    got.append((msg.input_name, msg.data, msg.message_id, msg.correlation_id, msg.content_type, dict(msg.custom_properties)))
    ev.set()
b.on_message_received = on_msg
b.connect()

a = IoTHubModuleClient.create_from_connection_string(cs("A"), server_verification_cert=ca)
a.connect()
m = Message('{"t": 21.5}', message_id="py-1", content_encoding="utf-8", content_type="application/json")
m.correlation_id = "corr-1"
m.custom_properties["alert"] = "yes"
a.send_message_to_output(m, "output1")
assert ev.wait(15), "B got nothing"
print("B received:", got[0])
assert got[0][0] == "input1" and got[0][2] == "py-1" and got[0][3] == "corr-1", got
assert got[0][5]["alert"] == "yes" and got[0][5]["$.cmid"] == "A", got

# twin through the edge hub
a.patch_twin_reported_properties({"fw": "py"})
twin = a.get_twin()
print("A twin:", twin)
assert twin["reported"]["fw"] == "py"
# desired patch
patches = []
pev = threading.Event()
def on_patch(p):
    patches.append(p); pev.set()
a.on_twin_desired_properties_patch_received = on_patch
time.sleep(1)
print("READY-FOR-DESIRED", flush=True)
assert pev.wait(20), "no desired patch"
print("A desired patch:", patches[0])
# direct method
from azure.iot.device import MethodResponse
mev = threading.Event()
def on_method(req):
    a.send_method_response(MethodResponse.create_from_method_request(req, 200, {"echo": req.payload}))
    mev.set()
a.on_method_request_received = on_method
time.sleep(1)
print("READY-FOR-METHOD", flush=True)
assert mev.wait(20), "no method"
time.sleep(1)
a.shutdown(); b.shutdown()
print("PYTHON-OK")

#!/usr/bin/env node
// The Node half of tests/dps_multihub/multihub_e2e.py (which runs it): registers devices with the
// official Node provisioning client (azure-iot-provisioning-device with the Mqtt and Http
// transports, azure-iot-security-symmetric-key; the custom payload with setProvisioningPayload),
// then connects each to the hub it was assigned with azure-iot-device + azure-iot-device-mqtt and
// sends one event. Trusts the CA through NODE_EXTRA_CA_CERTS.
//
//   node multihub_node.js register DPS_HOST ID_SCOPE '[[registrationId, key, payload|null], ...]'
//
// Prints one JSON line: [{registrationId, assignedHub, deviceId, substatus, payload, connected}].
'use strict';

const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt } = require('azure-iot-provisioning-device-mqtt');
const { Http } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { Client, Message } = require('azure-iot-device');
const DeviceMqtt = require('azure-iot-device-mqtt').Mqtt;

async function registerOne(host, scope, [regId, key, payload], i) {
  const transport = i % 2 === 0 ? new Mqtt() : new Http();
  const client = ProvisioningDeviceClient.create(host, scope, transport, new SymmetricKeySecurityClient(regId, key));
  if (payload) client.setProvisioningPayload(payload);
  const st = await client.register();
  const out = {
    registrationId: regId, assignedHub: st.assignedHub, deviceId: st.deviceId, substatus: st.substatus,
    payload: st.payload === undefined ? null : st.payload, connected: false,
    transport: i % 2 === 0 ? 'mqtt' : 'http',
  };
  const cs = `HostName=${st.assignedHub};DeviceId=${st.deviceId};SharedAccessKey=${key}`;
  const device = Client.fromConnectionString(cs, DeviceMqtt);
  await device.open();
  await device.sendEvent(new Message(JSON.stringify({ from: regId })));
  await device.close();
  out.connected = true;
  return out;
}

async function main() {
  const [cmd, host, scope, list] = process.argv.slice(2);
  if (cmd !== 'register') throw new Error(`unknown command ${cmd}`);
  const results = [];
  const items = JSON.parse(list);
  for (let i = 0; i < items.length; i += 1) results.push(await registerOne(host, scope, items[i], i));
  console.log(JSON.stringify(results));
}

const limit = setTimeout(() => { console.error('multihub_node.js: over 240 s'); process.exit(2); }, 240000);
main().then(() => { clearTimeout(limit); process.exit(0); }, (e) => {
  console.error(`multihub_node.js: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});

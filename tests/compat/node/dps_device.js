#!/usr/bin/env node
// DPS device provisioning with the official Node SDKs: azure-iot-provisioning-device 1.9.1 with the
// MQTT (azure-iot-provisioning-device-mqtt 1.8.1: Mqtt and MqttWs), HTTP
// (azure-iot-provisioning-device-http 1.9.1) and AMQP (azure-iot-provisioning-device-amqp 1.9.1: Amqp
// and AmqpWs) transports and azure-iot-security-symmetric-key;
// enrollments, registration records and cleanup through azure-iot-provisioning-service 1.11.2.
// Individual enrollments and symmetric-key group devices (derived keys) over every transport,
// re-registration, negative cases (wrong key over MQTT, HTTP and AMQP, disabled enrollment, unknown id),
// getDeviceRegistrationState, the group's registration-state query (page size 1), record deletion.
// Run by scripts/test.sh; configuration in lib/harness.js.
'use strict';

const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt, MqttWs } = require('azure-iot-provisioning-device-mqtt');
const { Http } = require('azure-iot-provisioning-device-http');
const { Amqp, AmqpWs } = require('azure-iot-provisioning-device-amqp');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { Config, Suite, expect, errorText, statusOf, deriveGroupDeviceKey, randomKey, uniqueId } = require('./lib/harness');

const SUITE = 'node-dps-device';
const TRANSPORTS = { mqtt: Mqtt, 'mqtt-ws': MqttWs, http: Http, amqp: Amqp, 'amqp-ws': AmqpWs };

function symmetric(primaryKey) {
  return { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: randomKey() } };
}

async function main() {
  const cfg = new Config(SUITE);
  const s = new Suite(SUITE);
  const psc = ProvisioningServiceClient.fromConnectionString(cfg.dpsServiceCs);

  const register = (transport, regId, key) => {
    const client = ProvisioningDeviceClient.create(cfg.dpsHost, cfg.idScope, new TRANSPORTS[transport](),
      new SymmetricKeySecurityClient(regId, key));
    return client.register();
  };

  const expectAssigned = (st, deviceId, substatus = 'initialAssignment') => {
    expect(st && st.status === 'assigned', `not assigned: ${JSON.stringify(st)}`);
    expect((st.assignedHub || '').toLowerCase() === cfg.hubHost.toLowerCase(),
      `assignedHub ${st.assignedHub}, want ${cfg.hubHost} (HostName of the hub service connection string)`);
    expect(st.deviceId === deviceId, `deviceId ${st.deviceId}, want ${deviceId}`);
    if (substatus) expect(st.substatus === substatus, `substatus ${st.substatus}, want ${substatus}`);
    return `assignedHub=${st.assignedHub} deviceId=${st.deviceId} substatus=${st.substatus}`;
  };

  const expectRejected = async (transport, regId, key, wantStatus, allowUnassignedResult = false) => {
    let st;
    try {
      st = await register(transport, regId, key);
    } catch (e) {
      const got = statusOf(e);
      if (wantStatus) expect(wantStatus.includes(got), `rejected with status ${got}, want one of ${wantStatus}: ${errorText(e)}`);
      return `rejected: status=${got} ${errorText(e, 160)}`;
    }
    if (allowUnassignedResult && st && st.status !== 'assigned') return `not assigned: status=${st.status}`;
    throw new Error(`registration was accepted: ${JSON.stringify(st)}`);
  };

  // --- enrollments ------------------------------------------------------------------------------------
  const ind = {
    mqtt: { id: uniqueId('node-ind-mqtt'), key: randomKey(), deviceId: uniqueId('node-dev') },
    'mqtt-ws': { id: uniqueId('node-ind-ws'), key: randomKey() },
    http: { id: uniqueId('node-ind-http'), key: randomKey() },
    amqp: { id: uniqueId('node-ind-amqp'), key: randomKey() },
    'amqp-ws': { id: uniqueId('node-ind-amqpws'), key: randomKey() },
  };
  const off = { id: uniqueId('node-off'), key: randomKey() };
  const grp = { id: uniqueId('node-grp'), key: randomKey() };
  const members = {
    mqtt: uniqueId('node-gdev-mqtt'), 'mqtt-ws': uniqueId('node-gdev-ws'), http: uniqueId('node-gdev-http'),
    amqp: uniqueId('node-gdev-amqp'), 'amqp-ws': uniqueId('node-gdev-amqpws'),
  };

  let ok = true;
  for (const [t, e] of Object.entries(ind)) {
    ok = (await s.step(`createOrUpdateIndividualEnrollment ${e.id}${e.deviceId ? ' (deviceId ' + e.deviceId + ')' : ''} for ${t}`, async () => {
      const body = { registrationId: e.id, attestation: symmetric(e.key) };
      if (e.deviceId) body.deviceId = e.deviceId;
      const { responseBody: out } = await psc.createOrUpdateIndividualEnrollment(body);
      s.cleanup(`delete enrollment ${e.id}`, () => psc.deleteIndividualEnrollment(e.id));
      expect(out.registrationId === e.id && out.etag, `response ${JSON.stringify(out)}`);
    })) && ok;
  }
  ok = (await s.step(`createOrUpdateIndividualEnrollment ${off.id} (provisioningStatus disabled)`, async () => {
    await psc.createOrUpdateIndividualEnrollment({ registrationId: off.id, attestation: symmetric(off.key), provisioningStatus: 'disabled' });
    s.cleanup(`delete enrollment ${off.id}`, () => psc.deleteIndividualEnrollment(off.id));
  })) && ok;
  ok = (await s.step(`createOrUpdateEnrollmentGroup ${grp.id}`, async () => {
    const { responseBody: out } = await psc.createOrUpdateEnrollmentGroup({ enrollmentGroupId: grp.id, attestation: symmetric(grp.key) });
    s.cleanup(`delete group ${grp.id}`, () => psc.deleteEnrollmentGroup(grp.id));
    expect(out.enrollmentGroupId === grp.id, `response ${JSON.stringify(out)}`);
  })) && ok;
  if (!ok) return s.finish();
  for (const id of [...Object.values(ind).map((e) => e.id), ...Object.values(members)]) {
    s.cleanup(`delete registration ${id}`, () => psc.deleteDeviceRegistrationState(id));
  }

  // --- registrations over each transport ---------------------------------------------------------------
  for (const [t, e] of Object.entries(ind)) {
    await s.step(`${t}: register individual ${e.id} -> assigned`,
      async () => expectAssigned(await register(t, e.id, e.key), e.deviceId || e.id));
  }
  for (const [t, m] of Object.entries(members)) {
    await s.step(`${t}: group device ${m} with derived key -> assigned`,
      async () => expectAssigned(await register(t, m, deriveGroupDeviceKey(grp.key, m)), m));
  }
  await s.step(`http: re-register ${ind.mqtt.id} (first registered over MQTT) -> assigned, same deviceId`,
    async () => expectAssigned(await register('http', ind.mqtt.id, ind.mqtt.key), ind.mqtt.deviceId, null));

  // --- negative cases -------------------------------------------------------------------------------------
  await s.step('http: wrong key -> 401', () => expectRejected('http', ind.http.id, randomKey(), [401]));
  await s.step('mqtt: wrong key -> 401', () => expectRejected('mqtt', ind.mqtt.id, randomKey(), [401]));
  await s.step('amqp: wrong key -> refused (amqp:unauthorized-access)', async () => {
    // fleethub checks the SASL PLAIN token when the registration's link attaches and refuses the link
    // with amqp:unauthorized-access; the SDK passes that AMQP error on untranslated.
    try {
      const st = await register('amqp', ind.amqp.id, randomKey());
      throw new Error(`registration was accepted: ${JSON.stringify(st)}`);
    } catch (e) {
      const cond = e && (e.condition || (e.amqpError && e.amqpError.condition));
      expect(cond === 'amqp:unauthorized-access' || statusOf(e) === 401 || (e && e.name === 'UnauthorizedError'),
        `got ${errorText(e)} (condition ${cond}), want amqp:unauthorized-access or 401`);
      return `rejected: ${cond || statusOf(e)}`;
    }
  });
  await s.step('http: group device with a key derived from another group key -> 401', () => {
    const id = uniqueId('node-gdev');
    return expectRejected('http', id, deriveGroupDeviceKey(randomKey(), id), [401]);
  });
  await s.step('http: disabled enrollment -> not assigned', () => expectRejected('http', off.id, off.key, null, true));
  await s.step('mqtt: disabled enrollment -> not assigned', () => expectRejected('mqtt', off.id, off.key, null, true));
  await s.step('amqp: disabled enrollment -> not assigned', () => expectRejected('amqp', off.id, off.key, null, true));
  await s.step('http: unknown registration id -> rejected', () => expectRejected('http', uniqueId('node-nobody'), randomKey(), [401, 404]));

  // --- registration records --------------------------------------------------------------------------------
  const record = async (id, deviceId) => {
    const { responseBody: st } = await psc.getDeviceRegistrationState(id);
    expect(st.registrationId === id, `registrationId ${st.registrationId}`);
    expect(st.status === 'assigned', `status ${st.status}`);
    expect(st.deviceId === deviceId, `deviceId ${st.deviceId}, want ${deviceId}`);
    expect((st.assignedHub || '').toLowerCase() === cfg.hubHost.toLowerCase(), `assignedHub ${st.assignedHub}`);
    expect(st.etag, 'no etag');
    return `status=${st.status} assignedHub=${st.assignedHub} etag=${st.etag}`;
  };
  await s.step(`getDeviceRegistrationState ${ind.http.id}`, () => record(ind.http.id, ind.http.id));
  await s.step(`getDeviceRegistrationState ${ind.mqtt.id} (deviceId from the enrollment)`, () => record(ind.mqtt.id, ind.mqtt.deviceId));
  await s.step(`getDeviceRegistrationState of group device ${members.http}`, () => record(members.http, members.http));

  await s.step(`createEnrollmentGroupDeviceRegistrationStateQuery ${grp.id}, page size 1 -> the ${Object.keys(members).length} group devices`, async () => {
    // next(q.continuationToken): the promise form of next() would not send the token (see dps_service.js)
    const q = psc.createEnrollmentGroupDeviceRegistrationStateQuery({ query: '*' }, grp.id, 1);
    const seen = [];
    let pages = 0;
    while (q.hasMoreResults) {
      const { responseBody } = await q.next(q.continuationToken);
      const items = Array.isArray(responseBody) ? responseBody : (responseBody && responseBody.items) || [];
      expect(items.length <= 1, `page with ${items.length} items with page size 1`);
      seen.push(...items.map((x) => x.registrationId));
      expect(++pages <= 100, 'more than 100 pages: continuation never ends?');
    }
    const want = Object.values(members);
    const missing = want.filter((m) => !seen.includes(m));
    expect(missing.length === 0, `missing ${missing} in ${seen}`);
    expect(!seen.includes(ind.http.id), `individual registration ${ind.http.id} listed under the group`);
    return `${pages} pages: ${seen.length} records`;
  }, 120000);

  await s.step(`deleteDeviceRegistrationState ${members.mqtt} -> then 404`, async () => {
    await psc.deleteDeviceRegistrationState(members.mqtt);
    try {
      const { responseBody } = await psc.getDeviceRegistrationState(members.mqtt);
      throw new Error(`still there: ${JSON.stringify(responseBody)}`);
    } catch (e) {
      if (statusOf(e) !== 404) throw e;
      return '404 after delete';
    }
  });
  return s.finish();
}

main().catch((e) => {
  console.log(`FAIL ${SUITE}: harness -- ${errorText(e)}`);
  process.exit(2);
});

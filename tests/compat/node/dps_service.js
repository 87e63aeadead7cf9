#!/usr/bin/env node
// DPS service API with the official Node service client azure-iot-provisioning-service 1.11.2
// (REST api-version 2021-10-01): individual enrollments and enrollment groups -- create, get, update
// with etag (stale etag -> 412), attestation mechanisms (getEnrollmentGroupAttestationMechanism uses
// the lower-case /enrollmentgroups/ path), generated keys, queries with page size 1 (x-ms-continuation
// must be absent on the last page or the SDK loops), bulk create/delete, deletes, 404s; cleanup.
// Run by scripts/test.sh; configuration in lib/harness.js.
'use strict';

const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { Config, Suite, expect, errorText, statusOf, randomKey, uniqueId } = require('./lib/harness');

const SUITE = 'node-dps-service';
const MAX_PAGES = 500;

function symmetric(primaryKey, secondaryKey) {
  return { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } };
}

async function expectStatus(fn, want) {
  let v;
  try {
    v = await fn();
  } catch (e) {
    const got = statusOf(e);
    expect(got === want, `want ${want}, got ${got}: ${errorText(e)}`);
    return String(got);
  }
  throw new Error(`want ${want}, the call succeeded: ${JSON.stringify(v && v.responseBody)}`);
}

// Query.next() without an argument (promise form) does not send the continuation token it holds
// (azure-iot-provisioning-service 1.11.2 query.js), so pass query.continuationToken explicitly.
async function pageThrough(query, wantedIds, idOf) {
  let pages = 0;
  const seen = [];
  while (query.hasMoreResults) {
    const { responseBody, httpResponse } = await query.next(query.continuationToken);
    pages++;
    const items = Array.isArray(responseBody) ? responseBody : (responseBody && responseBody.items) || [];
    expect(items.length <= 1, `page ${pages} has ${items.length} items with page size 1`);
    const ct = httpResponse.headers['x-ms-continuation'];
    expect(ct === undefined || ct !== '', 'empty x-ms-continuation header: the SDK would loop forever');
    seen.push(...items.map(idOf));
    expect(pages <= MAX_PAGES, `more than ${MAX_PAGES} pages: continuation never ends?`);
  }
  const missing = wantedIds.filter((w) => !seen.includes(w));
  expect(missing.length === 0, `missing ${missing} after ${pages} pages (seen ${seen.length})`);
  expect(pages >= wantedIds.length, `${pages} pages for ${wantedIds.length} items`);
  return `${pages} pages, ${seen.length} items`;
}

async function main() {
  const cfg = new Config(SUITE);
  const s = new Suite(SUITE);
  const psc = ProvisioningServiceClient.fromConnectionString(cfg.dpsServiceCs);

  // --- individual enrollment --------------------------------------------------------------------
  const regId = uniqueId('node-svc');
  const devId = uniqueId('node-svc-dev');
  const primary = randomKey();
  const secondary = randomKey();
  const state = {};

  const created = await s.step(`createOrUpdateIndividualEnrollment ${regId} (deviceId, initialTwin, iotEdge, reprovisionPolicy)`, async () => {
    const { responseBody: e } = await psc.createOrUpdateIndividualEnrollment({
      registrationId: regId,
      deviceId: devId,
      attestation: symmetric(primary, secondary),
      capabilities: { iotEdge: true },
      initialTwin: { tags: { site: 'lab-2' }, properties: { desired: { interval: 15 } } },
      reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false },
      provisioningStatus: 'enabled',
    });
    s.cleanup(`delete enrollment ${regId}`, () => psc.deleteIndividualEnrollment(regId));
    expect(e.registrationId === regId && e.deviceId === devId, `ids in response: ${e.registrationId} ${e.deviceId}`);
    expect(e.etag, 'no etag');
    state.etag = e.etag;
    return `etag=${e.etag}`;
  });
  if (!created) return s.finish();

  await s.step('getIndividualEnrollment: fields as created', async () => {
    const { responseBody: e, httpResponse } = await psc.getIndividualEnrollment(regId);
    expect(/application\/json/.test(httpResponse.headers['content-type'] || ''), `content-type ${httpResponse.headers['content-type']}`);
    expect(e.deviceId === devId, `deviceId ${e.deviceId}`);
    expect(e.capabilities && e.capabilities.iotEdge === true, `capabilities ${JSON.stringify(e.capabilities)}`);
    expect(e.initialTwin && e.initialTwin.tags && e.initialTwin.tags.site === 'lab-2', `initialTwin ${JSON.stringify(e.initialTwin)}`);
    expect(e.initialTwin.properties && e.initialTwin.properties.desired && e.initialTwin.properties.desired.interval === 15,
      `initialTwin.properties ${JSON.stringify(e.initialTwin.properties)}`);
    expect(e.reprovisionPolicy && e.reprovisionPolicy.migrateDeviceData === false, `reprovisionPolicy ${JSON.stringify(e.reprovisionPolicy)}`);
    expect(e.provisioningStatus === 'enabled', `provisioningStatus ${e.provisioningStatus}`);
    expect(e.attestation && e.attestation.type === 'symmetricKey', `attestation ${JSON.stringify(e.attestation)}`);
    expect(e.etag === state.etag, `etag ${e.etag}, create returned ${state.etag}`);
    expect(e.createdDateTimeUtc && e.lastUpdatedDateTimeUtc, 'createdDateTimeUtc / lastUpdatedDateTimeUtc missing');
  });

  await s.step('getIndividualEnrollmentAttestationMechanism: the keys', async () => {
    const { responseBody: am } = await psc.getIndividualEnrollmentAttestationMechanism(regId);
    expect(am.type === 'symmetricKey' && am.symmetricKey, `attestation ${JSON.stringify(am)}`);
    expect(am.symmetricKey.primaryKey === primary && am.symmetricKey.secondaryKey === secondary, 'keys differ from the ones created');
  });

  await s.step('update individual enrollment with its etag (If-Match) -> new etag', async () => {
    const { responseBody: e } = await psc.getIndividualEnrollment(regId);
    e.provisioningStatus = 'disabled';
    const { responseBody: out } = await psc.createOrUpdateIndividualEnrollment(e);
    expect(out.provisioningStatus === 'disabled', `provisioningStatus ${out.provisioningStatus}`);
    expect(out.etag && out.etag !== state.etag, `etag did not change (${out.etag})`);
    state.oldEtag = state.etag;
    state.etag = out.etag;
    return `etag ${state.oldEtag} -> ${out.etag}`;
  });

  await s.step('update individual enrollment with a stale etag -> 412', async () => {
    const { responseBody: e } = await psc.getIndividualEnrollment(regId);
    e.etag = state.oldEtag || '"stale"';
    e.provisioningStatus = 'enabled';
    return expectStatus(() => psc.createOrUpdateIndividualEnrollment(e), 412);
  });

  await s.step('deleteIndividualEnrollment with a wrong etag -> 412',
    () => expectStatus(() => psc.deleteIndividualEnrollment(regId, '"not-the-etag"'), 412));

  await s.step('create individual enrollment without keys -> keys generated', async () => {
    const genId = uniqueId('node-gen');
    await psc.createOrUpdateIndividualEnrollment({ registrationId: genId, attestation: { type: 'symmetricKey' } });
    s.cleanup(`delete enrollment ${genId}`, () => psc.deleteIndividualEnrollment(genId));
    const { responseBody: am } = await psc.getIndividualEnrollmentAttestationMechanism(genId);
    const sk = am.symmetricKey || {};
    for (const [name, k] of [['primary', sk.primaryKey], ['secondary', sk.secondaryKey]]) {
      expect(k, `no ${name} key generated`);
      const n = Buffer.from(k, 'base64').length;
      expect(n >= 16 && n <= 64, `${name} key is ${n} bytes`);
    }
    expect(sk.primaryKey !== sk.secondaryKey, 'primary == secondary');
  });

  await s.step('getIndividualEnrollment of an unknown id -> 404',
    () => expectStatus(() => psc.getIndividualEnrollment(uniqueId('node-none')), 404));
  await s.step('getDeviceRegistrationState of an unknown id -> 404',
    () => expectStatus(() => psc.getDeviceRegistrationState(uniqueId('node-none')), 404));

  // --- query, page size 1 ---------------------------------------------------------------------------
  const qIds = [uniqueId('node-q'), uniqueId('node-q'), uniqueId('node-q')];
  const qCreated = await s.step('create 3 more individual enrollments', async () => {
    for (const q of qIds) {
      await psc.createOrUpdateIndividualEnrollment({ registrationId: q, attestation: symmetric(randomKey(), randomKey()) });
      s.cleanup(`delete enrollment ${q}`, () => psc.deleteIndividualEnrollment(q));
    }
  });
  if (qCreated) {
    await s.step('createIndividualEnrollmentQuery page size 1 -> one item per page, continuation to the end, all found',
      () => pageThrough(psc.createIndividualEnrollmentQuery({ query: '*' }, 1), [...qIds, regId], (x) => x.registrationId), 120000);
  }

  // --- enrollment groups ------------------------------------------------------------------------------
  const grpIds = [uniqueId('node-sgrp'), uniqueId('node-sgrp')];
  const gkey = randomKey();
  const gCreated = await s.step('createOrUpdateEnrollmentGroup x2', async () => {
    for (const [i, g] of grpIds.entries()) {
      const { responseBody: out } = await psc.createOrUpdateEnrollmentGroup({
        enrollmentGroupId: g,
        attestation: symmetric(i === 0 ? gkey : randomKey(), randomKey()),
        initialTwin: { tags: { group: g } },
      });
      expect(out.enrollmentGroupId === g && out.etag, `response ${JSON.stringify(out)}`);
      s.cleanup(`delete group ${g}`, () => psc.deleteEnrollmentGroup(g));
    }
  });
  if (gCreated) {
    await s.step('getEnrollmentGroup', async () => {
      const { responseBody: g } = await psc.getEnrollmentGroup(grpIds[0]);
      expect(g.enrollmentGroupId === grpIds[0], `id ${g.enrollmentGroupId}`);
      expect(g.initialTwin && g.initialTwin.tags && g.initialTwin.tags.group === grpIds[0], `initialTwin ${JSON.stringify(g.initialTwin)}`);
      expect(g.provisioningStatus === 'enabled', `provisioningStatus ${g.provisioningStatus} (default is enabled)`);
    });
    await s.step('getEnrollmentGroupAttestationMechanism (POST /enrollmentgroups/{id}/attestationmechanism): the keys', async () => {
      const { responseBody: am } = await psc.getEnrollmentGroupAttestationMechanism(grpIds[0]);
      expect(am.symmetricKey && am.symmetricKey.primaryKey === gkey, `attestation ${JSON.stringify(am)}`);
    });
    await s.step('createEnrollmentGroupQuery page size 1 -> all found',
      () => pageThrough(psc.createEnrollmentGroupQuery({ query: '*' }, 1), grpIds, (x) => x.enrollmentGroupId), 120000);
    await s.step('deleteEnrollmentGroup -> then 404', async () => {
      await psc.deleteEnrollmentGroup(grpIds[1]);
      return expectStatus(() => psc.getEnrollmentGroup(grpIds[1]), 404);
    });
  }

  // --- bulk -----------------------------------------------------------------------------------------
  const bulkIds = [uniqueId('node-bulk'), uniqueId('node-bulk'), uniqueId('node-bulk')];
  const bulk = async (mode) => {
    const enrollments = bulkIds.map((b) => ({ registrationId: b, attestation: symmetric(randomKey(), randomKey()) }));
    // Callback form: the promise form of runBulkEnrollmentOperation (1.11.2) never settles (its inner
    // callback only forwards the result when a user callback was given).
    const r = await new Promise((resolve, reject) => psc.runBulkEnrollmentOperation({ mode, enrollments },
      (err, result) => (err ? reject(err) : resolve(result))));
    expect(r.isSuccessful === true, `isSuccessful=${r.isSuccessful} errors=${JSON.stringify(r.errors)}`);
  };
  if (await s.step('runBulkEnrollmentOperation create x3 -> isSuccessful', () => bulk('create'))) {
    for (const b of bulkIds) s.cleanup(`delete enrollment ${b}`, () => psc.deleteIndividualEnrollment(b));
    await s.step('bulk-created enrollments can be read', async () => {
      for (const b of bulkIds) await psc.getIndividualEnrollment(b);
    });
    await s.step('runBulkEnrollmentOperation delete x3 -> isSuccessful', () => bulk('delete'));
    await s.step('bulk-deleted enrollment -> 404', () => expectStatus(() => psc.getIndividualEnrollment(bulkIds[2]), 404));
  }

  await s.step('deleteIndividualEnrollment -> then 404', async () => {
    await psc.deleteIndividualEnrollment(regId);
    return expectStatus(() => psc.getIndividualEnrollment(regId), 404);
  });
  return s.finish();
}

main().catch((e) => {
  console.log(`FAIL ${SUITE}: harness -- ${errorText(e)}`);
  process.exit(2);
});

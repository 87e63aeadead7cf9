#!/usr/bin/env node
// IoT Hub device API over HTTPS with the official Node device SDK: azure-iot-device 1.18.4 with
// azure-iot-device-http 1.14.4 (the release that pins azure-iot-device 1.18.4 / azure-iot-common 1.13.3).
// sendEvent (iothub-* headers), sendEventBatch (application/vnd.microsoft.iothub.json), both read back
// from fleethub's GET /messages/events; C2D messages queued through fleethub's REST API and received by
// the SDK's polling receiver (GET /devices/{id}/messages/devicebound, lock token = ETag), then complete
// (DELETE), reject (DELETE ...&reject), abandon (POST .../abandon -> delivered again); a second complete
// of a used lock token fails (412); the queue ends empty (purge finds 0); cloudToDeviceMessageCount counts
// queued messages. Wrong key -> 401.
// Run by scripts/test.sh; configuration in lib/harness.js; gap ids in tests/compat/known-gaps.txt.
'use strict';

const fs = require('fs');
const { Client, Message } = require('azure-iot-device');
const { Http } = require('azure-iot-device-http');
const { Registry } = require('azure-iothub');
const { Config, Suite, expect, errorText, statusOf, randomKey, uniqueId, withTimeout } = require('./lib/harness');
const { EventReader, queueC2d, purgeC2d, deviceConnectionString } = require('./lib/hub');

const SUITE = 'node-hub-device-http';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const cfg = new Config(SUITE);
  const s = new Suite(SUITE);
  const ca = fs.readFileSync(cfg.caPath, 'utf8');
  const registry = Registry.fromConnectionString(cfg.hubServiceCs);
  const events = new EventReader(cfg, 'compat');
  const runId = uniqueId('run');
  const dev = uniqueId('node-http');

  const key = await s.step(`registry.create ${dev}`, async () => {
    const { responseBody: d } = await registry.create({ deviceId: dev });
    s.cleanup(`delete device ${dev}`, () => registry.delete(dev));
    return { detail: '', key: d.authentication.symmetricKey.primaryKey };
  });
  if (!key) return s.finish();

  const client = Client.fromConnectionString(deviceConnectionString(cfg.hubHost, dev, key.key), Http);
  client.on('error', (e) => console.log(`WARN ${SUITE}: client error event -- ${errorText(e)}`));
  s.cleanup('close client', () => client.close());
  // azure-iot-device-http 1.14.4: Http.setOptions() calls back only when the options carry a receive policy
  // (http.receivePolicy or interval/at/cron/manualPolling/drain); setOptions({ca}) alone never settles.
  const httpOptions = { ca, http: { receivePolicy: { interval: 1 } } };
  const opened = await s.step('Client.fromConnectionString(Http) + setOptions({ca, receive interval 1 s}) + open', async () => {
    await client.setOptions(httpOptions);
    await client.open();
  });
  if (!opened) return s.finish();

  // --- telemetry -----------------------------------------------------------------------------------------
  await s.step('sendEvent (iothub-messageid, iothub-correlationid, iothub-contenttype, iothub-app-*) -> stored with them', async () => {
    const m = new Message(JSON.stringify({ over: 'http', run: runId }));
    m.messageId = `${dev}-m1`;
    m.correlationId = `${dev}-c1`;
    m.contentType = 'application/json';
    m.contentEncoding = 'utf-8';
    m.properties.add('compat-run', runId);
    m.properties.add('level', 'warn');
    await client.sendEvent(m);
    const [e] = await events.waitFor((x) => x.deviceId === dev && x.systemProperties && x.systemProperties['message-id'] === `${dev}-m1`);
    expect(e.properties['compat-run'] === runId && e.properties.level === 'warn', `properties ${JSON.stringify(e.properties)}`);
    expect(e.systemProperties['correlation-id'] === `${dev}-c1`, `correlation-id ${e.systemProperties['correlation-id']}`);
    expect(e.systemProperties['content-type'] === 'application/json', `content-type ${e.systemProperties['content-type']}`);
    expect(e.systemProperties['content-encoding'] === 'utf-8', `content-encoding ${e.systemProperties['content-encoding']}`);
    expect(JSON.parse(e.body).run === runId, `body ${e.body}`);
    return `sequenceNumber=${e.sequenceNumber}`;
  }, { gap: 'http-telemetry' });

  await s.step('sendEventBatch x3 (application/vnd.microsoft.iothub.json, base64 bodies) -> 3 stored messages with their properties', async () => {
    const msgs = [1, 2, 3].map((i) => {
      const m = new Message(`batch item ${i} ${runId}`);
      m.properties.add('compat-run', runId);
      m.properties.add('item', String(i));
      return m;
    });
    await client.sendEventBatch(msgs);
    const found = await events.waitFor((x) => x.deviceId === dev && x.properties && x.properties['compat-run'] === runId && x.properties.item, 3);
    const items = found.map((x) => x.properties.item).sort();
    expect(JSON.stringify(items) === '["1","2","3"]', `items ${JSON.stringify(items)}`);
    for (const x of found) expect(x.body === `batch item ${x.properties.item} ${runId}`, `body ${JSON.stringify(x.body)} (base64 not decoded?)`);
    return `sequenceNumbers ${found.map((x) => x.sequenceNumber).join(',')}`;
  }, { gap: 'http-telemetry-batch' });

  // --- C2D -----------------------------------------------------------------------------------------------
  const ids = { complete: `${dev}-complete`, reject: `${dev}-reject`, abandon: `${dev}-abandon` };
  const received = [];
  const queued = await s.step('queue 3 C2D messages via REST (complete / reject / abandon)', async () => {
    for (const [what, messageId] of Object.entries(ids)) {
      await queueC2d(cfg, dev, { body: `c2d ${what}`, messageId, correlationId: `corr-${what}`, properties: { action: what } });
    }
  }, { gap: 'http-c2d' });
  if (!queued) return s.finish();
  await s.step('registry.get: cloudToDeviceMessageCount = 3 queued messages', async () => {
    const { responseBody: d } = await registry.get(dev);
    expect(Number(d.cloudToDeviceMessageCount) === 3, `cloudToDeviceMessageCount ${d.cloudToDeviceMessageCount}, want 3`);
  }, { gap: 'c2d-message-count' });

  const waitReceived = (pred, what, timeoutMs = 20000) => withTimeout((async () => {
    for (;;) {
      const m = received.find(pred);
      if (m) return m;
      await sleep(100);
    }
  })(), timeoutMs, what);

  const first = await s.step("'message' listener (the SDK polls every second) receives the 3 messages with their properties", async () => {
    client.on('message', (m) => received.push(m));
    const got = {};
    for (const [what, messageId] of Object.entries(ids)) {
      const m = await waitReceived((x) => x.messageId === messageId, `C2D ${messageId}`);
      expect(m.data.toString() === `c2d ${what}`, `body ${m.data.toString()}`);
      expect(m.correlationId === `corr-${what}`, `correlationId ${m.correlationId}`);
      // azure-iot-http-base keeps the header name: the property is 'iothub-app-action', not 'action'
      expect(m.properties.getValue('iothub-app-action') === what, `property iothub-app-action=${m.properties.getValue('iothub-app-action')}`);
      expect(m.lockToken, 'no lockToken (ETag header)');
      got[what] = m;
    }
    return { detail: `lock tokens ${Object.values(got).map((m) => m.lockToken).join(', ')}`, got };
  }, { gap: 'http-c2d', timeoutMs: 45000 });
  if (!first) return s.finish();

  await s.step('complete -> MessageCompleted; completing the same lock again fails (412)', async () => {
    const m = first.got.complete;
    await client.complete(m);
    try {
      await client.complete(m);
    } catch (e) {
      expect(statusOf(e) === 412, `second complete: ${errorText(e)}, want HTTP 412`);
      return `second complete: ${e.name} (412)`;
    }
    throw new Error('the second complete of the same lock token succeeded');
  }, { gap: 'http-c2d' });
  await s.step('reject (DELETE ...?api-version=...&reject) -> MessageRejected, not delivered again', async () => {
    await client.reject(first.got.reject);
  }, { gap: 'http-c2d' });
  await s.step('abandon (POST .../abandon) -> the message is delivered again; complete it', async () => {
    const m = first.got.abandon;
    const before = received.length;
    await client.abandon(m);
    const again = await waitReceived((x) => received.indexOf(x) >= before && x.messageId === ids.abandon, 'redelivery after abandon');
    expect(again.lockToken && again.lockToken !== m.lockToken, `new lock token ${again.lockToken} (was ${m.lockToken})`);
    await client.complete(again);
    return `redelivered with lock token ${again.lockToken}`;
  }, { gap: 'http-c2d', timeoutMs: 45000 });
  await s.step('queue empty: nothing else received, nothing left to purge (DELETE /devices/{id}/commands)', async () => {
    await sleep(2500); // two more polls of the receiver
    const counts = {};
    for (const m of received) counts[m.messageId] = (counts[m.messageId] || 0) + 1;
    expect(counts[ids.complete] === 1 && counts[ids.reject] === 1 && counts[ids.abandon] === 2, `deliveries ${JSON.stringify(counts)}`);
    const purged = await purgeC2d(cfg, dev);
    expect(purged === 0, `${purged} message(s) were still queued`);
    return `deliveries ${JSON.stringify(counts)}`;
  }, { gap: 'http-c2d' });

  await s.step('sendEvent with a wrong key -> UnauthorizedError (401)', async () => {
    const bad = Client.fromConnectionString(deviceConnectionString(cfg.hubHost, dev, randomKey()), Http);
    await bad.setOptions(httpOptions);
    try {
      await bad.sendEvent(new Message('nope'));
    } catch (e) {
      expect(statusOf(e) === 401 || e.name === 'UnauthorizedError', `got ${errorText(e)}`);
      return `${e.name}`;
    } finally {
      bad.close().catch(() => {});
    }
    throw new Error('accepted with a wrong key');
  }, { gap: 'http-auth' });

  await client.close().catch(() => {});
  return s.finish();
}

main().catch((e) => {
  console.log(`FAIL ${SUITE}: harness -- ${errorText(e)}`);
  process.exit(2);
});

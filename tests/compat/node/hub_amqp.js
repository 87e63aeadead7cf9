#!/usr/bin/env node
// The hub's AMQP service plane with the official Node SDKs:
// - @azure/event-hubs 6.0.4 EventHubConsumerClient on the Event Hubs-compatible endpoint: properties of
//   the event hub and a partition, subscribe from the earliest position on every partition -> the
//   telemetry an azure-iot-device-mqtt 1.16.4 device sent, with IoT Hub's annotations and properties;
// - the redirect IoT Explorer and the Azure CLI use (azure-sdk-for-js sample iothubConnectionString):
//   with only the hub's service connection string, rhea-promise 3.0.3 connects to {hub}:5671 with SASL
//   PLAIN ({policy}@sas.root.{hubName}, a SAS token), attaches a receiver to
//   amqps://{hub}/messages/events/$management and is detached with amqp:link:redirect; the info names
//   hostname, port and address (amqps://{host}:{port}/{eventHub}/$management), from which an Event Hubs
//   connection string is built and the events are read;
// - azure-iothub 1.16.6 Client.send (AMQP, /messages/devicebound) with ack=full: the device receives
//   and completes the message, getFeedbackReceiver delivers a Success record in Azure's JSON shape; a
//   device that does not exist -> DeviceNotFoundError.
// Run by scripts/test.sh; configuration in lib/harness.js. The Event Hubs connection string is
// FLEETHUB_EVENTHUB_CS when set, else built from the hub's service connection string.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { EventHubConsumerClient, earliestEventPosition } = require('@azure/event-hubs');
const { Connection, ReceiverEvents } = require('rhea-promise');
const { Client: ServiceClient, Registry } = require('azure-iothub');
const { Message: ServiceMessage } = require('azure-iot-common');
const { Client: DeviceClient, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Config, Suite, expect, errorText, parseConnectionString, uniqueId } = require('./lib/harness');
const { deviceConnectionString } = require('./lib/hub');

const SUITE = 'node-hub-amqp';
const COUNT = 3;

function eventHubCs(cfg) {
  if (process.env.FLEETHUB_EVENTHUB_CS) return process.env.FLEETHUB_EVENTHUB_CS;
  const p = parseConnectionString(cfg.hubServiceCs);
  return `Endpoint=sb://${cfg.hubHost}/;SharedAccessKeyName=${p.SharedAccessKeyName};` +
    `SharedAccessKey=${p.SharedAccessKey};EntityPath=${cfg.hubHost.split('.')[0]}`;
}

/** A SAS token as the azure-sdk-for-js iothubConnectionString sample makes it. */
function sasToken(resourceUri, keyName, key, ttlSecs) {
  const expiry = Math.floor(Date.now() / 1000) + ttlSecs;
  const toSign = `${encodeURIComponent(resourceUri)}\n${expiry}`;
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(toSign).digest('base64');
  return `SharedAccessSignature sr=${encodeURIComponent(resourceUri)}&sig=${encodeURIComponent(sig)}` +
    `&se=${expiry}&skn=${keyName}`;
}

/** Reads every partition from the earliest event until `want(events)` holds (or the time is up). */
async function readEvents(cs, want, ms = 30000) {
  const client = new EventHubConsumerClient('$Default', cs);
  const events = [];
  const errors = [];
  const sub = client.subscribe({
    processEvents: async (evs, ctx) => { for (const e of evs) events.push([ctx.partitionId, e]); },
    processError: async (err) => { errors.push(err); },
  }, { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 });
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && !want(events)) await new Promise((r) => setTimeout(r, 200));
  await sub.close();
  await client.close();
  return { events, errors };
}

async function main() {
  const cfg = new Config(SUITE);
  const s = new Suite(SUITE);
  const registry = Registry.fromConnectionString(cfg.hubServiceCs);
  const ca = fs.readFileSync(cfg.caPath, 'utf8');
  const dev = uniqueId('node-amqp');
  const tag = uniqueId('tag');
  let device = null;

  const created = await s.step(`create ${dev}`, async () => {
    const { responseBody: d } = await registry.create({ deviceId: dev });
    s.cleanup(`delete device ${dev}`, () => registry.delete(dev));
    return { detail: '', key: d.authentication.symmetricKey.primaryKey };
  });
  if (!created) return s.finish();
  const key = created.key;

  await s.step(`device sends ${COUNT} messages (MQTT)`, async () => {
    device = DeviceClient.fromConnectionString(deviceConnectionString(cfg.hubHost, dev, key), Mqtt);
    await device.setOptions({ ca });
    await device.open();
    s.cleanup(`close ${dev}`, () => device.close());
    for (let i = 0; i < COUNT; i++) {
      const m = new Message(JSON.stringify({ tag, i }));
      m.contentType = 'application/json';
      m.contentEncoding = 'utf-8';
      m.properties.add('tag', tag);
      await device.sendEvent(m);
    }
  });

  const ours = (events) => events.filter(([, e]) => e.body && e.body.tag === tag);

  await s.step('EventHubConsumerClient: getEventHubProperties + getPartitionProperties', async () => {
    const client = new EventHubConsumerClient('$Default', eventHubCs(cfg));
    try {
      const p = await client.getEventHubProperties();
      expect(p.name === cfg.hubHost.split('.')[0], `name ${p.name}`);
      expect(p.partitionIds.length >= 1, `partitionIds ${p.partitionIds}`);
      const pp = await client.getPartitionProperties(p.partitionIds[0]);
      expect(pp.partitionId === p.partitionIds[0] && typeof pp.lastEnqueuedSequenceNumber === 'number',
        `partition properties ${JSON.stringify(pp)}`);
      return `name=${p.name} partitions=${p.partitionIds.join(',')}`;
    } finally {
      await client.close();
    }
  });

  await s.step('EventHubConsumerClient.subscribe from the earliest position of every partition', async () => {
    const { events, errors } = await readEvents(eventHubCs(cfg), (evs) => ours(evs).length >= COUNT);
    const got = ours(events);
    expect(got.length === COUNT, `got ${got.length} of ${COUNT} (errors: ${errors.map((e) => errorText(e)).join('; ')})`);
    expect(got.map(([, e]) => e.body.i).join(',') === '0,1,2', `order ${got.map(([, e]) => e.body.i)}`);
    const e = got[0][1];
    expect(e.systemProperties['iothub-connection-device-id'] === dev, `device id ${JSON.stringify(e.systemProperties)}`);
    expect(e.properties.tag === tag, `properties ${JSON.stringify(e.properties)}`);
    expect(e.contentType === 'application/json', `content type ${e.contentType}`);
    expect(typeof e.sequenceNumber === 'number' && e.enqueuedTimeUtc instanceof Date, 'sequence number / time');
    return `partition ${got[0][0]}, sequence numbers ${got.map(([, x]) => x.sequenceNumber).join(',')}`;
  });

  const redirected = await s.step('redirect: messages/events/$management on the hub -> amqp:link:redirect with the endpoint', async () => {
    const p = parseConnectionString(cfg.hubServiceCs);
    const hubName = cfg.hubHost.split('.')[0];
    const connection = new Connection({
      transport: 'tls',
      host: cfg.hubHost,
      hostname: cfg.hubHost,
      port: 5671,
      username: `${p.SharedAccessKeyName}@sas.root.${hubName}`,
      password: sasToken(`${cfg.hubHost}/messages/events`, p.SharedAccessKeyName, p.SharedAccessKey, 300),
      ca,
      reconnect: false,
    });
    await connection.open();
    try {
      // As the sample does: the link attaches, then the hub detaches it with the redirect.
      const receiver = await connection.createReceiver({
        source: { address: `amqps://${cfg.hubHost}/messages/events/$management` },
      });
      const e = await new Promise((resolve, reject) => {
        receiver.on(ReceiverEvents.receiverError, (context) => resolve(context.receiver && context.receiver.error));
        setTimeout(() => reject(new Error('no receiver_error within 10 s: no redirect')), 10000);
      });
      expect(e && e.condition === 'amqp:link:redirect', `got ${errorText(e)} condition ${e && e.condition}`);
      const info = e.info || {};
      // The sample's pattern (and IoT Explorer's) needs the ':5671/' in the address.
      const m = /:(\d+)\/(.*)\/\$management/i.exec(info.address || '');
      expect(m && info.hostname && Number(info.port) === Number(m[1]), `redirect info ${JSON.stringify(info)}`);
      const cs = `Endpoint=sb://${info.hostname}/;SharedAccessKeyName=${p.SharedAccessKeyName};` +
        `SharedAccessKey=${p.SharedAccessKey};EntityPath=${m[2]}`;
      return { detail: `hostname=${info.hostname} port=${info.port} address=${info.address}`, cs };
    } finally {
      await connection.close();
    }
  });

  if (redirected) {
    await s.step('redirect: the built Event Hubs connection string reads the events', async () => {
      const { events } = await readEvents(redirected.cs, (evs) => ours(evs).length >= COUNT);
      expect(ours(events).length === COUNT, `got ${ours(events).length} of ${COUNT}`);
      return `${COUNT} events`;
    });
  } else {
    s.skip('redirect: the built Event Hubs connection string reads the events', 'no redirect');
  }

  const service = ServiceClient.fromConnectionString(cfg.hubServiceCs);
  await s.step('azure-iothub Client.open (AMQP) + getFeedbackReceiver', async () => {
    await service.open();
    s.cleanup('close the service client', () => service.close());
  });

  await s.step('Client.send with ack=full -> the device receives and completes it -> feedback Success', async () => {
    const received = new Promise((resolve) => device.on('message', (msg) => device.complete(msg, () => resolve(msg))));
    const fb = await service.getFeedbackReceiver();
    const receiver = fb.on ? fb : fb.responseObj || fb.result;
    // Feedback is hub-wide: batches may hold other senders' records first.
    const m = new ServiceMessage('hello over amqp');
    m.messageId = uniqueId('c2d');
    const feedback = new Promise((resolve) => receiver.on('message', (f) => {
      const records = JSON.parse(f.data.toString());
      if (records.some((x) => x.originalMessageId === m.messageId)) resolve(records);
    }));
    m.ack = 'full';
    m.properties.add('colour', 'blue');
    await service.send(dev, m);
    const got = await received;
    expect(got.messageId === m.messageId && got.data.toString() === 'hello over amqp', `device got ${got.messageId}`);
    expect(got.properties.getValue('colour') === 'blue', 'properties');
    const records = await feedback;
    const r = records.find((x) => x.originalMessageId === m.messageId);
    expect(r && r.statusCode === 'Success' && r.deviceId === dev && r.enqueuedTimeUtc,
      `feedback ${JSON.stringify(records)}`);
    return `feedback ${JSON.stringify(r)}`;
  });

  await s.step('Client.send to a device that does not exist -> DeviceNotFoundError', async () => {
    try {
      await service.send(uniqueId('nobody'), new ServiceMessage('x'));
    } catch (e) {
      expect(e.name === 'DeviceNotFoundError' || (e.constructor && e.constructor.name === 'DeviceNotFoundError'),
        `got ${errorText(e)}`);
      return errorText(e, 120);
    }
    throw new Error('accepted');
  });

  await s.finish();
}

main().catch((e) => {
  console.log(`FAIL ${SUITE}: unexpected -- ${errorText(e)}`);
  process.exit(1);
});

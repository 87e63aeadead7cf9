#!/usr/bin/env node
// IoT Hub device API over AMQP with the official Node device SDK: azure-iot-device 1.18.4 with
// azure-iot-device-amqp 1.14.4, transports Amqp (5671) and AmqpWs (443, /$iothub/websocket, subprotocol
// AMQPWSB10). For each transport, a device made with azure-iothub's Registry: Client.fromConnectionString,
// setOptions({ca}), open ($cbs put-token; the service sees connectionState Connected), sendEvent with
// properties and system properties (read back from fleethub's GET /messages/events), getTwin + reported
// update (seen by the service), twin 'properties.desired' for a service-side desired patch, onDeviceMethod
// answered to azure-iothub Client.invokeDeviceMethod, C2D queued through fleethub's REST API received as
// 'message' and completed, abandoned (delivered again) and rejected (nothing left queued), close
// (Disconnected). Wrong key -> UnauthorizedError. A module client over AMQP: sendEvent + getTwin + reported
// update. Run by scripts/test.sh; configuration in lib/harness.js; gap ids in tests/compat/known-gaps.txt.
'use strict';

const fs = require('fs');
const { Client, ModuleClient, Message } = require('azure-iot-device');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');
const { Registry, Client: ServiceClient } = require('azure-iothub');
const { Config, Suite, expect, errorText, statusOf, randomKey, uniqueId, withTimeout } = require('./lib/harness');
const { EventReader, queueC2d, purgeC2d, deviceConnectionString, waitForEvent } = require('./lib/hub');

const SUITE = 'node-hub-device-amqp';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function poll(what, fn, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last.ok) return last;
    if (Date.now() > deadline) throw new Error(`${what}: ${last.why} after ${timeoutMs / 1000}s`);
    await sleep(300);
  }
}

/** The settle callbacks of azure-iot-device as promises. */
const settle = (client, how, m) => new Promise((resolve, reject) => client[how](m, (err) => (err ? reject(err) : resolve())));

async function main() {
  const cfg = new Config(SUITE);
  const s = new Suite(SUITE);
  const ca = fs.readFileSync(cfg.caPath, 'utf8');
  const registry = Registry.fromConnectionString(cfg.hubServiceCs);
  const service = ServiceClient.fromConnectionString(cfg.hubServiceCs);
  const events = new EventReader(cfg);
  const runId = uniqueId('run');

  const createDevice = async (id) => {
    const { responseBody: d } = await registry.create({ deviceId: id });
    s.cleanup(`delete device ${id}`, () => registry.delete(id));
    return d.authentication.symmetricKey.primaryKey;
  };
  const waitState = (id, want) => poll(`connectionState of ${id}`, async () => {
    const { responseBody: d } = await registry.get(id);
    return { ok: d.connectionState === want, why: `still ${d.connectionState}, want ${want}`, device: d };
  });

  for (const [t, Transport] of [['amqp', Amqp], ['amqp-ws', AmqpWs]]) {
    const dev = uniqueId(`node-${t}`);
    const key = await s.step(`${t}: registry.create ${dev}`, () => createDevice(dev).then((k) => ({ detail: '', key: k })));
    if (!key) continue;
    const client = Client.fromConnectionString(deviceConnectionString(cfg.hubHost, dev, key.key), Transport);
    client.on('error', (e) => console.log(`WARN ${SUITE}: ${t} client error event -- ${errorText(e)}`));
    s.cleanup(`${t}: close client`, () => client.close());

    const opened = await s.step(`${t}: Client.fromConnectionString + setOptions({ca}) + open -> service sees Connected`, async () => {
      await client.setOptions({ ca });
      await client.open();
      const r = await waitState(dev, 'Connected');
      return `connectionState=${r.device.connectionState}`;
    }, { gap: `${t}-connect` });
    if (!opened) {
      s.skip(`${t}: telemetry, twin, methods, C2D`, 'open failed');
      continue;
    }

    // telemetry ------------------------------------------------------------------------------------------
    const body = { temperature: 21.5, transport: t, run: runId };
    const mid = `${dev}-m1`;
    await s.step(`${t}: sendEvent (messageId, correlationId, JSON content type/encoding, custom properties) -> stored with them`, async () => {
      const m = new Message(JSON.stringify(body));
      m.messageId = mid;
      m.correlationId = `${dev}-c1`;
      m.contentType = 'application/json';
      m.contentEncoding = 'utf-8';
      m.properties.add('compat-run', runId);
      m.properties.add('unit type', 'deg/C & more=1');
      await client.sendEvent(m);
      const [e] = await events.waitFor((x) => x.deviceId === dev && x.systemProperties && x.systemProperties['message-id'] === mid);
      const sp = e.systemProperties;
      expect(e.properties['compat-run'] === runId, `properties ${JSON.stringify(e.properties)}`);
      expect(e.properties['unit type'] === 'deg/C & more=1', `property 'unit type' = ${JSON.stringify(e.properties['unit type'])}`);
      expect(sp['correlation-id'] === `${dev}-c1`, `correlation-id ${sp['correlation-id']}`);
      expect(sp['content-type'] === 'application/json', `content-type ${sp['content-type']}`);
      expect(sp['content-encoding'] === 'utf-8', `content-encoding ${sp['content-encoding']}`);
      expect(sp['iothub-connection-device-id'] === dev, `iothub-connection-device-id ${sp['iothub-connection-device-id']}`);
      expect(!e.moduleId, `moduleId ${e.moduleId} on a device message`);
      expect(JSON.stringify(JSON.parse(e.body)) === JSON.stringify(body), `body ${e.body}`);
      return `sequenceNumber=${e.sequenceNumber}`;
    }, { gap: `${t}-telemetry` });

    // twin -----------------------------------------------------------------------------------------------
    const twin = await s.step(`${t}: getTwin`, async () => {
      const tw = await client.getTwin();
      expect(tw.properties && tw.properties.desired && typeof tw.properties.desired.$version === 'number',
        `desired ${JSON.stringify(tw.properties && tw.properties.desired)}`);
      expect(tw.properties.reported && typeof tw.properties.reported.update === 'function', 'no reported.update');
      return { detail: `desired.$version=${tw.properties.desired.$version}`, twin: tw };
    }, { gap: `${t}-twin` });
    if (twin) {
      await s.step(`${t}: twin.properties.reported.update -> service getTwin shows it`, async () => {
        await new Promise((resolve, reject) => twin.twin.properties.reported.update(
          { firmware: '1.2.3', transport: t, nested: { a: 1, b: 'x' } }, (err) => (err ? reject(err) : resolve())));
        const r = await poll('reported properties', async () => {
          const { responseBody: st } = await registry.getTwin(dev);
          const rep = st.properties.reported;
          return { ok: rep.firmware === '1.2.3' && rep.nested && rep.nested.b === 'x', why: `reported ${JSON.stringify(rep)}`, rep };
        }, 10000);
        return `reported.$version=${r.rep.$version}`;
      }, { gap: `${t}-twin` });
      await s.step(`${t}: twin.on('properties.desired') receives a desired patch made with registry.updateTwin`, async () => {
        const first = waitForEvent(twin.twin, 'properties.desired', null, 20000, 'first properties.desired event');
        await first;
        // The SDK enables desired notifications in the background (PUT on the twin link): patch again,
        // with a new value each time, until one arrives (at most 20 s).
        const deadline = Date.now() + 20000;
        let attempt = 0;
        for (;;) {
          attempt++;
          const setting = `${runId}-${attempt}`;
          const got = waitForEvent(twin.twin, 'properties.desired', (d) => d && d.setting === setting, 3000, 'desired patch');
          const { responseBody: st } = await registry.updateTwin(dev, { properties: { desired: { setting, speed: 3 } } }, '*');
          try {
            const [d] = await got;
            expect(d.speed === 3, `patch ${JSON.stringify(d)}`);
            expect(d.$version === st.properties.desired.$version, `patch $version ${d.$version}, service says ${st.properties.desired.$version}`);
            return `$version=${d.$version} after ${attempt} patch(es)`;
          } catch (e) {
            if (Date.now() > deadline) throw e;
          }
        }
      }, { gap: `${t}-twin` });
    }

    // methods --------------------------------------------------------------------------------------------
    await s.step(`${t}: onDeviceMethod 'reboot' answered; azure-iothub Client.invokeDeviceMethod -> status 200 + payload`, async () => {
      const seen = [];
      client.onDeviceMethod('reboot', (req, res) => {
        seen.push(req.payload);
        res.send(200, { ok: true, echo: req.payload, transport: t }, (err) => {
          if (err) console.log(`WARN ${SUITE}: ${t} method response -- ${errorText(err)}`);
        });
      });
      // onDeviceMethod attaches the method links in the background: retry while the hub answers
      // "device not online/not subscribed" for a few seconds.
      let result;
      let attempts = 0;
      let firstError = '';
      for (;;) {
        attempts++;
        try {
          ({ result } = await service.invokeDeviceMethod(dev, { methodName: 'reboot', payload: { delay: 1, run: runId }, responseTimeoutInSeconds: 15 }));
          break;
        } catch (e) {
          if (attempts >= 5) throw e;
          if (!firstError) firstError = ` (first: ${e.name} HTTP ${statusOf(e)})`;
          await sleep(1000);
        }
      }
      expect(result.status === 200, `status ${result.status}`);
      expect(result.payload && result.payload.ok === true && result.payload.echo && result.payload.echo.run === runId,
        `payload ${JSON.stringify(result.payload)}`);
      expect(seen.length >= 1 && seen[0].delay === 1, `device saw ${JSON.stringify(seen)}`);
      return `status=200 after ${attempts} attempt(s)${firstError}`;
    }, { gap: `${t}-methods` });
    await s.step(`${t}: invokeDeviceMethod of a method the device does not handle -> an error status`, async () => {
      try {
        const { result } = await service.invokeDeviceMethod(dev, { methodName: 'nosuch', payload: null, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 0 });
        throw new Error(`invoke succeeded: ${JSON.stringify(result)}`);
      } catch (e) {
        const st = statusOf(e);
        expect(st === 504 || st === 404, `got ${errorText(e)}, want 504 (timeout) or 404`);
        return `${e.name} (HTTP ${st})`;
      }
    }, { gap: `${t}-methods`, timeoutMs: 30000 });

    // C2D ------------------------------------------------------------------------------------------------
    // The SDK attaches its C2D link while a 'message' listener exists and detaches it when the last one
    // goes (settling then fails with "No active C2D link"): one listener stays for both steps, as in an app.
    const keep = () => {};
    client.on('message', keep);
    await s.step(`${t}: C2D queued via REST -> 'message' with body, messageId, correlationId, properties; complete -> nothing left to purge`, async () => {
      const got = waitForEvent(client, 'message', (m) => m.messageId === `${dev}-c2d`, 30000, 'C2D message');
      const q = await queueC2d(cfg, dev, {
        body: `hello ${t}`, messageId: `${dev}-c2d`, correlationId: 'corr-1', contentType: 'text/plain',
        properties: { color: 'blue', 'with space': 'a/b&c=d' },
      });
      const [m] = await got;
      expect(m.data.toString() === `hello ${t}`, `body ${m.data.toString()}`);
      expect(m.correlationId === 'corr-1', `correlationId ${m.correlationId}`);
      expect(m.properties.getValue('color') === 'blue', `color ${m.properties.getValue('color')}`);
      expect(m.properties.getValue('with space') === 'a/b&c=d', `'with space' = ${m.properties.getValue('with space')}`);
      await settle(client, 'complete', m);
      await sleep(1000);
      const purged = await purgeC2d(cfg, dev);
      expect(purged === 0, `${purged} message(s) still queued after complete (purged them)`);
      return `sequenceNumber=${q.sequenceNumber}, completed, queue empty`;
    }, { gap: `${t}-c2d`, timeoutMs: 45000 });
    await s.step(`${t}: C2D abandon -> delivered again; reject -> nothing left to purge`, async () => {
      const id = `${dev}-c2d-2`;
      const first = waitForEvent(client, 'message', (m) => m.messageId === id, 30000, 'C2D message');
      await queueC2d(cfg, dev, { body: 'again', messageId: id });
      const [m1] = await first;
      const second = waitForEvent(client, 'message', (m) => m.messageId === id, 30000, 'the abandoned C2D message');
      await settle(client, 'abandon', m1);
      const [m2] = await second;
      expect(m2.data.toString() === 'again', `body ${m2.data.toString()}`);
      await settle(client, 'reject', m2);
      await sleep(1000);
      const purged = await purgeC2d(cfg, dev);
      expect(purged === 0, `${purged} message(s) still queued after reject (purged them)`);
      return 'abandoned, delivered again, rejected, queue empty';
    }, { gap: `${t}-c2d`, timeoutMs: 45000 });

    client.removeListener('message', keep);

    await s.step(`${t}: close -> service sees Disconnected`, async () => {
      await client.close();
      const r = await waitState(dev, 'Disconnected');
      return `connectionState=${r.device.connectionState}`;
    }, { gap: `${t}-connect` });
  }

  // --- wrong key ---------------------------------------------------------------------------------------------
  await s.step('amqp: open with a wrong key -> UnauthorizedError', async () => {
    const dev = uniqueId('node-amqp-badkey');
    await createDevice(dev);
    const c = Client.fromConnectionString(deviceConnectionString(cfg.hubHost, dev, randomKey()), Amqp);
    await c.setOptions({ ca });
    try {
      await withTimeout(c.open(), 30000, 'open');
    } catch (e) {
      expect(e.name === 'UnauthorizedError' || statusOf(e) === 401, `got ${errorText(e)}, want UnauthorizedError`);
      return e.name;
    } finally {
      c.close().catch(() => {});
    }
    throw new Error('open succeeded with a wrong key');
  }, { gap: 'amqp-auth' });

  // --- module client -------------------------------------------------------------------------------------------
  const mdev = uniqueId('node-amqp-mdev');
  const mod = uniqueId('node-mod');
  const mkey = await s.step(`registry: create ${mdev} + addModule ${mod}`, async () => {
    await createDevice(mdev);
    const { responseBody: m } = await registry.addModule({ deviceId: mdev, moduleId: mod });
    expect(m.authentication && m.authentication.symmetricKey && m.authentication.symmetricKey.primaryKey, `module ${JSON.stringify(m)}`);
    return { detail: '', key: m.authentication.symmetricKey.primaryKey };
  }, { gap: 'amqp-module-client' });
  if (mkey) {
    const mc = ModuleClient.fromConnectionString(deviceConnectionString(cfg.hubHost, mdev, mkey.key, mod), Amqp);
    mc.on('error', (e) => console.log(`WARN ${SUITE}: module client error event -- ${errorText(e)}`));
    s.cleanup('close module client', () => mc.close());
    const mopen = await s.step(`module ${mdev}/${mod}: ModuleClient.fromConnectionString(Amqp) + open`, async () => {
      await mc.setOptions({ ca });
      await mc.open();
    }, { gap: 'amqp-module-client' });
    if (mopen) {
      await s.step(`module ${mdev}/${mod}: sendEvent -> stored with deviceId and moduleId`, async () => {
        const m = new Message(JSON.stringify({ module: true, run: runId }));
        m.messageId = `${mod}-m1`;
        m.properties.add('compat-run', runId);
        await mc.sendEvent(m);
        const [e] = await events.waitFor((x) => x.deviceId === mdev && x.systemProperties && x.systemProperties['message-id'] === `${mod}-m1`);
        expect(e.moduleId === mod, `moduleId ${e.moduleId}`);
        expect(e.systemProperties['iothub-connection-module-id'] === mod, `iothub-connection-module-id ${e.systemProperties['iothub-connection-module-id']}`);
        expect(e.properties['compat-run'] === runId, `properties ${JSON.stringify(e.properties)}`);
      }, { gap: 'amqp-module-client' });
      await s.step(`module ${mdev}/${mod}: getTwin + reported update -> registry.getModuleTwin shows it`, async () => {
        const tw = await mc.getTwin();
        expect(tw.properties && tw.properties.desired && typeof tw.properties.desired.$version === 'number', 'no desired.$version');
        await new Promise((resolve, reject) => tw.properties.reported.update({ moduleState: 'ok' }, (err) => (err ? reject(err) : resolve())));
        await poll('module reported properties', async () => {
          const { responseBody: st } = await registry.getModuleTwin(mdev, mod);
          return { ok: st.properties.reported.moduleState === 'ok', why: `reported ${JSON.stringify(st.properties.reported)}` };
        }, 10000);
        const { responseBody: dt } = await registry.getTwin(mdev);
        expect(dt.properties.reported.moduleState === undefined, 'the module report landed in the device twin');
      }, { gap: 'amqp-module-client' });
      await mc.close().catch(() => {});
    }
  } else {
    s.skip('module client: open, sendEvent, getTwin', 'the module could not be created');
  }
  return s.finish();
}

main().catch((e) => {
  console.log(`FAIL ${SUITE}: harness -- ${errorText(e)}`);
  process.exit(2);
});

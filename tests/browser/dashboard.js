#!/usr/bin/env node
// The web dashboard (docs/dashboard.md) driven in headless Chromium (Debian's `chromium`, through
// playwright-core 1.65.2) against the server scripts/test.sh runs, with official Node SDKs for the
// device side: sign in with the hub and DPS owner connection strings; create an enrollment group
// with an initial twin through the form; derive a device key with the group page's helper;
// provision that device with azure-iot-provisioning-device (MQTT); find it in the group's
// registration records and in the device list; edit a tag in the twin editor and read it back
// with azure-iothub's Registry; connect the device with azure-iot-device (MQTT) and invoke a direct
// method from the device page; watch a message arrive on the live telemetry page; sign in with the read-only `registryRead` policy and find the write
// actions absent. A screenshot of each page goes to FLEETHUB_SCREENSHOTS (default: the work dir).
// Run by scripts/test.sh; configuration in ../compat/node/lib/harness.js plus FLEETHUB_SERVER_INFO
// (server-info.json) and CHROMIUM (the browser executable).
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvMqtt } = require('azure-iot-provisioning-device-mqtt');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Registry } = require('azure-iothub');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { Config, Suite, env, expect, uniqueId } = require('../compat/node/lib/harness');

const SUITE = 'browser-dashboard';

async function main() {
  const cfg = new Config(SUITE);
  const s = new Suite(SUITE);
  const info = JSON.parse(fs.readFileSync(env('FLEETHUB_SERVER_INFO'), 'utf8'));
  const policy = (name) => (info.policies || []).find((p) => p.keyName === name);
  const shots = env('FLEETHUB_SCREENSHOTS', path.join(process.cwd(), 'dashboard-screenshots'));
  fs.mkdirSync(shots, { recursive: true });
  const base = `https://${cfg.hubHost}/ui`;
  const groupId = uniqueId('ui-group');
  const regId = uniqueId('ui-dev');
  const registry = Registry.fromConnectionString(cfg.hubServiceCs);
  const psc = ProvisioningServiceClient.fromConnectionString(cfg.dpsServiceCs);
  s.cleanup('group', () => psc.deleteEnrollmentGroup(groupId));
  s.cleanup('registration', () => psc.deleteDeviceRegistrationState(regId));
  s.cleanup('device', () => registry.delete(regId));

  const browser = await chromium.launch({
    executablePath: env('CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    // Root in CI: Chromium's sandbox needs user namespaces it may not get there.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  s.cleanup('browser', () => browser.close());
  // The browser trusts the server's development CA only for this test: certificate errors are
  // ignored in this context (the CA is not in Chromium's store), the host name is still checked
  // by the SDK clients used alongside.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });

  const signIn = async (pg, cs1, cs2) => {
    await pg.goto(`${base}/login`);
    await pg.fill('#cs1', cs1);
    if (cs2) await pg.fill('#cs2', cs2);
    await Promise.all([pg.waitForURL(`${base}/`), pg.click('button[type=submit]')]);
  };

  await s.step('sign in with the hub and DPS owner connection strings', async () => {
    await page.goto(`${base}/login`);
    await shot('sign-in');
    await signIn(page, cfg.hubServiceCs, cfg.dpsServiceCs);
    const text = await page.textContent('main');
    expect(text.includes('Devices') && text.includes('Enrollment groups'), `overview: ${text.slice(0, 300)}`);
    await shot('overview');
  });

  await s.step('a wrong key is refused without detail', async () => {
    const other = await context.newPage();
    const cs = cfg.hubServiceCs.replace(/SharedAccessKey=[^;]+/, 'SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=');
    await other.goto(`${base}/login`);
    await other.fill('#cs1', cs);
    await other.click('button[type=submit]');
    const alert = await other.textContent('[role=alert]');
    expect(alert.includes('Sign-in failed'), alert);
    await other.close();
  });

  await s.step('create an enrollment group with an initial twin', async () => {
    await page.goto(`${base}/enrollments`);
    await shot('enrollments');
    await page.click('text=Add an enrollment group');
    await page.fill('#id', groupId);
    await page.fill('#initial_twin', '{"tags": {"origin": "dashboard"}}');
    await shot('group-new');
    await Promise.all([page.waitForURL(/\/ui\/groups\//), page.click('button:has-text("Create group")')]);
    expect((await page.textContent('[role=status]')).includes('Group created'), 'no notice');
    const g = await psc.getEnrollmentGroup(groupId);
    const group = g.responseBody || g;
    expect(group.initialTwin && group.initialTwin.tags.origin === 'dashboard', JSON.stringify(group.initialTwin));
  });

  let deviceKey;
  await s.step('derive a device key with the group page helper', async () => {
    await page.fill('#derive', regId);
    await Promise.all([page.waitForURL(/derive=/), page.click('button:has-text("Derive key")')]);
    const text = await page.textContent('main');
    const m = text.match(new RegExp(`Device key for ${regId}: ([A-Za-z0-9+/=]+)`));
    expect(m, `no derived key on the page: ${text.slice(0, 400)}`);
    deviceKey = m[1];
    await shot('group');
  });

  await s.step('provision the device with the official SDK (MQTT)', async () => {
    const client = ProvisioningDeviceClient.create(cfg.dpsHost, cfg.idScope, new ProvMqtt(),
      new SymmetricKeySecurityClient(regId, deviceKey));
    const r = await client.register();
    expect(r.status === 'assigned', JSON.stringify(r));
    return `assignedHub=${r.assignedHub}`;
  });

  await s.step('the device is in the group registration records and the device list', async () => {
    await page.goto(`${base}/groups/${encodeURIComponent(groupId)}`);
    const records = await page.textContent('main');
    expect(records.includes(regId) && records.includes('assigned'), 'not in the records');
    await page.goto(`${base}/devices`);
    await page.fill('#id', regId);
    await Promise.all([page.waitForURL(new RegExp(`/ui/devices/${regId}`)), page.click('button:has-text("Open")')]);
    await shot('devices');
  });

  await s.step('edit a tag in the twin editor; the service SDK reads it back', async () => {
    const editor = await page.inputValue('#twin');
    const patch = JSON.parse(editor);
    expect(patch.tags.origin === 'dashboard', `initial twin tags missing: ${editor}`);
    patch.tags.site = 'lab-<1>';
    await page.fill('#twin', JSON.stringify(patch, null, 2));
    await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save twin")')]);
    if (!page.url().includes('done=')) {
      const alert = await page.textContent('[role=alert]').catch(() => '(no alert)');
      throw new Error(`not saved: ${alert}`);
    }
    const { responseBody: twin } = await registry.getTwin(regId);
    expect(twin.tags.site === 'lab-<1>', JSON.stringify(twin.tags));
    expect((await page.content()).includes('lab-&lt;1&gt;'), 'the tag is shown escaped');
    await shot('device');
  });

  await s.step('invoke a direct method from the device page', async () => {
    const cs = `HostName=${cfg.hubHost};DeviceId=${regId};SharedAccessKey=${deviceKey}`;
    const device = DeviceClient.fromConnectionString(cs, Mqtt);
    device.setOptions({ ca: fs.readFileSync(cfg.caPath, 'utf8') });
    await device.open();
    s.cleanup('device client', () => device.close());
    device.onDeviceMethod('ping', (req, res) => res.send(200, { pong: req.payload }));
    await page.reload();
    await page.fill('#method', 'ping');
    await page.fill('#payload', '{"n": 7}');
    await page.fill('#timeout', '10');
    await page.click('button:has-text("Invoke method")');
    await page.waitForSelector('text=The device answered');
    const text = await page.textContent('main');
    expect(text.includes('status 200') && text.includes('"pong"'), text.slice(0, 600));
    await shot('device-method');
  });

  await s.step('live telemetry shows a message the device sends', async () => {
    await page.goto(`${base}/telemetry?device=${encodeURIComponent(regId)}`);
    await page.waitForSelector('#status');
    const { Message } = require('azure-iot-device');
    const cs = `HostName=${cfg.hubHost};DeviceId=${regId};SharedAccessKey=${deviceKey}`;
    const sender = DeviceClient.fromConnectionString(cs, Mqtt);
    sender.setOptions({ ca: fs.readFileSync(cfg.caPath, 'utf8') });
    // The page subscribes when it loads; give the stream a moment, then send.
    await new Promise((r) => setTimeout(r, 500));
    const m = new Message('{"temperature": 21.5, "note": "<b>hi</b>"}');
    m.properties.add('level', 'info');
    await sender.sendEvent(m);
    await page.waitForSelector('#messages tr');
    const row = await page.textContent('#messages tr');
    expect(row.includes(regId) && row.includes('temperature') && row.includes('<b>hi</b>'), row);
    expect((await page.$$('#messages b')).length === 0, 'the body is shown as text, not HTML');
    await shot('telemetry');
  });

  await s.step('the deployments and overview pages render', async () => {
    await page.goto(`${base}/deployments`);
    expect((await page.textContent('h1')).includes('deployments'), await page.textContent('h1'));
    await shot('deployments');
    await page.goto(`${base}/`);
    expect(await page.isVisible('svg[role=img]'), 'the telemetry chart');
    await shot('overview-after');
  });

  await s.step('a read-only policy gets read-only pages', async () => {
    const ro = policy('registryRead');
    expect(ro, 'server-info.json lists no registryRead policy');
    const roContext = await browser.newContext({ ignoreHTTPSErrors: true });
    const pg = await roContext.newPage();
    await signIn(pg, ro.connectionString);
    await pg.goto(`${base}/devices/${encodeURIComponent(regId)}`);
    const html = await pg.content();
    expect(!html.includes('Save twin') && !html.includes('Invoke method'), 'write actions shown');
    expect(!(await pg.isVisible('a[href="/ui/enrollments"]')), 'a DPS section without a DPS policy');
    await pg.screenshot({ path: path.join(shots, 'read-only-device.png'), fullPage: true });
    await roContext.close();
  });

  await s.step('sign out ends the session', async () => {
    await page.goto(`${base}/`);
    await Promise.all([page.waitForURL(`${base}/login`), page.click('button:has-text("Sign out")')]);
    await page.goto(`${base}/devices`);
    expect(page.url() === `${base}/login`, page.url());
  });

  await s.finish();
}

main().catch((e) => {
  console.log(`FAIL ${SUITE}: unexpected -- ${e && e.stack || e}`);
  process.exit(2);
});

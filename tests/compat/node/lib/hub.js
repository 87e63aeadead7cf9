// IoT Hub helpers for fleethub's own official-SDK compatibility tests (Node). Not a test itself.
//
// - serviceSas(): a hub service SAS from FLEETHUB_HUB_SERVICE_CS, signed with azure-iot-common's
//   SharedAccessSignature (the same code the official service client uses)
// - rest(): one bounded HTTPS request to the hub with that SAS (the server's CA from FLEETHUB_CA_CERT)
// - queueC2d(): queue a cloud-to-device message through fleethub's REST API
//   (POST /devices/{id}/messages/deviceBound). The official Node service client (azure-iothub Client.send)
//   sends C2D over AMQP, which fleethub does not speak.
// - purgeC2d(): DELETE /devices/{id}/commands -> totalMessagesPurged (how many were still queued)
// - EventReader: reads stored telemetry (GET /messages/events?consumerGroup=compat&from=N&limit=1000),
//   fleethub's read path for device-to-cloud messages (the SDKs have none: Azure uses Event Hubs/AMQP).
// - deviceConnectionString(): HostName=...;DeviceId=...[;ModuleId=...];SharedAccessKey=...
'use strict';

const fs = require('fs');
const https = require('https');
const { SharedAccessSignature, anHourFromNow } = require('azure-iot-common');
const { parseConnectionString, withTimeout } = require('./harness');

const API_VERSION = '2021-04-12';

function serviceSas(cfg) {
  const cs = parseConnectionString(cfg.hubServiceCs);
  return SharedAccessSignature.create(cs.HostName, cs.SharedAccessKeyName, cs.SharedAccessKey, anHourFromNow()).toString();
}

/** One HTTPS request to the hub with a service SAS: resolves to { status, headers, body (parsed when JSON), text }. */
function rest(cfg, method, path, body, timeoutMs = 30000) {
  const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
  const headers = { Authorization: serviceSas(cfg), Accept: 'application/json' };
  if (payload) {
    headers['Content-Type'] = 'application/json; charset=utf-8';
    headers['Content-Length'] = payload.length;
  }
  const sep = path.includes('?') ? '&' : '?';
  const p = new Promise((resolve, reject) => {
    const req = https.request({
      host: cfg.hubHost, port: 443, method, path: `${path}${sep}api-version=${API_VERSION}`, headers,
      ca: fs.readFileSync(cfg.caPath), servername: cfg.hubHost,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed = text;
        if (/application\/json/.test(res.headers['content-type'] || '') && text) {
          try { parsed = JSON.parse(text); } catch (e) { /* keep the text */ }
        }
        resolve({ status: res.statusCode, headers: res.headers, body: parsed, text });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
  return withTimeout(p, timeoutMs, `${method} ${path}`);
}

/** Queues a C2D message (fleethub REST: body, messageId, correlationId, contentType, properties...); returns the 200 body. */
async function queueC2d(cfg, deviceId, msg) {
  const r = await rest(cfg, 'POST', `/devices/${encodeURIComponent(deviceId)}/messages/deviceBound`, msg);
  if (r.status !== 200) throw new Error(`queue C2D for ${deviceId}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
  return r.body;
}

/** Purges the device's C2D queue (DELETE /devices/{id}/commands); resolves to totalMessagesPurged. */
async function purgeC2d(cfg, deviceId) {
  const r = await rest(cfg, 'DELETE', `/devices/${encodeURIComponent(deviceId)}/commands`);
  if (r.status !== 200 || typeof (r.body && r.body.totalMessagesPurged) !== 'number') {
    throw new Error(`purge C2D queue of ${deviceId}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
  }
  return r.body.totalMessagesPurged;
}

/** Reads stored telemetry from the start (from=0) and keeps its cursor between calls. */
class EventReader {
  constructor(cfg, consumerGroup = 'compat') {
    this.cfg = cfg;
    this.consumerGroup = consumerGroup;
    this.cursor = 0;
    this.seen = [];
  }

  async _readAvailable() {
    for (let pages = 0; pages < 1000; pages++) {
      const r = await rest(this.cfg, 'GET', `/messages/events?consumerGroup=${encodeURIComponent(this.consumerGroup)}&from=${this.cursor}&limit=1000`);
      if (r.status !== 200) throw new Error(`GET /messages/events: HTTP ${r.status} ${r.text.slice(0, 300)}`);
      const page = r.body || {};
      if (!Array.isArray(page.messages)) throw new Error(`GET /messages/events: no "messages" array: ${r.text.slice(0, 300)}`);
      this.seen.push(...page.messages);
      if (typeof page.next === 'number' && page.next > this.cursor) this.cursor = page.next;
      if (page.messages.length === 0) return;
    }
  }

  /** Resolves to the stored messages matching pred once there are `count` of them (polls every 500 ms). */
  async waitFor(pred, count = 1, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this._readAvailable();
      const found = this.seen.filter(pred);
      if (found.length >= count) return found;
      if (Date.now() > deadline) {
        throw new Error(`${found.length} of ${count} expected messages in GET /messages/events after ${timeoutMs / 1000}s (read ${this.seen.length}, cursor ${this.cursor})`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

function deviceConnectionString(host, deviceId, key, moduleId) {
  return `HostName=${host};DeviceId=${deviceId}${moduleId ? ';ModuleId=' + moduleId : ''};SharedAccessKey=${key}`;
}

/** Waits until emitter emits `event` with arguments for which pred(...args) is true; resolves to the args. */
function waitForEvent(emitter, event, pred, timeoutMs, what) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => {
      if (!pred || pred(...args)) resolve(args);
    };
    emitter.on(event, handler);
  });
  return withTimeout(p, timeoutMs, what || `event ${event}`).finally(() => emitter.removeListener(event, handler));
}

module.exports = { API_VERSION, serviceSas, rest, queueC2d, purgeC2d, EventReader, deviceConnectionString, waitForEvent };

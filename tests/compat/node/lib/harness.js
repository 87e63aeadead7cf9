// Small test harness for fleethub's own official-SDK compatibility tests (Node). Not a test itself.
//
// Each test prints one line per step:
//   PASS <suite>: <step>[ -- detail]   FAIL <suite>: <step> -- <reason>   SKIP <suite>: <step> -- <why>
//   XFAIL <suite>: <step> -- known gap <id>: <reason>   (a listed server gap; does not fail the file)
// then "<suite>: N passed, N failed[, N skipped]" and exits 0 (all passed), 1 (a step failed) or
// 2 (bad configuration or the whole script ran out of time).
//
// Configuration (exported by scripts/test.sh from `fleethub info --output json`):
//   FLEETHUB_CA_CERT, FLEETHUB_DPS_HOST, FLEETHUB_ID_SCOPE, FLEETHUB_DPS_SERVICE_CS, FLEETHUB_HUB_SERVICE_CS
//   FLEETHUB_COMPAT_STEP_TIMEOUT (s, default 60), FLEETHUB_COMPAT_SCRIPT_TIMEOUT (s, default 400),
//   FLEETHUB_COMPAT_PREFIX (id prefix, default "compat"), FLEETHUB_COMPAT_DEBUG=1 (stacks)
//   FLEETHUB_COMPAT_KNOWN_GAPS: known server gaps allowed to fail (see knownGaps() below)
// The TLS trust for the DPS device and service clients comes from NODE_EXTRA_CA_CERTS (they have no CA
// option); scripts/test.sh sets it to FLEETHUB_CA_CERT.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

function env(name, dflt) {
  const v = process.env[name];
  return v === undefined || v === '' ? dflt : v;
}

function parseConnectionString(cs) {
  const out = {};
  for (const part of (cs || '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

/** DPS symmetric-key group: deviceKey = base64(HMAC-SHA256(base64decode(groupKey), registrationId)). */
function deriveGroupDeviceKey(groupKeyB64, registrationId) {
  return crypto.createHmac('sha256', Buffer.from(groupKeyB64, 'base64')).update(registrationId, 'utf8').digest('base64');
}

function randomKey() {
  return crypto.randomBytes(32).toString('base64');
}

function uniqueId(kind) {
  return `${env('FLEETHUB_COMPAT_PREFIX', 'compat')}-${kind}-${crypto.randomBytes(4).toString('hex')}`;
}

function errorText(e, limit = 600) {
  if (!e) return String(e);
  let s = `${e.name || e.constructor && e.constructor.name || 'Error'}: ${e.message || e}`;
  const body = e.responseBody || e.result;
  if (body) s += ` body=${typeof body === 'string' ? body : JSON.stringify(body)}`;
  const st = statusOf(e);
  if (st) s += ` status=${st}`;
  return s.length <= limit ? s : s.slice(0, limit) + '...';
}

/**
 * HTTP-like status carried by an SDK error, or undefined.
 * service clients (azure-iot-http-base): err.response.statusCode;
 * DPS device over HTTP: err.transportObject.statusCode; over MQTT: err.transportObject.topic
 * ($dps/registrations/res/{status}/?...); otherwise guess from the error class.
 */
function statusOf(e) {
  if (!e) return undefined;
  if (e.response && e.response.statusCode) return e.response.statusCode;
  const t = e.transportObject;
  if (t && t.statusCode) return t.statusCode;
  if (t && typeof t.topic === 'string') {
    const m = /^\$dps\/registrations\/res\/(\d{3})\//.exec(t.topic);
    if (m) return Number(m[1]);
  }
  const byName = { UnauthorizedError: 401, DeviceNotFoundError: 404, ArgumentError: 400, PreconditionFailedError: 412 };
  const named = byName[e.name] || byName[e.constructor && e.constructor.name];
  if (named) return named;
  // The DPS MQTT transport passes mqtt.js CONNACK refusals on untranslated (plain Error):
  // 'Connection refused: Not authorized' (CONNACK 5) / 'Bad username or password' (CONNACK 4).
  if (/Connection refused: (Not authorized|Bad username or password)/i.test(e.message || '')) return 401;
  return undefined;
}

function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms / 1000}s`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/**
 * Known server gaps: steps tagged with a gap id (`<suite>/<tag>`, e.g. `node-hub-service/modules`) whose
 * failure is reported as XFAIL and does not fail the file. FLEETHUB_COMPAT_KNOWN_GAPS lists them
 * (space or comma separated; a bare `<tag>` matches that tag in every suite; `none` = no gap allowed);
 * unset or empty: the ids in tests/compat/known-gaps.txt (one per line, `#` comments).
 */
function knownGaps() {
  let text = env('FLEETHUB_COMPAT_KNOWN_GAPS');
  if (text === undefined) {
    try {
      text = fs.readFileSync(path.join(__dirname, '..', '..', 'known-gaps.txt'), 'utf8').replace(/#.*$/gm, '');
    } catch (e) {
      text = '';
    }
  }
  return new Set(text.split(/[\s,]+/).filter((g) => g && g !== 'none'));
}

class Config {
  constructor(suite) {
    const need = ['FLEETHUB_CA_CERT', 'FLEETHUB_DPS_HOST', 'FLEETHUB_ID_SCOPE', 'FLEETHUB_DPS_SERVICE_CS', 'FLEETHUB_HUB_SERVICE_CS'];
    const missing = need.filter((v) => !env(v));
    if (missing.length) {
      console.log(`FAIL ${suite}: configuration -- not set: ${missing.join(', ')} (scripts/test.sh exports them)`);
      process.exit(2);
    }
    if (!env('NODE_EXTRA_CA_CERTS')) {
      console.log(`FAIL ${suite}: configuration -- NODE_EXTRA_CA_CERTS must name the CA file (read at process start)`);
      process.exit(2);
    }
    this.caPath = env('FLEETHUB_CA_CERT');
    this.dpsHost = env('FLEETHUB_DPS_HOST');
    this.idScope = env('FLEETHUB_ID_SCOPE');
    this.dpsServiceCs = env('FLEETHUB_DPS_SERVICE_CS');
    this.hubServiceCs = env('FLEETHUB_HUB_SERVICE_CS');
    this.hubHost = parseConnectionString(this.hubServiceCs).HostName;
  }
}

class Suite {
  constructor(name) {
    this.name = name;
    this.passed = 0;
    this.failed = 0;
    this.skipped = 0;
    this.xfailed = 0;
    this.cleanups = [];
    this.knownGaps = knownGaps();
    this.stepTimeoutMs = Number(env('FLEETHUB_COMPAT_STEP_TIMEOUT', '60')) * 1000;
    const total = Number(env('FLEETHUB_COMPAT_SCRIPT_TIMEOUT', '400'));
    this.watchdog = setTimeout(() => {
      console.log(`FAIL ${name}: whole script -- still running after ${total}s`);
      this.summary();
      process.exit(2);
    }, total * 1000);
    this.watchdog.unref();
    process.on('unhandledRejection', (e) => {
      // SDK internals sometimes reject promises nobody awaits; report, do not crash the run.
      console.log(`WARN ${name}: unhandled rejection -- ${errorText(e)}`);
    });
  }

  /**
   * Runs fn() bounded by a timeout; resolves to its value (true for undefined) or null on failure.
   * opts: a number (timeout in ms) or { timeoutMs, gap }; `gap` tags the step with a gap id
   * (`<suite>/<gap>`): when that id is a known gap (knownGaps()), a failure prints XFAIL instead of FAIL
   * and does not count as failed.
   */
  async step(title, fn, opts) {
    const o = typeof opts === 'number' ? { timeoutMs: opts } : opts || {};
    const gapId = o.gap ? `${this.name}/${o.gap}` : null;
    const known = gapId && (this.knownGaps.has(gapId) || this.knownGaps.has(o.gap));
    try {
      const v = await withTimeout(Promise.resolve().then(fn), o.timeoutMs || this.stepTimeoutMs, 'step');
      this.passed++;
      let detail = typeof v === 'string' ? v : v && typeof v === 'object' && v.detail ? v.detail : '';
      if (known) detail += `${detail ? ' ' : ''}(known gap ${gapId} passes now: drop it from tests/compat/known-gaps.txt)`;
      console.log(`PASS ${this.name}: ${title}${detail ? ' -- ' + detail : ''}`);
      return v === undefined ? true : v;
    } catch (e) {
      if (known) {
        this.xfailed++;
        console.log(`XFAIL ${this.name}: ${title} -- known gap ${gapId}: ${errorText(e)}`);
      } else {
        this.failed++;
        console.log(`FAIL ${this.name}: ${title} -- ${gapId ? '[' + gapId + '] ' : ''}${errorText(e)}`);
      }
      if (env('FLEETHUB_COMPAT_DEBUG') === '1' && e && e.stack) console.log(e.stack);
      return null;
    }
  }

  skip(title, why) {
    this.skipped++;
    console.log(`SKIP ${this.name}: ${title} -- ${why}`);
  }

  /** Registers fn to run at the end (last registered runs first). */
  cleanup(title, fn) {
    this.cleanups.unshift([title, fn]);
  }

  summary() {
    let s = `${this.name}: ${this.passed} passed, ${this.failed} failed`;
    if (this.skipped) s += `, ${this.skipped} skipped`;
    if (this.xfailed) s += `, ${this.xfailed} known gaps (XFAIL)`;
    console.log(s);
  }

  async finish() {
    for (const [title, fn] of this.cleanups) {
      try {
        await withTimeout(Promise.resolve().then(fn), 20000, 'cleanup');
      } catch (e) {
        if (statusOf(e) === 404) continue; // already gone (the test deleted it)
        console.log(`WARN ${this.name}: cleanup ${title} -- ${errorText(e, 200)}`);
      }
    }
    this.cleanups = [];
    this.summary();
    // SDK sockets/timers may keep the event loop alive: exit explicitly.
    process.exit(this.failed ? 1 : 0);
  }
}

module.exports = {
  Config, Suite, env, expect, errorText, statusOf, deriveGroupDeviceKey, randomKey, uniqueId, parseConnectionString, withTimeout,
  knownGaps,
};

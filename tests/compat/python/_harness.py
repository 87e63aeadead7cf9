"""Small test harness for fleethub's own official-SDK compatibility tests (not a test itself).

Each test script prints one line per step:
    PASS <suite>: <step>[ -- detail]      FAIL <suite>: <step> -- <reason>      SKIP <suite>: <step> -- <why>
then "<suite>: N passed, N failed[, N skipped]" and exits 0 (all passed), 1 (a step failed) or
2 (bad configuration or the whole script ran out of time).

Configuration (exported by scripts/test.sh from `fleethub info --output json`):
    FLEETHUB_CA_CERT          PEM file of the CA that issued the server certificate
    FLEETHUB_DPS_HOST         DPS device endpoint host (dps.fleethub.test)
    FLEETHUB_ID_SCOPE         ID scope
    FLEETHUB_DPS_SERVICE_CS   DPS service connection string (provisioningserviceowner)
    FLEETHUB_HUB_SERVICE_CS   hub service connection string (iothubowner); its HostName is the hub host
    FLEETHUB_COMPAT_STEP_TIMEOUT (s, default 60), FLEETHUB_COMPAT_SCRIPT_TIMEOUT (s, default 400),
    FLEETHUB_COMPAT_PREFIX (id prefix, default "compat"), FLEETHUB_COMPAT_DEBUG=1 (stack traces)
    FLEETHUB_COMPAT_KNOWN_GAPS   known server gaps allowed to fail (see known_gaps())

A step tagged with a gap id whose failure is a known server gap prints
    XFAIL <suite>: <step> -- known gap <id>: <reason>
and does not fail the file.
"""
import base64
import hashlib
import hmac
import os
import re
import secrets
import sys
import threading
import traceback


def env(name, default=None):
    v = os.environ.get(name)
    return default if v in (None, "") else v


def parse_cs(cs):
    """'K=V;K=V' -> dict (split at the first '=', so base64 padding survives)."""
    return dict(p.split("=", 1) for p in (cs or "").split(";") if "=" in p)


def derive_group_device_key(group_key_b64, registration_id):
    """DPS symmetric-key group: deviceKey = base64(HMAC-SHA256(base64decode(groupKey), registrationId))."""
    mac = hmac.new(base64.b64decode(group_key_b64), registration_id.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def random_key():
    return base64.b64encode(secrets.token_bytes(32)).decode()


def unique_id(kind):
    return "%s-%s-%s" % (env("FLEETHUB_COMPAT_PREFIX", "compat"), kind, secrets.token_hex(4))


def error_text(e, limit=600):
    """The exception and its causes in one line (SDK errors wrap each other several times)."""
    parts, seen = [], 0
    while e is not None and seen < 8:
        msg = "%s: %s" % (type(e).__name__, str(e)[:300])
        resp = getattr(e, "response", None)  # msrest HttpOperationError: the requests response
        if getattr(resp, "status_code", None):
            msg += " [HTTP %s %s]" % (resp.status_code, (getattr(resp, "text", "") or "")[:200])
        if msg not in parts:
            parts.append(msg)
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
        seen += 1
    s = " <- ".join(parts)
    return s if len(s) <= limit else s[:limit] + "..."


def http_status(e):
    """HTTP-like status carried by an SDK error, or None.

    provisioningserviceclient: ProvisioningServiceError("Service Error 404 - Not Found", cause);
    azure-iot-device provisioning: ServiceError("... status code 401 ..."); a refused MQTT CONNECT
    (CONNACK 4/5) becomes CredentialError, which we report as 401."""
    text = error_text(e, limit=4000)
    for pat in (r"Service Error (\d{3})", r"status code (?:of )?(\d{3})"):
        m = re.search(pat, text)
        if m:
            return int(m.group(1))
    cause = getattr(e, "cause", None)
    resp = getattr(cause, "response", None)
    if resp is not None and getattr(resp, "status_code", None):
        return int(resp.status_code)
    try:
        from azure.iot.device import exceptions as dev_exc

        if isinstance(e, dev_exc.CredentialError):
            return 401
    except ImportError:
        pass
    return None


def known_gaps():
    """Known server gaps: steps tagged with a gap id ("<suite>/<tag>", e.g. "py-hub-service/modules") whose
    failure is reported as XFAIL and does not fail the file. FLEETHUB_COMPAT_KNOWN_GAPS lists them (space or
    comma separated; a bare "<tag>" matches that tag in every suite; "none" = no gap allowed); unset or
    empty: the ids in tests/compat/known-gaps.txt (one per line, "#" comments)."""
    text = env("FLEETHUB_COMPAT_KNOWN_GAPS")
    if text is None:
        try:
            with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "known-gaps.txt")) as f:
                text = "\n".join(line.split("#", 1)[0] for line in f)
        except OSError:
            text = ""
    return {g for g in re.split(r"[\s,]+", text) if g and g != "none"}


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Config:
    def __init__(self, suite):
        missing = [v for v in ("FLEETHUB_CA_CERT", "FLEETHUB_DPS_HOST", "FLEETHUB_ID_SCOPE",
                               "FLEETHUB_DPS_SERVICE_CS", "FLEETHUB_HUB_SERVICE_CS") if not env(v)]
        if missing:
            print("FAIL %s: configuration -- not set: %s (scripts/test.sh exports them)" % (suite, ", ".join(missing)),
                  flush=True)
            os._exit(2)
        self.ca_path = env("FLEETHUB_CA_CERT")
        with open(self.ca_path) as f:
            self.ca_pem = f.read()
        self.dps_host = env("FLEETHUB_DPS_HOST")
        self.id_scope = env("FLEETHUB_ID_SCOPE")
        self.dps_service_cs = env("FLEETHUB_DPS_SERVICE_CS")
        self.hub_service_cs = env("FLEETHUB_HUB_SERVICE_CS")
        self.hub_host = parse_cs(self.hub_service_cs).get("HostName")
        # The Python service clients (msrest -> requests) have no CA argument; requests reads this.
        os.environ.setdefault("REQUESTS_CA_BUNDLE", self.ca_path)


class Suite:
    def __init__(self, name):
        self.name = name
        self.passed = self.failed = self.skipped = self.xfailed = 0
        self._cleanups = []
        self.known_gaps = known_gaps()
        self.step_timeout = float(env("FLEETHUB_COMPAT_STEP_TIMEOUT", "60"))
        total = float(env("FLEETHUB_COMPAT_SCRIPT_TIMEOUT", "400"))
        self._watchdog = threading.Timer(total, self._script_timeout, args=(total,))
        self._watchdog.daemon = True
        self._watchdog.start()

    def _script_timeout(self, total):
        print("FAIL %s: whole script -- still running after %ss" % (self.name, total), flush=True)
        self._summary()
        os._exit(2)

    def step(self, title, fn, timeout=None, gap=None):
        """Runs fn() in a thread bounded by a timeout. Returns fn's value (True for None) or None on failure.
        A str return value (or a dict with "detail") is printed after the PASS line. `gap` tags the step with
        the gap id "<suite>/<gap>": when that id is a known gap (known_gaps()), a failure prints XFAIL instead
        of FAIL and does not count as failed."""
        timeout = timeout or self.step_timeout
        gap_id = "%s/%s" % (self.name, gap) if gap else None
        known = bool(gap) and (gap_id in self.known_gaps or gap in self.known_gaps)
        box = {}

        def run():
            try:
                box["value"] = fn()
            except BaseException as e:  # noqa: B902 - report everything, including SystemExit from SDK threads
                box["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            box["error"] = TimeoutError("no result after %ss" % timeout)
        if "error" in box:
            if known:
                self.xfailed += 1
                print("XFAIL %s: %s -- known gap %s: %s" % (self.name, title, gap_id, error_text(box["error"])),
                      flush=True)
            else:
                self.failed += 1
                print("FAIL %s: %s -- %s%s" % (self.name, title, "[%s] " % gap_id if gap_id else "",
                                              error_text(box["error"])), flush=True)
            if env("FLEETHUB_COMPAT_DEBUG") == "1":
                e = box["error"]
                traceback.print_exception(type(e), e, e.__traceback__)
            return None
        v = box.get("value")
        self.passed += 1
        detail = v if isinstance(v, str) else (v.get("detail", "") if isinstance(v, dict) else "")
        if known:
            detail += "%s(known gap %s passes now: drop it from tests/compat/known-gaps.txt)" % (
                " " if detail else "", gap_id)
        print("PASS %s: %s%s" % (self.name, title, (" -- " + detail) if detail else ""), flush=True)
        return True if v is None else v

    def skip(self, title, why):
        self.skipped += 1
        print("SKIP %s: %s -- %s" % (self.name, title, why), flush=True)

    def cleanup(self, title, fn):
        """Registers fn to run at the end (last registered runs first)."""
        self._cleanups.insert(0, (title, fn))

    def _summary(self):
        s = "%s: %d passed, %d failed" % (self.name, self.passed, self.failed)
        if self.skipped:
            s += ", %d skipped" % self.skipped
        if self.xfailed:
            s += ", %d known gaps (XFAIL)" % self.xfailed
        print(s, flush=True)

    def finish(self):
        for title, fn in self._cleanups:
            box = {}

            def run(fn=fn):
                try:
                    fn()
                except Exception as e:  # noqa: BLE001
                    box["error"] = e

            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(20)
            if "error" in box and http_status(box["error"]) == 404:
                continue  # already gone (the test deleted it)
            if t.is_alive() or "error" in box:
                why = error_text(box["error"]) if "error" in box else "timeout"
                print("WARN %s: cleanup %s -- %s" % (self.name, title, why), flush=True)
        self._cleanups = []
        self._watchdog.cancel()
        self._summary()
        sys.stdout.flush()
        os._exit(1 if self.failed else 0)

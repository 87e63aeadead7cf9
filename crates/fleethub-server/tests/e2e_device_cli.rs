//! The operator tools against a real server, as a new user runs them: `fleethub device ...`
//! (send, simulate with DPS, C2D receive/complete), `dps simulate`, enrollments showing their
//! registration state, twins showing `lastActivityTime`, and `hub query`.

mod common;

use common::ServerProcess;
use serde_json::Value;

fn ok(s: &ServerProcess, args: &[&str]) -> (String, String) {
    let (ok, out, err) = s.cli(args);
    assert!(ok, "{args:?} failed:\n{err}\n{out}");
    (out, err)
}

fn json(s: &ServerProcess, args: &[&str]) -> Value {
    let (out, _) = ok(s, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[allow(
    clippy::too_many_lines,
    reason = "one operator session, read top to bottom"
)]
#[test]
fn device_tools_enrollment_state_activity_and_query() {
    let s = ServerProcess::start();
    ok(&s, &["hub", "device-identity", "create", "-d", "dev-cli"]);
    let before = json(&s, &["hub", "device-twin", "show", "-d", "dev-cli"]);
    assert_eq!(before["lastActivityTime"], "0001-01-01T00:00:00Z");

    // Device-to-cloud, as the device (its key read from the registry).
    let (_, err) = ok(
        &s,
        &[
            "device",
            "send-d2c-message",
            "-d",
            "dev-cli",
            "--data",
            "hello-cli",
            "--props",
            "a=1",
            "--msg-count",
            "2",
        ],
    );
    assert!(err.contains("sent 2 messages"), "{err}");
    let (events, _) = ok(
        &s,
        &[
            "hub",
            "monitor-events",
            "--from-start",
            "--timeout",
            "0",
            "--properties",
        ],
    );
    let mine: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"]["origin"] == "dev-cli")
        .collect();
    assert_eq!(mine.len(), 2, "{events}");
    assert_eq!(mine[0]["event"]["payload"], "hello-cli");
    assert_eq!(mine[0]["event"]["properties"]["application"]["a"], "1");
    let after = json(&s, &["hub", "device-twin", "show", "-d", "dev-cli"]);
    assert_ne!(after["lastActivityTime"], "0001-01-01T00:00:00Z", "{after}");

    // Cloud-to-device, received and completed over the HTTPS device API.
    ok(
        &s,
        &[
            "hub",
            "c2d-message",
            "send",
            "-d",
            "dev-cli",
            "--data",
            "to-device",
            "--props",
            "k=v",
        ],
    );
    let got = json(&s, &["device", "c2d-message", "receive", "-d", "dev-cli"]);
    assert_eq!(got["data"], "to-device");
    assert_eq!(got["properties"]["app"]["k"], "v");
    let etag = got["etag"].as_str().unwrap().to_string();
    ok(
        &s,
        &[
            "device",
            "c2d-message",
            "complete",
            "-d",
            "dev-cli",
            "--etag",
            &etag,
        ],
    );
    let (out, err) = ok(&s, &["device", "c2d-message", "receive", "-d", "dev-cli"]);
    assert!(
        out.is_empty() && err.contains("no cloud-to-device message"),
        "{out} {err}"
    );

    // An enrollment: dry run, then a simulated device registers through DPS and sends.
    ok(
        &s,
        &[
            "dps",
            "enrollment",
            "create",
            "--enrollment-id",
            "sim-01",
            "--ee",
        ],
    );
    let shown = json(&s, &["dps", "enrollment", "show", "--eid", "sim-01"]);
    assert!(
        shown["attestation"]["symmetricKey"]
            .get("primaryKey")
            .is_none(),
        "{shown}"
    );
    assert!(shown.get("registrationState").is_none());
    let keys = json(
        &s,
        &[
            "dps",
            "enrollment",
            "show",
            "--eid",
            "sim-01",
            "--show-keys",
        ],
    );
    let key = keys["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    let dry = json(
        &s,
        &[
            "dps",
            "simulate",
            "--registration-id",
            "sim-01",
            "--key",
            &key,
        ],
    );
    assert_eq!(dry["result"], "assigned", "{dry}");
    assert_eq!(dry["iotEdge"], true);
    assert_eq!(dry["deviceExists"], false);
    let (_, err) = ok(
        &s,
        &[
            "device",
            "simulate",
            "--registration-id",
            "sim-01",
            "--key",
            &key,
            "--msg-count",
            "3",
            "--msg-interval",
            "0.05",
        ],
    );
    assert!(err.contains("3 messages sent"), "{err}");
    let shown = json(&s, &["dps", "enrollment", "show", "--eid", "sim-01"]);
    assert_eq!(shown["registrationState"]["status"], "assigned", "{shown}");
    let (table, _) = ok(&s, &["dps", "enrollment", "list", "-o", "table"]);
    assert!(
        table.contains("assigned") && table.contains("hub.fleethub.test"),
        "{table}"
    );

    // The query language over what happened.
    let rows = json(
        &s,
        &[
            "hub",
            "query",
            "-q",
            "SELECT deviceId, capabilities.iotEdge AS edge FROM devices WHERE lastActivityTime > '2000-01-01'",
        ],
    );
    assert_eq!(
        rows,
        serde_json::json!([{"deviceId": "dev-cli", "edge": false}, {"deviceId": "sim-01", "edge": true}])
    );
    let counts = json(
        &s,
        &[
            "hub",
            "query",
            "-q",
            "SELECT COUNT() AS n FROM devices.modules",
        ],
    );
    assert!(counts[0]["n"].as_u64().is_some(), "{counts}");
}

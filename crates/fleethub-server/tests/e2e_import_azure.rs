//! `fleethub import azure` against a real server with files in the shapes `az` writes
//! (tests/fixtures/azure): dry run, import, idempotent re-run, and the imported device
//! connecting with the key it had in Azure.

mod common;

use common::ServerProcess;
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/azure")
        .join(name)
        .display()
        .to_string()
}

fn import(s: &ServerProcess, extra: &[&str]) -> (Vec<Value>, String) {
    let (enr, grp, dev) = (
        fixture("enrollments.json"),
        fixture("groups.json"),
        fixture("devices.txt"),
    );
    let mut args = vec![
        "import",
        "azure",
        "--enrollments",
        &enr,
        "--groups",
        &grp,
        "--devices",
        &dev,
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = s.cli(&args);
    assert!(ok, "{args:?}: {err}\n{out}");
    let items: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (items, err)
}

fn result_of<'a>(items: &'a [Value], id: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("{id} missing from {items:?}"))
}

#[test]
fn import_azure_exports_dry_run_then_real_then_rerun() {
    let s = ServerProcess::start();

    let (items, err) = import(&s, &["--dry-run"]);
    assert!(err.contains("would import 3, skipped 4"), "{err}");
    assert_eq!(result_of(&items, "az-dev-1")["result"], "wouldImport");
    let (ok, _, _) = s.cli(&["dps", "enrollment", "show", "--registration-id", "az-dev-1"]);
    assert!(!ok, "a dry run creates nothing");

    let (items, err) = import(&s, &[]);
    assert!(
        err.contains("imported 3, skipped 4 (already exist 0, invalid 2, no keys 2)"),
        "{err}"
    );
    assert!(
        err.contains("import: 7/7"),
        "plain progress lines off a terminal: {err}"
    );
    for id in ["az-dev-1", "az-line-3", "az-dev-exported"] {
        assert_eq!(result_of(&items, id)["result"], "imported", "{id}");
    }
    assert!(
        result_of(&items, "az-dev-1")["reason"]
            .as_str()
            .unwrap()
            .contains("iotHubHostName contoso-hub.azure-devices.net dropped")
    );
    assert_eq!(result_of(&items, "az-dev-nokeys")["skip"], "noKeys");
    assert_eq!(result_of(&items, "az-dev-listed")["skip"], "noKeys");
    assert_eq!(result_of(&items, "az-dev-tpm")["skip"], "invalid");
    assert_eq!(result_of(&items, "az-dev-x509")["skip"], "invalid");

    // What Azure had is what fleethub has: keys, edge flag, initial twin, device twin.
    let (ok, out, err) = s.cli(&[
        "dps",
        "enrollment",
        "show",
        "--registration-id",
        "az-dev-1",
        "--show-keys",
    ]);
    assert!(ok, "{err}");
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        e["attestation"]["symmetricKey"]["primaryKey"],
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    );
    assert_eq!(e["deviceId"], "edge-az-1");
    assert_eq!(e["capabilities"]["iotEdge"], true);
    assert_eq!(e["initialTwin"]["tags"]["site"], "plant-4");
    assert_eq!(e["initialTwin"]["properties"]["desired"]["interval"], 30);
    let (ok, out, err) = s.cli(&["hub", "device-twin", "show", "-d", "az-dev-exported"]);
    assert!(ok, "{err}");
    let twin: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(twin["tags"]["room"], "12");
    assert_eq!(twin["properties"]["desired"]["fw"], "1.2");

    // The exported device connects with its Azure key.
    let cs = format!(
        "HostName={};DeviceId=az-dev-exported;SharedAccessKey=QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=",
        s.info.hub_host
    );
    let (ok, out, err) = s.cli(&[
        "device",
        "send-d2c-message",
        "--device-connection-string",
        &cs,
        "--hub-address",
        "127.0.0.1",
        "--mqtt-port",
        &s.mqtt_port.to_string(),
        "--data",
        "from-azure",
    ]);
    assert!(ok, "{err}\n{out}");

    // A re-run changes nothing and says so.
    let (items, err) = import(&s, &[]);
    assert!(
        err.contains("imported 0, skipped 7 (already exist 3"),
        "{err}"
    );
    assert_eq!(result_of(&items, "az-line-3")["skip"], "exists");
}

//! End-to-end: IoT Edge deployments at scale against the real `fleethub` process, driven with
//! the `fleethub edge` / `fleethub hub` / `fleethub dps` commands: a deployment reaches the
//! `$edgeAgent`/`$edgeHub` module twins of the edge devices it targets, devices move between
//! deployments when their tags change or a deployment is deleted, layered deployments merge,
//! `set-modules` works when no deployment targets a device, metrics count, a bad manifest is
//! refused with its reason and changes nothing, and an edge device provisioned by DPS with
//! initial tags gets its deployment within seconds.

mod common;

use common::ServerProcess;
use fleethub_device::provisioning::{ProvisioningClient, Transport};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn manifest(image: &str) -> Value {
    json!({"content": {"modulesContent": {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}}
            },
            "modules": {"sensor": {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                                   "settings": {"image": image, "createOptions": "{}"}}}
        }},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1",
            "routes": {"upstream": "FROM /messages/* INTO $upstream"},
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
        }}
    }}})
}

fn write(dir: &tempfile::TempDir, name: &str, doc: &Value) -> String {
    let p: PathBuf = dir.path().join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    p.to_string_lossy().into_owned()
}

fn ok(s: &ServerProcess, args: &[&str]) -> Value {
    let (ok, out, err) = s.cli(args);
    assert!(ok, "{args:?} failed: {err}\n{}", s.log());
    if out.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }
}

fn agent_desired(s: &ServerProcess, device: &str) -> Value {
    ok(
        s,
        &[
            "hub",
            "device-twin",
            "show",
            "--device-id",
            device,
            "--module-id",
            "$edgeAgent",
        ],
    )["properties"]["desired"]
        .clone()
}

fn image_of(desired: &Value) -> String {
    desired["modules"]["sensor"]["settings"]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Polls until the `$edgeAgent` twin of `device` runs `image` (at most 10 s).
fn wait_image(s: &ServerProcess, device: &str, image: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = agent_desired(s, device);
        if image_of(&d) == image {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "{device}: expected image {image}, desired is {d}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn configurations(s: &ServerProcess, device: &str) -> Value {
    ok(s, &["hub", "device-twin", "show", "--device-id", device])["configurations"].clone()
}

#[test]
fn deployments_follow_tags_priorities_and_deletes() {
    let s = ServerProcess::start();
    let dir = tempfile::tempdir().unwrap();
    ok(
        &s,
        &[
            "hub",
            "device-identity",
            "create",
            "--device-id",
            "edge-1",
            "--edge-enabled",
        ],
    );
    ok(
        &s,
        &["hub", "device-identity", "create", "--device-id", "plain-1"],
    );
    ok(
        &s,
        &[
            "hub",
            "device-twin",
            "update",
            "--device-id",
            "edge-1",
            "--tags",
            r#"{"environment":"test"}"#,
        ],
    );
    ok(
        &s,
        &[
            "hub",
            "device-twin",
            "update",
            "--device-id",
            "plain-1",
            "--tags",
            r#"{"environment":"test"}"#,
        ],
    );

    let high = write(&dir, "high.json", &manifest("sensor:high"));
    let low = write(&dir, "low.json", &manifest("sensor:low"));
    let created = ok(
        &s,
        &[
            "edge",
            "deployment",
            "create",
            "--deployment-id",
            "test-high",
            "--content",
            &high,
            "--target-condition",
            "tags.environment='test'",
            "--priority",
            "10",
            "--labels",
            r#"{"team":"ops"}"#,
            "--metrics",
            r#"{"queries":{"tagged":"SELECT deviceId FROM devices WHERE tags.environment='test'"}}"#,
        ],
    );
    assert_eq!(created["id"], "test-high");
    assert_eq!(created["etag"], "MQ==");
    assert_eq!(created["labels"]["team"], "ops");
    ok(
        &s,
        &[
            "edge",
            "deployment",
            "create",
            "--deployment-id",
            "any-low",
            "--content",
            &low,
            "--target-condition",
            "tags.environment='test' OR tags.environment='prod'",
            "--priority",
            "1",
        ],
    );

    // the higher priority wins; $edgeHub gets its part too
    let d = wait_image(&s, "edge-1", "sensor:high");
    assert_eq!(
        d["systemModules"]["edgeHub"]["settings"]["image"],
        "mcr.microsoft.com/azureiotedge-hub:1.5"
    );
    let hub_twin = ok(
        &s,
        &[
            "hub",
            "device-twin",
            "show",
            "--device-id",
            "edge-1",
            "--module-id",
            "$edgeHub",
        ],
    );
    assert_eq!(
        hub_twin["properties"]["desired"]["routes"]["upstream"],
        "FROM /messages/* INTO $upstream"
    );
    assert_eq!(
        configurations(&s, "edge-1"),
        json!({"test-high": {"status": "Applied"}, "any-low": {"status": "Targeted"}})
    );
    // non-edge devices are not targeted by edge deployments
    assert_eq!(configurations(&s, "plain-1"), Value::Null);

    // metrics
    let shown = ok(
        &s,
        &["edge", "deployment", "show", "--deployment-id", "test-high"],
    );
    assert_eq!(
        shown["systemMetrics"]["results"]["targetedCount"], 1,
        "{shown}"
    );
    assert_eq!(shown["systemMetrics"]["results"]["appliedCount"], 1);
    assert_eq!(
        shown["systemMetrics"]["results"]["reportedSuccessfulCount"],
        0
    );
    assert_eq!(
        shown["metrics"]["results"]["tagged"], 2,
        "edge-1 and plain-1 are tagged"
    );
    let list = ok(&s, &["edge", "deployment", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (table_ok, table, _) = s.cli(&["edge", "deployment", "list", "--output", "table"]);
    assert!(
        table_ok && table.contains("test-high") && table.contains("TARGETED"),
        "{table}"
    );

    // the tag changes: the device moves to the lower-priority deployment
    let v_high = d["$version"].as_u64().unwrap();
    ok(
        &s,
        &[
            "hub",
            "device-twin",
            "update",
            "--device-id",
            "edge-1",
            "--tags",
            r#"{"environment":"prod"}"#,
        ],
    );
    let d = wait_image(&s, "edge-1", "sensor:low");
    assert!(d["$version"].as_u64().unwrap() > v_high);
    assert_eq!(
        configurations(&s, "edge-1"),
        json!({"any-low": {"status": "Applied"}})
    );

    // a layered deployment adds a module and a route on top
    let layer = write(
        &dir,
        "layer.json",
        &json!({"modulesContent": {
            "$edgeAgent": {"properties.desired.modules.extra": {"type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": "extra:1"}}},
            "$edgeHub": {"properties.desired.routes.extra": "FROM /messages/modules/extra/* INTO $upstream"}
        }}),
    );
    ok(
        &s,
        &[
            "edge",
            "deployment",
            "create",
            "--deployment-id",
            "extra-layer",
            "--content",
            &layer,
            "--target-condition",
            "tags.environment='prod'",
            "--priority",
            "5",
            "--layered",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = agent_desired(&s, "edge-1");
        if d["modules"]["extra"]["settings"]["image"] == "extra:1" {
            assert_eq!(image_of(&d), "sensor:low", "the base stays");
            break;
        }
        assert!(Instant::now() < deadline, "layer not applied: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // delete the base: nothing else targets the device; set-modules content takes over
    let manual = write(&dir, "manual.json", &manifest("sensor:manual"));
    ok(
        &s,
        &[
            "edge",
            "set-modules",
            "--device-id",
            "edge-1",
            "--content",
            &manual,
        ],
    );
    assert_eq!(
        image_of(&agent_desired(&s, "edge-1")),
        "sensor:low",
        "automatic deployments win"
    );
    ok(
        &s,
        &["edge", "deployment", "delete", "--deployment-id", "any-low"],
    );
    let d = wait_image(&s, "edge-1", "sensor:manual");
    assert_eq!(
        d["modules"]["extra"]["settings"]["image"], "extra:1",
        "layers apply on the device's own content"
    );

    // a bad manifest is refused with its reason and changes nothing
    let mut bad = manifest("sensor:bad");
    bad["content"]["modulesContent"]
        .as_object_mut()
        .unwrap()
        .remove("$edgeHub");
    let bad = write(&dir, "bad.json", &bad);
    let (good, _, err) = s.cli(&[
        "edge",
        "deployment",
        "create",
        "--deployment-id",
        "bad-one",
        "--content",
        &bad,
        "--target-condition",
        "*",
        "--priority",
        "99",
    ]);
    assert!(!good);
    assert!(err.contains("$edgeHub") && err.contains("400"), "{err}");
    let (good, _, err) = s.cli(&[
        "edge",
        "set-modules",
        "--device-id",
        "edge-1",
        "--content",
        &bad,
    ]);
    assert!(!good && err.contains("$edgeHub"), "{err}");
    let (good, _, err) = s.cli(&[
        "edge",
        "deployment",
        "create",
        "--deployment-id",
        "bad-cond",
        "--content",
        &high,
        "--target-condition",
        "tags.environment=",
        "--priority",
        "99",
    ]);
    assert!(!good && err.contains("targetCondition"), "{err}");
    let ids: Vec<String> = ok(&s, &["edge", "deployment", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["extra-layer", "test-high"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(image_of(&agent_desired(&s, "edge-1")), "sensor:manual");

    // update: a new priority and target condition bring the device back to test-high
    let updated = ok(
        &s,
        &[
            "edge",
            "deployment",
            "update",
            "--deployment-id",
            "test-high",
            "--target-condition",
            "tags.environment='prod'",
            "--priority",
            "20",
        ],
    );
    assert_eq!(updated["etag"], "Mg==");
    wait_image(&s, "edge-1", "sensor:high");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dps_provisioned_edge_device_gets_its_deployment_quickly() {
    let s = ServerProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let content = write(&dir, "m.json", &manifest("sensor:dps"));
    ok(
        &s,
        &[
            "edge",
            "deployment",
            "create",
            "--deployment-id",
            "fleet",
            "--content",
            &content,
            "--target-condition",
            "tags.environment='test'",
            "--priority",
            "1",
        ],
    );
    let enrollment = ok(
        &s,
        &[
            "dps",
            "enrollment",
            "create",
            "--registration-id",
            "edge-dps-1",
            "--edge-enabled",
            "true",
            "--initial-twin-tags",
            r#"{"environment":"test"}"#,
        ],
    );
    let key = enrollment["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ProvisioningClient::builder()
        .global_endpoint("localhost")
        .port(s.https_port)
        .id_scope(&s.info.id_scope)
        .registration_id("edge-dps-1")
        .symmetric_key(&key)
        .transport(Transport::Https)
        .ca_pem_file(s.ca_pem())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .register()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    assert_eq!(r.status, "assigned");
    // well before the periodic sweep (60 s)
    let started = Instant::now();
    let deadline = started + Duration::from_secs(3);
    loop {
        let (good, out, _) = s.cli(&[
            "hub",
            "device-twin",
            "show",
            "--device-id",
            "edge-dps-1",
            "--module-id",
            "$edgeAgent",
        ]);
        if good && out.contains("sensor:dps") {
            break;
        }
        assert!(Instant::now() < deadline, "no deployment after 3 s: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

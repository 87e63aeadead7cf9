//! End-to-end: DPS across two `fleethub serve` processes (issue 16). Both servers' certificates
//! come from one operator CA (`--ca-cert/--ca-key`); the DPS links the second server's hub and
//! assigns devices there: the identity (keys, edge flag, initial twin) is created on that hub
//! before the device hears `assigned`, and the device then connects to it. A linked hub that is
//! down or refuses the key fails the registration retryably, with the reason in the registration
//! record. Reprovisioning moves a device and its twin between the hubs per policy. Custom
//! allocation webhooks (plain HTTP on loopback, and HTTPS) choose the hub and answer the device;
//! their failures and timeouts end the registration as Azure's DPS does.

mod common;

use common::{ServerProcess, device, free_port};
use fleethub_device::provisioning::{ProvisioningClient, Transport};
use fleethub_service_client::{CaTrust, Condition, Credentials, HttpsTransport, ServiceClient};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const HUB2: &str = "hub2.fleethub.test";

/// An operator CA made with openssl, as docs/dps-walkthrough.md shows.
fn operator_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=Example IoT CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (the CLI) must be installed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

struct Pair {
    dps: ServerProcess,
    hub2: ServerProcess,
    hub2_args: Vec<String>,
    ca: PathBuf,
    _tmp: tempfile::TempDir,
}

fn start_pair() -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, ca_key) = operator_ca(tmp.path());
    let ca_args = |hub: &str| -> Vec<String> {
        vec![
            "--hub-hostname".into(),
            hub.into(),
            "--dps-hostname".into(),
            "localhost".into(),
            "--ca-cert".into(),
            ca.display().to_string(),
            "--ca-key".into(),
            ca_key.display().to_string(),
        ]
    };
    let hub2_args = ca_args(HUB2);
    let args: Vec<&str> = hub2_args.iter().map(String::as_str).collect();
    let hub2 = ServerProcess::start_with(&tmp.path().join("hub2"), free_port(), free_port(), &args);
    let dps_args = ca_args("hub.fleethub.test");
    let args: Vec<&str> = dps_args.iter().map(String::as_str).collect();
    let dps = ServerProcess::start_with(&tmp.path().join("dps"), free_port(), free_port(), &args);
    for s in [&dps, &hub2] {
        assert_eq!(
            Path::new(&s.info.ca_cert_path),
            ca,
            "caCertPath names the operator CA"
        );
    }
    Pair {
        dps,
        hub2,
        hub2_args,
        ca,
        _tmp: tmp,
    }
}

fn dps_service(p: &Pair) -> ServiceClient<HttpsTransport> {
    let credentials =
        Credentials::from_connection_string(&p.dps.info.dps_service_connection_string).unwrap();
    let transport = HttpsTransport::connect(
        &CaTrust::File(p.ca.clone()),
        "localhost",
        &format!("localhost:{}", p.dps.https_port),
    )
    .unwrap();
    ServiceClient::dps(transport, credentials)
}

fn link_hub2(p: &Pair) {
    let endpoint = format!("127.0.0.1:{}", p.hub2.https_port);
    let (ok, out, err) = p.dps.cli(&[
        "dps",
        "linked-hub",
        "create",
        "--connection-string",
        &p.hub2.info.hub_service_connection_string,
        "--service-endpoint",
        &endpoint,
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], HUB2);
    let (ok, out, err) = p.dps.cli(&["dps", "linked-hub", "list"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["name"], "hub.fleethub.test", "{list}");
    assert_eq!(list[1]["name"], HUB2, "{list}");
    let hub2_key = p
        .hub2
        .info
        .hub_service_connection_string
        .rsplit("SharedAccessKey=")
        .next()
        .unwrap();
    assert!(!out.contains(hub2_key), "keys are masked: {out}");
}

/// An individual enrollment pinned to hub2; returns its primary key.
async fn enroll(p: &Pair, reg: &str) -> String {
    let body = json!({
        "registrationId": reg,
        "attestation": {"type": "symmetricKey"},
        "iotHubHostName": HUB2,
        "capabilities": {"iotEdge": true},
        "initialTwin": {"tags": {"site": "b"}, "properties": {"desired": {"fw": "2.0"}}},
    });
    let e = dps_service(p)
        .put(&format!("/enrollments/{reg}"), &body, Condition::None)
        .await
        .unwrap();
    e["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string()
}

fn provisioning(p: &Pair, reg: &str, key: &str, t: Transport) -> ProvisioningClient {
    let port = match t {
        Transport::Mqtt => p.dps.mqtt_port,
        Transport::Https => p.dps.https_port,
    };
    ProvisioningClient::builder()
        .global_endpoint("localhost")
        .port(port)
        .id_scope(&p.dps.info.id_scope)
        .registration_id(reg)
        .symmetric_key(key)
        .transport(t)
        .ca_pem_file(&p.ca)
        .timeout(Duration::from_mins(1))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_assigned_to_a_linked_hub_gets_its_identity_there_first() {
    let p = start_pair();
    link_hub2(&p);
    let key = enroll(&p, "multi-1").await;
    for t in [Transport::Mqtt, Transport::Https] {
        let r = provisioning(&p, "multi-1", &key, t)
            .register()
            .await
            .unwrap_or_else(|e| panic!("{t:?}: {e}\n{}", p.dps.log()));
        assert_eq!(
            (r.status.as_str(), r.assigned_hub.as_str()),
            ("assigned", HUB2)
        );
        assert_eq!(r.device_id, "multi-1");
    }
    // The identity is on hub2, with the enrollment's key, edge flag and initial twin ...
    let hub2 = device::service(&p.hub2);
    let dev = hub2.get_device("multi-1").await.unwrap();
    let auth = serde_json::to_value(&dev.authentication).unwrap();
    assert_eq!(auth["symmetricKey"]["primaryKey"], key.as_str());
    assert!(dev.capabilities.is_some_and(|c| c.iot_edge));
    let twin = hub2.get_twin("multi-1", None).await.unwrap();
    let twin = serde_json::to_value(&twin).unwrap();
    assert_eq!(twin["tags"]["site"], "b", "{twin}");
    assert_eq!(twin["properties"]["desired"]["fw"], "2.0", "{twin}");
    // ... and not on the DPS server's own hub.
    let local = device::service(&p.dps);
    assert!(local.find_device("multi-1").await.unwrap().is_none());
    // The device connects to the hub it was assigned, trusting the one CA it was given.
    let dev = device::connect(&p.hub2, "multi-1", &key, 3600).await;
    drop(dev);
    // The twin changes on hub2; then the enrollment pins the DPS's own hub: the device moves
    // there on its next registration and takes its twin along (Azure's default policy,
    // migrateDeviceData), and hub2 no longer has it.
    hub2.update_twin(
        "multi-1",
        None,
        &json!({"tags": {"moved": "with-me"}, "properties": {"desired": {"mode": "eco"}}}),
        Condition::None,
    )
    .await
    .unwrap();
    let repin = async |hub: &str, policy: Value| {
        let mut e = dps_service(&p)
            .get("/enrollments/multi-1", &[])
            .await
            .unwrap();
        e["allocationPolicy"] = json!("static");
        e["iotHubs"] = json!([hub]);
        e["reprovisionPolicy"] = policy;
        dps_service(&p)
            .put("/enrollments/multi-1", &e, Condition::None)
            .await
            .unwrap();
        provisioning(&p, "multi-1", &key, Transport::Mqtt)
            .register()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", p.dps.log()))
    };
    let migrate = json!({"updateHubAssignment": true, "migrateDeviceData": true});
    let r = repin("hub.fleethub.test", migrate).await;
    assert_eq!(r.assigned_hub, "hub.fleethub.test");
    assert_eq!(r.substatus.as_deref(), Some("deviceDataMigrated"));
    let twin = serde_json::to_value(local.get_twin("multi-1", None).await.unwrap()).unwrap();
    assert_eq!(twin["tags"]["moved"], "with-me", "{twin}");
    assert_eq!(twin["properties"]["desired"]["mode"], "eco", "{twin}");
    assert_eq!(twin["properties"]["desired"]["fw"], "2.0", "{twin}");
    assert!(
        hub2.find_device("multi-1").await.unwrap().is_none(),
        "removed from the hub it left"
    );
    let dev = device::connect(&p.dps, "multi-1", &key, 3600).await;
    drop(dev);

    // Back to hub2 resetting the data: the initial twin there, gone from the DPS's hub.
    let reset = json!({"updateHubAssignment": true, "migrateDeviceData": false});
    let r = repin(HUB2, reset).await;
    assert_eq!(
        (r.assigned_hub.as_str(), r.substatus.as_deref()),
        (HUB2, Some("deviceDataReset"))
    );
    let twin = serde_json::to_value(hub2.get_twin("multi-1", None).await.unwrap()).unwrap();
    assert_eq!(twin["tags"]["site"], "b", "{twin}");
    assert!(twin["tags"].get("moved").is_none(), "{twin}");
    assert!(
        twin["properties"]["desired"].get("mode").is_none(),
        "{twin}"
    );
    assert!(local.find_device("multi-1").await.unwrap().is_none());

    // Never reprovision: the device stays on hub2 whatever the enrollment says now.
    let never = json!({"updateHubAssignment": false, "migrateDeviceData": false});
    let r = repin("hub.fleethub.test", never).await;
    assert_eq!(
        (r.assigned_hub.as_str(), r.substatus.as_deref()),
        (HUB2, Some("reprovisionedToInitialAssignment"))
    );
    let _dev = device::connect(&p.hub2, "multi-1", &key, 3600).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_hub_that_is_down_fails_the_registration_retryably() {
    let mut p = start_pair();
    link_hub2(&p);
    let key = enroll(&p, "multi-2").await;
    p.hub2.kill9();
    // The device SDK retries the 503 by itself, so it is still trying when hub2 comes back.
    let device = provisioning(&p, "multi-2", &key, Transport::Https);
    let registering = tokio::spawn(async move { device.register().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let rec = loop {
        let (ok, out, _) = p.dps.cli(&[
            "dps",
            "registration",
            "show",
            "--registration-id",
            "multi-2",
        ]);
        if ok {
            let rec: Value = serde_json::from_str(&out).unwrap();
            if rec["status"] == "failed" {
                break rec;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed record\n{}",
            p.dps.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!registering.is_finished(), "the device keeps trying");
    assert!(
        rec["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains(HUB2),
        "{rec}"
    );
    let (ok, out, err) = p.dps.cli(&["diagnostics", "auth-failures"]);
    assert!(ok, "{err}");
    assert!(out.contains("assignment to linked hub"), "{out}");
    assert!(
        device::service(&p.dps)
            .find_device("multi-2")
            .await
            .unwrap()
            .is_none()
    );

    // hub2 back (same data directory and ports): the device registers again and is assigned.
    let args: Vec<&str> = p.hub2_args.iter().map(String::as_str).collect();
    let (dir, mqtt, https) = (p.hub2.data_dir.clone(), p.hub2.mqtt_port, p.hub2.https_port);
    p.hub2 = ServerProcess::start_with(&dir, mqtt, https, &args);
    let r = registering
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", p.dps.log()));
    assert_eq!(
        (r.status.as_str(), r.assigned_hub.as_str()),
        ("assigned", HUB2)
    );
    assert!(
        device::service(&p.hub2)
            .find_device("multi-2")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_allocation_spreads_a_group_by_weight_and_static_pins() {
    let p = start_pair();
    // An iotHubs list naming a hub that is not linked is refused when the group is written.
    let (ok, _, err) = p.dps.cli(&[
        "dps",
        "enrollment-group",
        "create",
        "--group-id",
        "line-1",
        "--iot-hubs",
        HUB2,
    ]);
    assert!(!ok && err.contains("not linked"), "{err}");
    link_hub2(&p);
    let (ok, out, err) = p.dps.cli(&[
        "dps",
        "linked-hub",
        "create",
        "--connection-string",
        &p.hub2.info.hub_service_connection_string,
        "--service-endpoint",
        &format!("127.0.0.1:{}", p.hub2.https_port),
        "--allocation-weight",
        "3",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("\"allocationWeight\": 3"), "{out}");
    let (ok, out, err) = p.dps.cli(&[
        "dps",
        "enrollment-group",
        "create",
        "--group-id",
        "line-1",
        "--allocation-policy",
        "hashed",
    ]);
    assert!(ok, "{err}");
    let group: Value = serde_json::from_str(&out).unwrap();
    let group_key = group["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let mut on_hub2 = 0;
    let n = 16;
    for i in 0..n {
        let reg = format!("spread-{i}");
        let key = fleethub_core::keys::derive_device_key(group_key, &reg).unwrap();
        let r = provisioning(&p, &reg, &key, Transport::Https)
            .register()
            .await
            .unwrap_or_else(|e| panic!("{reg}: {e}\n{}", p.dps.log()));
        let hub = if r.assigned_hub == HUB2 {
            &p.hub2
        } else {
            &p.dps
        };
        if r.assigned_hub == HUB2 {
            on_hub2 += 1;
        }
        assert!(
            device::service(hub)
                .find_device(&reg)
                .await
                .unwrap()
                .is_some(),
            "{reg} is on {}",
            r.assigned_hub
        );
    }
    // Weights 1 (own hub) and 3 (hub2): about 12 of 16 on hub2; both get some.
    assert!((7..n).contains(&on_hub2), "{on_hub2} of {n} on hub2");

    // static: the one hub named.
    let (ok, out, err) = p.dps.cli(&[
        "dps",
        "enrollment",
        "create",
        "--registration-id",
        "pinned-1",
        "--allocation-policy",
        "static",
        "--iot-hubs",
        HUB2,
    ]);
    assert!(ok, "{err}");
    let e: Value = serde_json::from_str(&out).unwrap();
    let key = e["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let r = provisioning(&p, "pinned-1", key, Transport::Mqtt)
        .register()
        .await
        .unwrap();
    assert_eq!(r.assigned_hub, HUB2);
}

/// A custom allocation webhook on loopback (plain HTTP, as fleethub allows for loopback):
/// `*-b` devices go to hub2 with a welcome payload and an initial twin made from the device's
/// payload, `*-a` to the DPS's own hub, `*-x` to a hub that is not linked; `*-e` gets a 500.
async fn start_webhook() -> (String, tokio::task::JoinHandle<()>) {
    async fn allocate(
        axum::Json(req): axum::Json<Value>,
    ) -> (axum::http::StatusCode, axum::Json<Value>) {
        let ctx = &req["deviceRuntimeContext"];
        let reg = ctx["registrationId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            req["individualEnrollment"]["attestation"]
                .get("symmetricKey")
                .is_none()
        );
        let hub = match reg.rsplit('-').next() {
            Some("b") => HUB2,
            Some("a") => "hub.fleethub.test",
            Some("e") => {
                return (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({})),
                );
            }
            _ => "nowhere.fleethub.test",
        };
        let answer = json!({
            "iotHubHostName": hub,
            "initialTwin": {"tags": {"line": ctx["payload"]["line"]}},
            "payload": {"welcome": reg, "linkedHubs": req["linkedHubs"]},
        });
        (axum::http::StatusCode::OK, axum::Json(answer))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/allocate?code=function-key",
        listener.local_addr().unwrap()
    );
    let app = axum::Router::new().route("/api/allocate", axum::routing::post(allocate));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_allocation_webhook_chooses_the_hub_and_answers_the_device() {
    let p = start_pair();
    link_hub2(&p);
    let (url, _webhook) = start_webhook().await;
    let enroll_custom = async |reg: &str| -> String {
        let (ok, out, err) = p.dps.cli(&[
            "dps",
            "enrollment",
            "create",
            "--registration-id",
            reg,
            "--allocation-policy",
            "custom",
            "--webhook-url",
            &url,
            "--api-version",
            "2021-10-01",
        ]);
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["attestation"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (reg, hub) in [("wh-b", HUB2), ("wh-a", "hub.fleethub.test")] {
        let key = enroll_custom(reg).await;
        let r = ProvisioningClient::builder()
            .global_endpoint("localhost")
            .port(p.dps.https_port)
            .id_scope(&p.dps.info.id_scope)
            .registration_id(reg)
            .symmetric_key(&key)
            .transport(Transport::Https)
            .ca_pem_file(&p.ca)
            .payload(json!({"line": 7}))
            .timeout(Duration::from_mins(1))
            .build()
            .unwrap()
            .register()
            .await
            .unwrap_or_else(|e| panic!("{reg}: {e}\n{}", p.dps.log()));
        assert_eq!(
            (r.status.as_str(), r.assigned_hub.as_str()),
            ("assigned", hub)
        );
        assert_eq!(
            r.payload,
            Some(json!({"welcome": reg, "linkedHubs": ["hub.fleethub.test", HUB2]})),
            "the webhook's payload reaches the device"
        );
        let server = if hub == HUB2 { &p.hub2 } else { &p.dps };
        let twin = serde_json::to_value(device::service(server).get_twin(reg, None).await.unwrap())
            .unwrap();
        assert_eq!(twin["tags"]["line"], 7, "{twin}");
        let _dev = device::connect(server, reg, &key, 3600).await;
    }
    // A hub that is not linked: Azure's CustomAllocationIotHubNotSpecified, nothing created.
    let key = enroll_custom("wh-x").await;
    let err = provisioning(&p, "wh-x", &key, Transport::Mqtt)
        .register()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("400208")
            || err.to_string().contains("not one of the linked hubs"),
        "{err}"
    );
    let (ok, out, _) = p
        .dps
        .cli(&["dps", "registration", "show", "--registration-id", "wh-x"]);
    assert!(ok);
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (rec["status"].as_str(), rec["errorCode"].as_u64()),
        (Some("failed"), Some(400_208)),
        "{rec}"
    );
    for s in [&p.dps, &p.hub2] {
        assert!(
            device::service(s)
                .find_device("wh-x")
                .await
                .unwrap()
                .is_none()
        );
    }
    // A webhook that answers 500: the record says so; the device may try again.
    let key = enroll_custom("wh-e").await;
    let device = provisioning(&p, "wh-e", &key, Transport::Https);
    let registering = tokio::spawn(async move { device.register().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, _) = p
            .dps
            .cli(&["dps", "registration", "show", "--registration-id", "wh-e"]);
        if ok && out.contains("answered 500") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed record\n{}",
            p.dps.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    registering.abort();
    assert!(
        device::service(&p.dps)
            .find_device("wh-e")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_hub_with_a_wrong_key_fails_the_registration_with_the_reason() {
    let p = start_pair();
    // hub2's policy name with a key of the right shape that is not its key.
    let cs = &p.hub2.info.hub_service_connection_string;
    let (head, _) = cs.rsplit_once("SharedAccessKey=").unwrap();
    let wrong = format!("{head}SharedAccessKey=d3Jvbmd3cm9uZ3dyb25nd3Jvbmd3cm9uZ3dyb25nMTI=");
    let endpoint = format!("127.0.0.1:{}", p.hub2.https_port);
    let (ok, _, err) = p.dps.cli(&[
        "dps",
        "linked-hub",
        "create",
        "--connection-string",
        &wrong,
        "--service-endpoint",
        &endpoint,
    ]);
    assert!(ok, "{err}");
    let key = enroll(&p, "multi-bad-key").await;
    let device = provisioning(&p, "multi-bad-key", &key, Transport::Https);
    let registering = tokio::spawn(async move { device.register().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let rec = loop {
        let (ok, out, _) = p.dps.cli(&[
            "dps",
            "registration",
            "show",
            "--registration-id",
            "multi-bad-key",
        ]);
        if ok {
            let rec: Value = serde_json::from_str(&out).unwrap();
            if rec["status"] == "failed" {
                break rec;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed record\n{}",
            p.dps.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    registering.abort();
    let message = rec["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains(HUB2) && message.contains("401"),
        "the reason names the hub and its answer: {rec}"
    );
    assert!(!message.contains("d3Jvbmd3"), "no key in the record: {rec}");
    let (ok, out, err) = p.dps.cli(&["diagnostics", "auth-failures"]);
    assert!(ok, "{err}");
    assert!(out.contains("assignment to linked hub"), "{out}");
    for s in [&p.dps, &p.hub2] {
        assert!(
            device::service(s)
                .find_device("multi-bad-key")
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_slower_than_the_configured_timeout_fails_retryably() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("fleethub.toml");
    std::fs::write(&config, "allocation_webhook_timeout_secs = 1\n").unwrap();
    let config = config.display().to_string();
    let s = ServerProcess::start_with(
        &tmp.path().join("data"),
        free_port(),
        free_port(),
        &[
            "--config",
            &config,
            "--hub-hostname",
            "hub.fleethub.test",
            "--dps-hostname",
            "localhost",
        ],
    );
    // A webhook that takes 3 s (then answers the own hub).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::post(async || {
            tokio::time::sleep(Duration::from_secs(3)).await;
            axum::Json(json!({"iotHubHostName": "hub.fleethub.test"}))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (ok, out, err) = s.cli(&[
        "dps",
        "enrollment",
        "create",
        "--registration-id",
        "wh-slow",
        "--allocation-policy",
        "custom",
        "--webhook-url",
        &url,
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let key = v["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    let device = ProvisioningClient::builder()
        .global_endpoint("localhost")
        .port(s.https_port)
        .id_scope(&s.info.id_scope)
        .registration_id("wh-slow")
        .symmetric_key(&key)
        .transport(Transport::Https)
        .ca_pem_file(s.ca_pem())
        .timeout(Duration::from_mins(1))
        .build()
        .unwrap();
    let registering = tokio::spawn(async move { device.register().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let rec = loop {
        let (ok, out, _) = s.cli(&[
            "dps",
            "registration",
            "show",
            "--registration-id",
            "wh-slow",
        ]);
        if ok {
            let rec: Value = serde_json::from_str(&out).unwrap();
            if rec["status"] == "failed" {
                break rec;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed record\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!registering.is_finished(), "the device keeps trying (503)");
    registering.abort();
    assert!(
        rec["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer within 1 s"),
        "{rec}"
    );
    assert!(
        device::service(&s)
            .find_device("wh-slow")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_allocation_webhook_over_https() {
    let p = start_pair();
    // Over HTTPS (hub2's HTTPS port, trusted through the shared CA): it has no such route, so
    // the answer is a 4xx and the registration fails for good (a TLS failure would be retryable).
    let https_hook = format!(
        "https://localhost:{}/api/allocate?code=k",
        p.hub2.https_port
    );
    let (ok, out, err) = p.dps.cli(&[
        "dps",
        "enrollment",
        "create",
        "--registration-id",
        "wh-https",
        "--allocation-policy",
        "custom",
        "--webhook-url",
        &https_hook,
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let key = v["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        provisioning(&p, "wh-https", &key, Transport::Https)
            .register()
            .await
            .is_err()
    );
    let (ok, out, _) = p.dps.cli(&[
        "dps",
        "registration",
        "show",
        "--registration-id",
        "wh-https",
    ]);
    assert!(ok);
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["status"], "failed", "{rec}");
    assert!(
        [400_207, 400_209].contains(&rec["errorCode"].as_u64().unwrap_or_default()),
        "a 4xx over HTTPS: {rec}"
    );
    assert!(
        !rec.to_string().contains("code=k"),
        "the URL's key is not shown: {rec}"
    );
}

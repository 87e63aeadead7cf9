//! End-to-end through the whole device stack: the daemon creates module identities for a
//! deployment, the in-process edge hub accepts those modules with SAS tokens signed by the
//! workload API (the test never sees a module key), verifies as the edge CA from the trust
//! bundle, routes module A's output to module B's input and upstream to the real hub. A
//! module removed from the deployment is stopped and its identity deleted.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{Edge, Server, wait_for};
use fleethub_device::{
    ClientTlsConfig, DeviceClient, DeviceClientOptions, Message, MqttClient, MqttOptions,
};
use serde_json::{Value, json};

const DEVICE: &str = "edge-msg-1";

/// A module's own workload socket.
fn socket(edge: &Edge, module: &str) -> std::path::PathBuf {
    edge.home.join("mnt").join(format!("{module}.sock"))
}

/// A module's SAS token, signed by the module's workload socket like the SDKs' edge HSM does.
async fn workload_token(edge: &Edge, module: &str, genid: &str) -> String {
    let sr = fleethub_core_pct(&format!("localhost/devices/{DEVICE}/modules/{module}"));
    let expiry = fleethub_core::time_util::now_unix() + 3600;
    let data = format!("{sr}\n{expiry}");
    let (status, body) = fleetedge::uds::request(
        &socket(edge, module),
        http::Method::POST,
        &format!(
            "/modules/{}/genid/{genid}/sign?api-version=2020-07-07",
            fleethub_core_pct(module)
        ),
        Some(json!({"keyId": "primary", "algo": "HMACSHA256",
            "data": base64::engine::general_purpose::STANDARD.encode(&data)})),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let digest: Value = serde_json::from_slice(&body).unwrap();
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry}",
        fleethub_core_pct(digest["digest"].as_str().unwrap())
    )
}

/// Percent-encoding with nothing safe (what the SDKs do for `sr` and `sig`).
fn fleethub_core_pct(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn trust_bundle(edge: &Edge) -> String {
    let (status, body) = fleetedge::uds::request(
        &socket(edge, "A"),
        http::Method::GET,
        "/trust-bundle?api-version=2020-07-07",
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["certificate"].as_str().unwrap().to_string()
}

#[test]
fn modules_message_each_other_and_upstream_through_the_edge_hub() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server.cli_json(&[
        "hub",
        "device-identity",
        "create",
        "--device-id",
        DEVICE,
        "--edge-enabled",
    ]);
    let cs = server.cli_json(&[
        "hub",
        "device-identity",
        "connection-string",
        "show",
        "--device-id",
        DEVICE,
    ])["connectionString"]
        .as_str()
        .unwrap()
        .to_string();
    let mut edge = Edge::new(dir.path());
    let port = edge.init_manual(&server, &cs);
    edge.append_config("\n[agent]\nstatus_report_interval_secs = 0.3\n");
    edge.cli_ok(&["config", "apply"]);

    // Routes first, then a deployment with modules A and B (placeholder processes: the test
    // plays both modules, with the identities the daemon created).
    server.cli_json(&[
        "hub",
        "device-twin",
        "update",
        "--device-id",
        DEVICE,
        "--module-id",
        "$edgeHub",
        "--desired",
        &json!({
            "schemaVersion": "1.1",
            "routes": {
                "AtoB": "FROM /messages/modules/A/outputs/output1 INTO BrokeredEndpoint(\"/modules/B/inputs/input1\")",
                "up": "FROM /messages/modules/A/outputs/* INTO $upstream"
            },
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
        })
        .to_string(),
    ]);
    edge.start();
    let placeholder = json!({"type": "process", "settings": {"command": "/bin/sh", "args": ["-c", "exec sleep 300"]}});
    server.set_deployment(
        DEVICE,
        &json!({"schemaVersion": "1.1", "modules": {"A": placeholder, "B": placeholder}}),
    );
    wait_for(30, "modules A and B running", || {
        (edge.status_of("A").as_deref() == Some("running")
            && edge.status_of("B").as_deref() == Some("running"))
        .then_some(())
    });
    let genid = |m: &str| {
        server.cli_json(&[
            "hub",
            "module-identity",
            "show",
            "--device-id",
            DEVICE,
            "--module-id",
            m,
        ])["generationId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (gen_a, gen_b) = (genid("A"), genid("B"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bundle = trust_bundle(&edge).await;
        let tls = ClientTlsConfig::with_ca_pem(bundle.as_bytes())
            .unwrap()
            .with_address_override("localhost", "127.0.0.4");

        // Module B: subscribed to its inputs.
        let token_b = workload_token(&edge, "B", &gen_b).await;
        let stream = tls.connect("localhost", port).await.expect("TLS to the edge hub with the edge CA");
        let (b, mut b_in) = MqttClient::connect(
            stream,
            MqttOptions::new(format!("{DEVICE}/B")).with_credentials(
                format!("localhost/{DEVICE}/B/?api-version=2019-10-01"),
                token_b.into_bytes(),
            ),
        )
        .await
        .expect("module B accepted by the edge hub");
        b.subscribe(vec![(
            format!("devices/{DEVICE}/modules/B/inputs/#"),
            fleethub_mqtt_codec::QoS::AtLeastOnce,
        )])
        .await
        .unwrap();

        // Module A: the device SDK as a module, through the gateway.
        let token_a = workload_token(&edge, "A", &gen_a).await;
        let a = DeviceClient::from_connection_string(
            &format!("HostName=localhost;DeviceId={DEVICE};ModuleId=A;SharedAccessSignature={token_a};GatewayHostName=localhost"),
            DeviceClientOptions::default().with_tls(tls.clone()).with_port(port),
        )
        .await
        .expect("module A accepted by the edge hub");
        a.send_event(Message::json(&json!({"temperature": 21.5})).with_output_name("output1"))
            .await
            .unwrap();

        let p = tokio::time::timeout(Duration::from_secs(20), b_in.recv())
            .await
            .expect("B receives A's message")
            .unwrap();
        assert!(
            p.topic.starts_with(&format!("devices/{DEVICE}/modules/B/inputs/input1/")),
            "{}",
            p.topic
        );
        let body: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(body["temperature"], 21.5);
        a.close().await;
    });

    // Upstream: the hub's telemetry log has A's message.
    let found = wait_for(30, "A's message upstream", || {
        let out = std::process::Command::new(common::fleethub_bin())
            .args([
                "hub",
                "monitor-events",
                "--device-id",
                DEVICE,
                "--from-start",
                "--timeout",
                "1",
                "--properties",
            ])
            .arg("--data-dir")
            .arg(&server.data_dir)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("21.5").then_some(text)
    });
    assert!(found.contains("\"A\""), "{found}");

    // A deployment without B: B is stopped, forgotten and its identity deleted in the hub.
    server.set_deployment(
        DEVICE,
        &json!({"schemaVersion": "1.1", "modules": {"B": null}}),
    );
    wait_for(30, "B removed", || {
        (edge.status_of("B").is_none() && edge.status_of("A").as_deref() == Some("running"))
            .then_some(())
    });
    assert!(
        !socket(&edge, "B").exists(),
        "B's workload socket is removed"
    );
    assert!(socket(&edge, "A").exists());
    wait_for(30, "B's identity deleted", || {
        server
            .try_cli_json(&[
                "hub",
                "module-identity",
                "show",
                "--device-id",
                DEVICE,
                "--module-id",
                "B",
            ])
            .is_none()
            .then_some(())
    });
    wait_for(30, "B reported as removed", || {
        let r = server.module_twin(DEVICE, "$edgeAgent")["properties"]["reported"].clone();
        (r["modules"].get("B").is_none() && r["modules"]["A"]["runtimeStatus"] == "running")
            .then_some(())
    });
    edge.stop();
    assert!(
        !socket(&edge, "A").exists(),
        "the daemon removes the sockets when it stops"
    );
}

//! End-to-end: a real `fleethub serve` and the real `fleetedge` daemon. DPS provisioning with a
//! group-derived key, a deployment set through the $edgeAgent module twin (service REST API),
//! two process modules (one crash-looping), reported properties, module identities, the
//! workload API, an invalid manifest, and an offline restart from the caches.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{Edge, Server, free_edge_port, wait_for};
use serde_json::{Value, json};

fn fast_agent() -> &'static str {
    "\n[agent]\nstatus_report_interval_secs = 0.3\nrestart_backoff_initial_secs = 1\nrestart_backoff_max_secs = 2\n"
}

fn reported(server: &Server, device: &str) -> Value {
    server.module_twin(device, "$edgeAgent")["properties"]["reported"].clone()
}

/// The edge device's `connectionState` in the registry (GET /devices/{id}).
fn connection_state(server: &Server, device: &str) -> Option<String> {
    let d = server.try_cli_json(&["hub", "device-identity", "show", "--device-id", device])?;
    d["connectionState"].as_str().map(str::to_string)
}

fn deployment(good_script: &str) -> Value {
    json!({
        "schemaVersion": "1.1",
        "runtime": {"type": "process", "settings": {}},
        "systemModules": {
            "edgeAgent": {"type": "process", "settings": {}},
            "edgeHub": {"type": "process", "status": "running", "restartPolicy": "always", "settings": {}}
        },
        "modules": {
            "good": {
                "version": "1.0", "type": "process", "status": "running", "restartPolicy": "always",
                "startupOrder": 1,
                "env": {"GREETING": {"value": "hello from the manifest"}},
                "settings": {"command": "/bin/sh", "args": ["-c", good_script]}
            },
            "crashy": {
                "type": "process", "status": "running", "restartPolicy": "on-failure",
                "startupOrder": 2,
                "settings": {"command": "/bin/sh", "args": ["-c", "echo crashing; exit 3"]}
            }
        }
    })
}

#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, read top to bottom"
)]
#[test]
fn dps_deployment_backoff_reported_properties_and_offline_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());

    // An edge-enabled enrollment group; the device key is derived from the group key.
    let group = server.cli_json(&[
        "dps",
        "enrollment-group",
        "create",
        "--group-id",
        "edge-fleet",
        "--edge-enabled",
    ]);
    let group_key = group["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let device = "edge-e2e-1";
    let device_key = fleethub_core::keys::derive_device_key(group_key, device).unwrap();

    let mut edge = Edge::new(dir.path());
    let edge_port = free_edge_port();
    edge.cli_ok(&[
        "config",
        "init",
        "--dps-symmetric-key",
        "--scope-id",
        &server.id_scope(),
        "--registration-id",
        device,
        "--symmetric-key",
        // without base64 padding, as some portals show it
        device_key.trim_end_matches('='),
        "--global-endpoint",
        &format!("https://localhost:{}", server.https_port),
        "--trust-bundle",
        server.ca_pem().to_str().unwrap(),
        "--hostname",
        "localhost",
        "--homedir",
        edge.home.to_str().unwrap(),
        "--hub-mqtt-port",
        &server.mqtt_port.to_string(),
        "--hub-https-port",
        &server.https_port.to_string(),
        "--edge-hub-listen",
        &format!("127.0.0.4:{edge_port}"),
    ]);
    edge.append_config(fast_agent());
    let applied = edge.cli_ok(&["config", "apply"]);
    assert!(applied.contains("provisioning.source: dps"), "{applied}");
    let key_file = edge.home.join("keys/device-id");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    edge.start();
    // No deployment yet: 417 with edgeAgent's wording.
    let r = wait_for(30, "the 417 report", || {
        let r = reported(&server, device);
        (r["lastDesiredStatus"]["code"] == 417).then_some(r)
    });
    assert!(
        r["lastDesiredStatus"]["description"]
            .as_str()
            .unwrap()
            .contains("empty configuration for the edge agent"),
        "{r}"
    );
    let cache: Value =
        serde_json::from_slice(&std::fs::read(edge.home.join("provisioning.json")).unwrap())
            .unwrap();
    assert_eq!(cache["deviceId"], device);
    assert_eq!(cache["assignedHub"], "localhost");

    // The agent also connects as the device itself: the hub shows the edge device connected.
    wait_for(30, "the edge device Connected in the registry", || {
        (connection_state(&server, device).as_deref() == Some("Connected")).then_some(())
    });
    let status = edge.cli_ok(&["system", "status"]);
    assert!(
        status.contains("device connection to the hub: connected since"),
        "{status}"
    );

    // The deployment, through the service REST API (PATCH /twins/{d}/modules/$edgeAgent).
    let twin = server.set_deployment(
        device,
        &deployment("echo \"$GREETING $IOTEDGE_MODULEID $IOTEDGE_DEVICEID $IOTEDGE_WORKLOADURI\"; exec sleep 300"),
    );
    let desired_version = twin["properties"]["desired"]["$version"].as_u64().unwrap();

    wait_for(30, "good running and crashy in backoff", || {
        (edge.status_of("good").as_deref() == Some("running")
            && edge.status_of("crashy").as_deref() == Some("backoff"))
        .then_some(())
    });
    let rows = edge.list();
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        vec!["crashy", "edgeAgent", "edgeHub", "good"],
        "{rows:?}"
    );
    let good = rows.iter().find(|r| r.0 == "good").unwrap();
    assert!(good.2.starts_with("Up "), "{good:?}");
    let crashy = rows.iter().find(|r| r.0 == "crashy").unwrap();
    assert!(crashy.2.starts_with("Backoff (3)"), "{crashy:?}");

    // Reported properties in the module twin.
    let r = wait_for(30, "reported module states", || {
        let r = reported(&server, device);
        (r["lastDesiredVersion"] == desired_version
            && r["lastDesiredStatus"]["code"] == 200
            && r["modules"]["good"]["runtimeStatus"] == "running"
            && r["modules"]["crashy"]["restartCount"].as_u64() >= Some(1))
        .then_some(r)
    });
    assert_eq!(r["schemaVersion"], "1.1");
    assert_eq!(r["systemModules"]["edgeAgent"]["runtimeStatus"], "running");
    assert_eq!(r["systemModules"]["edgeHub"]["runtimeStatus"], "running");
    assert!(r["runtime"]["platform"]["os"].is_string());
    assert_eq!(r["modules"]["crashy"]["exitCode"], 3);
    assert_eq!(r["modules"]["good"]["settings"]["command"], "/bin/sh");
    assert!(r["modules"]["good"]["lastStartTimeUtc"].is_string());

    // Logs, with the IoT Edge environment.
    let logs = edge.cli_ok(&["logs", "good"]);
    let good_socket = edge.home.join("mnt").join("good.sock");
    let workload = format!("unix://{}", good_socket.display());
    assert_eq!(
        logs.trim(),
        format!("hello from the manifest good {device} {workload}")
    );
    let crash_logs = edge.cli_ok(&["logs", "crashy", "--tail", "1"]);
    assert_eq!(crash_logs, "crashing\n");

    // Module identities were created in the hub; the workload API signs with their keys.
    let module = server.cli_json(&[
        "hub",
        "module-identity",
        "show",
        "--device-id",
        device,
        "--module-id",
        "good",
    ]);
    let genid = module["generationId"].as_str().unwrap();
    let key = module["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = format!("localhost%2Fdevices%2F{device}%2Fmodules%2Fgood\n1900000000");
    let (status, body) = rt
        .block_on(fleetedge::uds::request(
            &good_socket,
            http::Method::POST,
            &format!("/modules/good/genid/{genid}/sign?api-version=2020-07-07"),
            Some(json!({"keyId": "primary", "algo": "HMACSHA256",
                "data": base64::engine::general_purpose::STANDARD.encode(&data)})),
            Duration::from_secs(5),
        ))
        .unwrap();
    assert_eq!(status, 200);
    let digest: Value = serde_json::from_slice(&body).unwrap();
    let expected = fleethub_core::sas::sign(
        key,
        &format!("localhost%2Fdevices%2F{device}%2Fmodules%2Fgood"),
        1900000000,
    )
    .unwrap();
    assert_eq!(digest["digest"], expected);
    // good's socket does not sign for crashy (which has its own socket)
    let crashy = server.cli_json(&[
        "hub",
        "module-identity",
        "show",
        "--device-id",
        device,
        "--module-id",
        "crashy",
    ]);
    let (status, body) = rt
        .block_on(fleetedge::uds::request(
            &good_socket,
            http::Method::POST,
            &format!(
                "/modules/crashy/genid/{}/sign?api-version=2020-07-07",
                crashy["generationId"].as_str().unwrap()
            ),
            Some(json!({"keyId": "primary", "algo": "HMACSHA256", "data": "AA=="})),
            Duration::from_secs(5),
        ))
        .unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(edge.home.join("mnt").join("crashy.sock").exists());
    assert!(
        !edge.home.join("workload.sock").exists(),
        "no shared workload socket"
    );

    // An invalid manifest: 400 with the reason; the last good deployment keeps running.
    let status_before = edge.status_of("good");
    let mut bad = deployment("exec sleep 300");
    bad["modules"]["good"]["restartPolicy"] = json!("sometimes");
    let twin = server.set_deployment(device, &bad);
    let bad_version = twin["properties"]["desired"]["$version"].as_u64().unwrap();
    let r = wait_for(30, "the 400 report", || {
        let r = reported(&server, device);
        (r["lastDesiredVersion"] == bad_version).then_some(r)
    });
    assert_eq!(r["lastDesiredStatus"]["code"], 400, "{r}");
    assert!(
        r["lastDesiredStatus"]["description"]
            .as_str()
            .unwrap()
            .contains("restartPolicy 'sometimes'"),
        "{r}"
    );
    assert_eq!(edge.status_of("good"), status_before);
    assert_eq!(
        edge.cli_ok(&["logs", "good"]).lines().count(),
        1,
        "the good module was not restarted"
    );

    // `fleetedge restart`: the module runs again (a second start line in its log).
    edge.cli_ok(&["restart", "good"]);
    wait_for(20, "good restarted", || {
        (edge.cli_ok(&["logs", "good"]).lines().count() == 2
            && edge.status_of("good").as_deref() == Some("running"))
        .then_some(())
    });
    assert!(!edge.cli(&["restart", "nope"]).status.success());

    // `check`: the crash loop is reported as unhealthy; exit code non-zero.
    let out = edge.cli(&["check", "--output", "json"]);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let result = |id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["result"].as_str().unwrap().to_string())
    };
    assert_eq!(
        result("device-credentials").as_deref(),
        Some("ok"),
        "{report}"
    );
    assert_eq!(result("daemon-running").as_deref(), Some("ok"));
    assert_eq!(result("host-connect-dps-endpoint").as_deref(), Some("ok"));
    assert_eq!(result("host-local-time").as_deref(), Some("ok"));
    assert_eq!(result("modules-healthy").as_deref(), Some("error"));

    // Offline restart: the hub is down, the daemon starts from its caches.
    edge.stop();
    server.stop();
    let log_len = edge.log_text().len();
    edge.start();
    wait_for(30, "good running offline", || {
        (edge.status_of("good").as_deref() == Some("running")).then_some(())
    });
    let new_log = edge.log_text()[log_len..].to_string();
    assert!(
        new_log.contains("using the cached provisioning result"),
        "{new_log}"
    );
    assert!(new_log.contains("cached deployment"), "{new_log}");

    // The hub comes back: the agent reconnects and reports again.
    let server2 = Server::start_on(&server.data_dir, server.mqtt_port, server.https_port);
    let before = reported(&server2, device)["$version"].as_u64().unwrap();
    wait_for(60, "a report after reconnecting", || {
        let r = reported(&server2, device);
        (r["$version"].as_u64() > Some(before)).then_some(())
    });
    wait_for(60, "the device connected again", || {
        (connection_state(&server2, device).as_deref() == Some("Connected")).then_some(())
    });
    edge.stop();
    // The daemon disconnects on the way out: the device shows Disconnected.
    wait_for(
        30,
        "the edge device Disconnected after the daemon stopped",
        || (connection_state(&server2, device).as_deref() == Some("Disconnected")).then_some(()),
    );
    assert!(
        !edge.log_text().contains(&device_key),
        "the device key must not be logged"
    );
}

#[test]
fn manual_provisioning_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let device = "edge-manual-1";
    server.cli_json(&[
        "hub",
        "device-identity",
        "create",
        "--device-id",
        device,
        "--edge-enabled",
    ]);
    let cs = server.cli_json(&[
        "hub",
        "device-identity",
        "connection-string",
        "show",
        "--device-id",
        device,
    ]);
    let cs = cs["connectionString"].as_str().unwrap().to_string();

    let mut edge = Edge::new(dir.path());
    edge.init_manual(&server, &cs);
    edge.append_config(fast_agent());

    // Before apply and without the daemon: a warning and an error, exit 1.
    let out = edge.cli(&["check"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\u{d7} fleetedge daemon is running - Error"),
        "{text}"
    );
    assert!(
        text.contains("configuration has been applied - Warning"),
        "{text}"
    );
    assert!(
        text.contains("\u{221a} hub accepts the device credentials - OK"),
        "{text}"
    );

    edge.cli_ok(&["config", "apply"]);
    edge.start();
    wait_for(30, "the agent's first report", || {
        let r = server.module_twin(device, "$edgeAgent")["properties"]["reported"].clone();
        (r["lastDesiredStatus"]["code"] == 417).then_some(())
    });
    let out = edge.cli(&["check", "--output", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert_eq!(report["summary"]["errors"], 0, "{report}");
    let status = edge.cli_ok(&["system", "status"]);
    assert!(
        status.contains(&format!("device: {device} on localhost (manual)")),
        "{status}"
    );

    // A wrong key: the credentials check fails with a fix.
    edge.stop();
    let bad_cs = cs.replace(
        cs.split("SharedAccessKey=").nth(1).unwrap(),
        &fleethub_core::keys::generate_key(),
    );
    let text = std::fs::read_to_string(&edge.config)
        .unwrap()
        .replace(&cs, &bad_cs);
    std::fs::write(&edge.config, text).unwrap();
    let out = edge.cli(&["check", "--output", "json", "--dont-run", "daemon-running"]);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cred = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "device-credentials")
        .unwrap()
        .clone();
    assert_eq!(cred["result"], "error", "{cred}");
    assert!(cred["fix"].as_str().unwrap().contains("key"), "{cred}");
}

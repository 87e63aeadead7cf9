//! End-to-end: `config apply` reloads the running daemon; a device deleted in the hub is
//! provisioned again through DPS (Dynamic mode); `fleetedge system reprovision`.

mod common;

use common::{Edge, Server, free_edge_port, wait_for};
use serde_json::Value;

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn reload_dynamic_reprovisioning_and_reprovision_command() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let group = server.cli_json(&[
        "dps",
        "enrollment-group",
        "create",
        "--group-id",
        "edge-reprov",
        "--edge-enabled",
    ]);
    let device = "edge-reprov-1";
    let key = fleethub_core::keys::derive_device_key(
        group["attestation"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap(),
        device,
    )
    .unwrap();
    let mut edge = Edge::new(dir.path());
    edge.cli_ok(&[
        "config",
        "init",
        "--dps-symmetric-key",
        "--scope-id",
        &server.id_scope(),
        "--registration-id",
        device,
        "--symmetric-key",
        &key,
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
        &format!("127.0.0.4:{}", free_edge_port()),
    ]);
    edge.append_config("\n[agent]\nstatus_report_interval_secs = 0.3\n");
    edge.cli_ok(&["config", "apply"]);
    edge.start();
    let reported_code = |server: &Server| -> Option<u64> {
        let t: Value = server.try_cli_json(&[
            "hub",
            "device-twin",
            "show",
            "--device-id",
            device,
            "--module-id",
            "$edgeAgent",
        ])?;
        t["properties"]["reported"]["lastDesiredStatus"]["code"].as_u64()
    };
    wait_for(30, "the first report", || {
        (reported_code(&server) == Some(417)).then_some(())
    });
    assert_eq!(count(&edge.log_text(), "provisioned by DPS"), 1);

    // `config apply` with a changed setting reloads the running daemon (no DPS).
    edge.append_config("log_max_bytes = 65536\n");
    let out = edge.cli_ok(&["config", "apply"]);
    assert!(
        out.contains("agent.log_max_bytes: 1048576 -> 65536"),
        "{out}"
    );
    assert!(out.contains("reloading"), "{out}");
    wait_for(30, "the reload", || {
        (count(&edge.log_text(), "configuration reloaded") == 1).then_some(())
    });
    wait_for(30, "the agent back after the reload", || {
        (count(&edge.log_text(), "agent connected as $edgeAgent") >= 2).then_some(())
    });
    assert_eq!(count(&edge.log_text(), "provisioned by DPS"), 1);

    // The device is deleted in the hub: the next connection is rejected and DPS runs again.
    server.cli_ok(&["hub", "device-identity", "delete", "--device-id", device]);
    edge.cli_ok(&["system", "reprovision"]);
    wait_for(60, "DPS to run again", || {
        (count(&edge.log_text(), "provisioned by DPS") == 2).then_some(())
    });
    wait_for(30, "the re-created device's agent report", || {
        (reported_code(&server) == Some(417)).then_some(())
    });

    // Delete it again and only reload: the hub's 401 triggers the Dynamic reprovisioning.
    server.cli_ok(&["hub", "device-identity", "delete", "--device-id", device]);
    let before = count(&edge.log_text(), "provisioned by DPS");
    edge.append_config("stable_after_secs = 60\n");
    edge.cli_ok(&["config", "apply"]);
    wait_for(60, "dynamic reprovisioning", || {
        (count(&edge.log_text(), "provisioned by DPS") == before + 1).then_some(())
    });
    let log = edge.log_text();
    assert!(
        log.contains("rejected the device identity; provisioning again"),
        "{log}"
    );
    wait_for(30, "the agent's report after reprovisioning", || {
        (reported_code(&server) == Some(417)).then_some(())
    });
    edge.stop();
}

//! End-to-end operator views with a real `fleethub serve` and the real `fleetedge` daemon:
//! the connection state that `system status` and `check` report when the hub goes away, and
//! an edge hub that cannot bind its port (a server on the same host and port).

mod common;

use std::time::{Duration, Instant};

use common::{Edge, Server, wait_for};
use serde_json::Value;

fn manual_device(server: &Server, device: &str) -> String {
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
    cs["connectionString"].as_str().unwrap().to_string()
}

fn check_entry(edge: &Edge, id: &str) -> Value {
    let out = edge.cli(&["check", "--output", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report}"))
        .clone()
}

#[test]
fn status_and_check_tell_the_hub_went_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let cs = manual_device(&server, "edge-op-1");
    let mut edge = Edge::new(dir.path());
    edge.init_manual(&server, &cs);
    edge.append_config("\n[agent]\nstatus_report_interval_secs = 0.5\n");
    edge.cli_ok(&["config", "apply"]);
    edge.start();
    wait_for(30, "both connections up", || {
        let s = edge.cli_ok(&["system", "status"]);
        (s.contains("agent ($edgeAgent) connection: connected since")
            && s.contains("device connection to the hub: connected since"))
        .then_some(())
    });
    assert_eq!(
        check_entry(&edge, "edge-agent-deployment")["result"],
        "warning"
    ); // 417: no deployment yet

    server.stop();
    let stopped = Instant::now();
    let status = wait_for(15, "system status to show the lost connections", || {
        let s = edge.cli_ok(&["system", "status"]);
        (s.contains("agent ($edgeAgent) connection: disconnected since")
            && s.contains("device connection to the hub: disconnected since"))
        .then_some(s)
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(15),
        "took {:?}",
        stopped.elapsed()
    );
    assert!(status.contains("last round trip"), "{status}");
    let agent = check_entry(&edge, "edge-agent-deployment");
    assert_eq!(agent["result"], "warning", "{agent}");
    assert!(
        agent["details"]
            .as_str()
            .unwrap()
            .contains("hub connection: disconnected since"),
        "{agent}"
    );
    let device = check_entry(&edge, "edge-device-connected");
    assert_eq!(device["result"], "warning", "{device}");
    assert!(
        device["details"]
            .as_str()
            .unwrap()
            .contains("disconnected since"),
        "{device}"
    );
    edge.stop();
}

#[test]
fn an_edge_hub_that_cannot_bind_says_why_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let cs = manual_device(&server, "edge-op-2");
    let mut edge = Edge::new(dir.path());
    let edge_port = edge.init_manual(&server, &cs);
    // the edge hub on the server's own MQTT address: the bind fails
    let taken = format!("127.0.0.1:{}", server.mqtt_port);
    let text = std::fs::read_to_string(&edge.config)
        .unwrap()
        .replace(&format!("127.0.0.4:{edge_port}"), &taken);
    std::fs::write(&edge.config, text).unwrap();

    // before the daemon runs, check binds the address itself
    let ports = check_entry(&edge, "edge-hub-ports");
    assert_eq!(ports["result"], "error", "{ports}");
    assert!(
        ports["details"]
            .as_str()
            .unwrap()
            .contains(&format!("cannot listen on {taken}")),
        "{ports}"
    );

    edge.cli_ok(&["config", "apply"]);
    edge.start();
    let row = wait_for(30, "edgeHub in `fleetedge list`", || {
        edge.list().into_iter().find(|(n, _, _)| n == "edgeHub")
    });
    assert_eq!(row.1, "failed", "{row:?}");
    assert!(
        row.2.contains(&format!("Failed: cannot listen on {taken}")) && row.2.contains("in use"),
        "{row:?}"
    );

    let logs = edge.cli_ok(&["logs", "edgeHub"]);
    assert!(
        logs.contains("the edge hub did not start") && logs.contains(&taken),
        "{logs}"
    );
    assert!(!logs.contains('\u{1b}'), "no colour codes: {logs:?}");
    let agent_logs = edge.cli_ok(&["logs", "edgeAgent", "--tail", "1000"]);
    assert!(agent_logs.contains("device identity"), "{agent_logs}");
    let recent = edge.cli_ok(&["logs", "edgeHub", "--since", "1h"]);
    assert!(recent.contains("the edge hub did not start"), "{recent}");
    let future = edge.cli_ok(&["logs", "edgeHub", "--since", "2100-01-01T00:00:00Z"]);
    assert_eq!(future, "", "nothing written after 2100");

    let ports = check_entry(&edge, "edge-hub-ports");
    assert_eq!(ports["result"], "error", "{ports}");
    let fix = ports["fix"].as_str().unwrap();
    assert!(
        fix.contains("[edge_hub] listen") && fix.contains("fleethub serve --bind"),
        "{ports}"
    );
    let status = edge.cli_ok(&["system", "status"]);
    assert!(
        status.contains(&format!("edge hub: failed (cannot listen on {taken}")),
        "{status}"
    );
    edge.stop();
}

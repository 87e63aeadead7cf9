//! End-to-end on the PostgreSQL store (a throwaway server, fleethub-store-postgres
//! `throwaway`): `fleethub serve --store-url` waits for an unreachable PostgreSQL instead of
//! failing; two nodes on one database share the hub's identity and registry; telemetry a node
//! acknowledged with PUBACK is in the shared log even after that node is killed with -9; a
//! second node with the same `--node-id` refuses to start.

mod common;

use common::{ServerProcess, free_port};
use fleethub_service_client::{CaTrust, Credentials, HttpsTransport, ServiceClient};
use fleethub_store::TelemetryStore;
use fleethub_store_postgres::{PgStore, throwaway::Throwaway};
use std::path::Path;
use std::time::Duration;

fn postgres() -> Throwaway {
    Throwaway::start().unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"))
}

fn node(data_dir: &Path, url: &str) -> ServerProcess {
    ServerProcess::start_on_store(data_dir, url, &[])
}

fn hub_client(s: &ServerProcess) -> ServiceClient<HttpsTransport> {
    let credentials =
        Credentials::from_connection_string(&s.info.hub_service_connection_string).unwrap();
    let transport = HttpsTransport::connect(
        &CaTrust::File(s.ca_pem()),
        "localhost",
        &format!("localhost:{}", s.https_port),
    )
    .unwrap();
    ServiceClient::hub(transport, credentials)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_an_unreachable_postgres_then_serves() {
    let pg = postgres();
    let url = pg.new_database().await.unwrap();
    pg.stop();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        pg.restart().unwrap();
        pg
    });
    let s = node(&data, &url);
    let pg = restarter.join().unwrap();
    let log = s.log();
    assert!(
        log.contains("cannot be reached yet") && log.contains("cannot connect to PostgreSQL"),
        "{log}"
    );
    assert!(log.contains("PostgreSQL store open"), "{log}");

    // While the store is down: 503 with Retry-After, nothing half-done; then service again.
    let resp = hub_client(&s)
        .send("GET", "/devices/nobody", &[], vec![], None)
        .await
        .unwrap();
    assert_eq!(resp.status, 404, "{}", String::from_utf8_lossy(&resp.body));
    pg.stop();
    let resp = hub_client(&s)
        .send("GET", "/devices/nobody", &[], vec![], None)
        .await
        .unwrap();
    assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.header("retry-after"), Some("5"));
    pg.restart().unwrap();
    let resp = hub_client(&s)
        .send("GET", "/devices/nobody", &[], vec![], None)
        .await
        .unwrap();
    assert_eq!(resp.status, 404, "{}", String::from_utf8_lossy(&resp.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_identity_registry_and_telemetry() {
    let pg = postgres();
    let url = pg.new_database().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("node1"), tmp.path().join("node2"));
    for d in [&d1, &d2] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut n1 = node(&d1, &url);
    let n2 = node(&d2, &url);
    // The first node initialised the identity, the second read it.
    assert_eq!(n1.info.id_scope, n2.info.id_scope);
    assert_eq!(
        n1.info.hub_service_connection_string,
        n2.info.hub_service_connection_string
    );
    // ... and the development CA: a device trusting one node's CA trusts every node.
    assert_eq!(
        std::fs::read(n1.ca_pem()).unwrap(),
        std::fs::read(n2.ca_pem()).unwrap(),
        "one development CA for all nodes"
    );

    // A device created through node 1 is there on node 2.
    let body = serde_json::json!({"deviceId": "pg-1", "authentication": {"symmetricKey": {}}});
    let resp = hub_client(&n1)
        .send("PUT", "/devices/pg-1", &[], vec![], Some(&body))
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let created: serde_json::Value = resp.json("PUT /devices").unwrap();
    let key = created["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = hub_client(&n2)
        .send("GET", "/devices/pg-1", &[], vec![], None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));

    // Telemetry acknowledged by node 1 survives its kill -9 in the shared log.
    let acked = common::device::acked_until_kill9(&mut n1, "pg-1", &key, 200).await;
    assert!(
        acked.len() >= 50,
        "too few messages: {}\n{}",
        acked.len(),
        n1.log()
    );

    let store = PgStore::connect(&url).await.unwrap();
    let mut stored = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let page = store.read_telemetry(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        assert_eq!(last.sequence_number, after + page.len() as u64, "gapless");
        after = last.sequence_number;
        for m in page {
            if let Some(id) = m.system_properties.get("message-id") {
                stored.insert(id.clone());
            }
        }
    }
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    drop(n2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_with_the_same_node_id_refuses_to_start() {
    let pg = postgres();
    let url = pg.new_database().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("node1"), tmp.path().join("node2"));
    for d in [&d1, &d2] {
        std::fs::create_dir_all(d).unwrap();
    }
    let n1 = ServerProcess::start_with(
        &d1,
        free_port(),
        free_port(),
        &[
            "--hub-hostname",
            "hub.fleethub.test",
            "--dps-hostname",
            "localhost",
            "--store-url",
            &url,
            "--node-id",
            "node-a",
        ],
    );
    assert!(n1.log().contains("node id claimed"), "{}", n1.log());
    let out = tokio::task::spawn_blocking({
        let (url, d2) = (url.clone(), d2.clone());
        move || {
            std::process::Command::new(common::bin())
                .args(["serve", "--bind", "127.0.0.1", "--store-url", &url])
                .args(["--node-id", "node-a", "--hub-hostname", "hub.fleethub.test"])
                .args(["--dps-hostname", "localhost", "--data-dir"])
                .arg(&d2)
                .args(["--mqtt-port", &free_port().to_string()])
                .args(["--https-port", &free_port().to_string()])
                .args(["--amqp-port", &free_port().to_string()])
                .output()
                .unwrap()
        }
    });
    let out = tokio::time::timeout(Duration::from_mins(1), out)
        .await
        .expect("the second node must refuse and exit within 60 s")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("node_id 'node-a' is in use by another running node"),
        "{stderr}"
    );
    drop(n1);
}

//! End-to-end: telemetry acknowledged with PUBACK is durable in the built-in endpoint; a
//! kill -9 of the server loses none of it.

mod common;

use common::ServerProcess;
use fleethub_service_client::{CaTrust, Credentials, HttpsTransport, ServiceClient};
use fleethub_store::TelemetryStore;

async fn create_device(s: &ServerProcess, id: &str) -> String {
    let credentials =
        Credentials::from_connection_string(&s.info.hub_service_connection_string).unwrap();
    let ca = CaTrust::File(s.ca_pem());
    let transport =
        HttpsTransport::connect(&ca, "localhost", &format!("localhost:{}", s.https_port)).unwrap();
    let hub = ServiceClient::hub(transport, credentials);
    let body = serde_json::json!({"deviceId": id, "authentication": {"symmetricKey": {}}});
    let resp = hub
        .send("PUT", &format!("/devices/{id}"), &[], vec![], Some(&body))
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let v: serde_json::Value = resp.json("PUT /devices").unwrap();
    v["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_telemetry() {
    let mut s = ServerProcess::start();
    let key = create_device(&s, "durable-1").await;
    let acked = common::device::acked_until_kill9(&mut s, "durable-1", &key, 300).await;
    assert!(
        acked.len() >= 100,
        "too few messages before the kill: {}\n{}",
        acked.len(),
        s.log()
    );

    let store = fleethub_store::sqlite::SqliteStore::open(&s.data_dir.join("store.db"))
        .expect("store opens after kill -9");
    let mut stored = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let page = store.read_telemetry(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
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
}

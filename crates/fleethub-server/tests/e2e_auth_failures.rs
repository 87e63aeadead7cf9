//! End-to-end: the auth-failure log of the real `fleethub` process records a disabled
//! enrollment's refusal and keeps its window across a restart.

mod common;

use common::ServerProcess;
use fleethub_device::provisioning::{ProvisioningClient, Transport};
use fleethub_service_client::{CaTrust, Credentials, HttpsTransport, ServiceClient, TlsTarget};
use serde_json::Value;
use std::time::Duration;

fn hub(s: &ServerProcess) -> ServiceClient<HttpsTransport> {
    let credentials =
        Credentials::from_connection_string(&s.info.hub_service_connection_string).unwrap();
    let target = TlsTarget::new(
        &CaTrust::File(s.ca_pem()),
        &credentials.host_name,
        &format!("127.0.0.1:{}", s.https_port),
    )
    .unwrap();
    ServiceClient::new(HttpsTransport::new(target), credentials)
}

async fn reasons(s: &ServerProcess) -> Vec<String> {
    let failures: Vec<Value> = hub(s).auth_failures(50).await.unwrap();
    failures
        .iter()
        .map(|f| format!("{} {}", f["identity"], f["reason"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_enrollment_is_recorded_and_kept_across_a_restart() {
    let mut s = ServerProcess::start();
    let (ok, out, err) = s.cli(&[
        "dps",
        "enrollment",
        "create",
        "--registration-id",
        "e2e-off",
        "--provisioning-status",
        "disabled",
    ]);
    assert!(ok, "enrollment create failed: {err}");
    let v: Value = serde_json::from_str(&out).expect("JSON output");
    let key = v["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    let client = ProvisioningClient::builder()
        .global_endpoint("localhost")
        .port(s.https_port)
        .id_scope(&s.info.id_scope)
        .registration_id("e2e-off")
        .symmetric_key(&key)
        .transport(Transport::Https)
        .ca_pem_file(s.ca_pem())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // refused: the SDK reports the `disabled` status as an error or returns it
    if let Ok(r) = client.register().await {
        assert_eq!(r.status, "disabled");
    }
    let expected = "individual enrollment 'e2e-off' is disabled";
    let before = reasons(&s).await;
    assert!(
        before.iter().any(|r| r.contains(expected)),
        "{before:?}\n{}",
        s.log()
    );

    // the store write is asynchronous: give it a moment before kill -9
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.restart();
    let after = reasons(&s).await;
    assert!(
        after.iter().any(|r| r.contains(expected)),
        "{after:?}\n{}",
        s.log()
    );
}

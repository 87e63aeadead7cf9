//! End-to-end: telemetry a device sends over MQTT lands in its partition of the Event
//! Hub-compatible log, in order and numbered from 0; consumer groups through the CLI; the
//! partition count stays what the data directory was created with.

mod common;

use common::{ServerProcess, free_port};
use fleethub_device::Message;
use fleethub_service_client::{CaTrust, Credentials, HttpsTransport, ServiceClient};
use std::process::Command;

fn service(s: &ServerProcess) -> ServiceClient<HttpsTransport> {
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

async fn send_telemetry(s: &ServerProcess, device: &str, count: usize) {
    let hub = service(s);
    let body = serde_json::json!({"deviceId": device, "authentication": {"symmetricKey": {}}});
    let created = hub
        .put(
            &format!("/devices/{device}"),
            &body,
            fleethub_service_client::Condition::None,
        )
        .await
        .unwrap();
    let key = created["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let client = common::device::sdk_client(s, device, key).await;
    for i in 0..count {
        client
            .send_event(Message::new(format!("{device}-{i}")))
            .await
            .unwrap();
    }
    client.close().await;
}

fn serve(data: &std::path::Path, ports: (u16, u16), partition_count: u32) -> ServerProcess {
    let config = data.with_extension("toml");
    std::fs::write(&config, format!("partition_count = {partition_count}\n")).unwrap();
    ServerProcess::start_with(
        data,
        ports.0,
        ports.1,
        &[
            "--hub-hostname",
            "hub.fleethub.test",
            "--dps-hostname",
            "localhost",
            "--config",
            config.to_str().unwrap(),
        ],
    )
}

fn cli(s: &ServerProcess, args: &[&str]) -> serde_json::Value {
    let out = Command::new(common::bin())
        .args(args)
        .args(["--server", &format!("localhost:{}", s.https_port)])
        .arg("--ca-cert")
        .arg(s.ca_pem())
        .args([
            "--hub-connection-string",
            &s.info.hub_service_connection_string,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_telemetry_in_partitions_groups_and_a_fixed_count() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ports = (free_port(), free_port());
    let mut s = serve(&data, ports, 2);
    send_telemetry(&s, "eh-dev-1", 5).await;
    send_telemetry(&s, "eh-dev-2", 3).await;

    let hub = service(&s);
    let info = hub.event_hub_info().await.unwrap();
    assert_eq!(info.name, "hub");
    assert_eq!(info.partition_count, 2);
    let partition_of = |d: &str| fleethub_storage_partition(d, 2);
    let mut expected_last = [-1_i64; 2];
    expected_last[partition_of("eh-dev-1") as usize] += 5;
    expected_last[partition_of("eh-dev-2") as usize] += 3;
    for p in &info.partitions {
        let i: usize = p.partition_id.parse().unwrap();
        assert_eq!(p.last_enqueued_sequence_number, expected_last[i], "{p:?}");
        assert_eq!(p.is_empty, expected_last[i] < 0);
    }
    // the offsets are the sequence numbers of the REST read API
    let page = hub
        .read_events(&[("from", "0".to_string()), ("limit", "100".to_string())])
        .await
        .unwrap();
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 8);
    let last_of_dev1 = messages
        .iter()
        .rfind(|m| m["deviceId"] == "eh-dev-1")
        .unwrap()["sequenceNumber"]
        .as_u64()
        .unwrap();
    let p1 = hub.partition_info(partition_of("eh-dev-1")).await.unwrap();
    if partition_of("eh-dev-1") != partition_of("eh-dev-2") {
        assert_eq!(p1.last_enqueued_offset, last_of_dev1.to_string());
    }

    // consumer groups through the CLI
    let created = cli(
        &s,
        &["hub", "consumer-group", "create", "--name", "reports"],
    );
    assert_eq!(created["name"], "reports");
    let list = cli(&s, &["hub", "consumer-group", "list"]);
    assert_eq!(list[0]["name"], "$Default");
    assert_eq!(list[1]["name"], "reports");

    // a restart with another partition_count keeps the stored one, says so, and goes on
    // numbering where it was
    s.kill9();
    let s = serve(&data, ports, 8);
    assert!(
        s.log()
            .contains("partition_count is fixed when the data directory is created"),
        "{}",
        s.log()
    );
    send_telemetry(&s, "eh-dev-3", 1).await;
    let hub = service(&s);
    let info = hub.event_hub_info().await.unwrap();
    assert_eq!(info.partition_count, 2);
    let p3 = partition_of("eh-dev-3") as usize;
    assert_eq!(
        info.partitions[p3].last_enqueued_sequence_number,
        expected_last[p3] + 1
    );
    assert_eq!(
        hub.get_consumer_group("REPORTS").await.unwrap().name,
        "reports"
    );
}

/// docs/protocol-notes.md, "Event Hub-compatible endpoint": FNV-1a of the device id.
fn fleethub_storage_partition(device: &str, count: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in device.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % count
}

//! Revocation does not wait for a device to read: a device that stopped reading its socket
//! (its writes stall, its event queue is full) is disconnected within a bound when it is
//! disabled, deleted or its key is regenerated, and nothing it sends after that is stored. A
//! connection whose writes stall is cut off after `mqtt_write_stall_timeout_secs`, and one
//! whose token outlives `max_token_lifetime_secs` is closed at that cap.

mod common;

use common::ServerProcess;
use common::device::{RawDevice, call, connect, put_device, service};
use fleethub_mqtt_codec::{Packet, Publish, QoS, Subscribe};
use fleethub_service_client::{HttpsTransport, ServiceClient};
use fleethub_store::TelemetryStore;
use serde_json::json;
use std::time::{Duration, Instant};

async fn connection_state(hub: &ServiceClient<HttpsTransport>, id: &str) -> String {
    let (status, v) = call(hub, "GET", &format!("/devices/{id}"), None).await;
    if status == 404 {
        return "Disconnected".into();
    }
    v["connectionState"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the hub shows `id` disconnected; returns how long that took, or `None` after
/// `bound`.
async fn disconnected_within(
    hub: &ServiceClient<HttpsTransport>,
    id: &str,
    bound: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if connection_state(hub, id).await == "Disconnected" {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Connects, subscribes to everything a device can, then floods itself with large twin
/// responses and `patches` desired-property patches without reading: the server's writes
/// stall and (with 300 patches) the connection's event queue fills up.
async fn stalled_device(
    s: &ServerProcess,
    hub: &ServiceClient<HttpsTransport>,
    id: &str,
    key: &str,
    patches: usize,
) -> RawDevice {
    // A large desired section makes every twin response large.
    let big = "x".repeat(20_000);
    let (status, v) = call(
        hub,
        "PATCH",
        &format!("/twins/{id}"),
        Some(&json!({"properties": {"desired": {"big": big}}})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let mut dev = connect(s, id, key, 3600).await;
    let filters = [
        format!("devices/{id}/messages/devicebound/#"),
        "$iothub/methods/POST/#".to_string(),
        "$iothub/twin/PATCH/properties/desired/#".to_string(),
        "$iothub/twin/res/#".to_string(),
    ];
    let sub = Subscribe::new(
        1,
        filters.into_iter().map(|f| (f, QoS::AtLeastOnce)).collect(),
    );
    dev.writer.send(&Packet::Subscribe(sub)).await.unwrap();
    match dev.reader.next().await.unwrap() {
        Some(Packet::SubAck(_)) => {}
        other => panic!("expected SUBACK, got {other:?}"),
    }
    // From here on the device never reads. 600 twin responses of 20 KB: more than the socket
    // buffers hold, so the server's writes stall.
    for rid in 0..600 {
        let get = Publish::new(
            format!("$iothub/twin/GET/?$rid={rid}"),
            QoS::AtMostOnce,
            0,
            Vec::new(),
        );
        dev.writer.push(&Packet::Publish(get)).unwrap();
    }
    let sent = tokio::time::timeout(Duration::from_secs(5), dev.writer.flush()).await;
    assert!(
        matches!(sent, Ok(Ok(()))),
        "twin requests not sent: {sent:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // More desired patches than the event queue holds.
    for i in 0..patches {
        let (status, v) = call(
            hub,
            "PATCH",
            &format!("/twins/{id}"),
            Some(&json!({"properties": {"desired": {"n": i}}})),
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
    assert_eq!(connection_state(hub, id).await, "Connected");
    dev
}

/// After revocation the device reads what it can, then publishes: nothing is stored.
async fn publish_after(dev: RawDevice, id: &str, mid: &str) {
    let RawDevice {
        mut reader,
        mut writer,
    } = dev;
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = reader.next().await {} });
    let topic = format!("devices/{id}/messages/events/%24.mid={mid}");
    let publish = Publish::new(topic, QoS::AtLeastOnce, 7, b"after".to_vec());
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        writer.send(&Packet::Publish(publish)),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

async fn stored_message_ids(s: &mut ServerProcess) -> Vec<String> {
    s.kill9();
    let store = fleethub_store::sqlite::SqliteStore::open(&s.data_dir.join("store.db")).unwrap();
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_telemetry(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.sequence_number;
        ids.extend(
            page.iter()
                .filter_map(|m| m.system_properties.get("message-id").cloned()),
        );
    }
    ids
}

/// Revocation must end the connection long before the write-stall cut-off (60 s here).
const REVOKE_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_does_not_read_is_cut_off_by_disable_delete_and_key_regeneration() {
    let (mut s, _tmp) = ServerProcess::start_with_config("mqtt_write_stall_timeout_secs = 60\n");
    let hub = service(&s);

    // Disable.
    let key = put_device(&hub, "d-disable", json!({"deviceId": "d-disable"})).await;
    let dev = stalled_device(&s, &hub, "d-disable", &key, 300).await;
    let disabled = json!({"deviceId": "d-disable", "status": "disabled",
        "authentication": {"symmetricKey": {"primaryKey": key}}});
    let (status, v) = call(&hub, "PUT", "/devices/d-disable", Some(&disabled)).await;
    assert_eq!(status, 200, "{v}");
    let took = disconnected_within(&hub, "d-disable", REVOKE_BOUND).await;
    assert!(
        took.is_some(),
        "disabled device still connected; log: {}",
        s.log()
    );
    publish_after(dev, "d-disable", "after-disable").await;

    // Delete.
    let key = put_device(&hub, "d-delete", json!({"deviceId": "d-delete"})).await;
    let dev = stalled_device(&s, &hub, "d-delete", &key, 300).await;
    let (status, v) = call(&hub, "DELETE", "/devices/d-delete", None).await;
    assert!(status == 200 || status == 204, "{status} {v}");
    let start = Instant::now();
    // The registry forgets a deleted device at once; the server log shows the connection end.
    while !logged_disconnect(&s.log(), "d-delete") {
        assert!(
            start.elapsed() < REVOKE_BOUND,
            "deleted device still connected; log: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(dev);

    // Key regeneration: the connection authenticated with the primary key ends.
    let key = put_device(&hub, "d-rekey", json!({"deviceId": "d-rekey"})).await;
    let dev = stalled_device(&s, &hub, "d-rekey", &key, 300).await;
    let rekeyed = json!({"deviceId": "d-rekey", "authentication": {"symmetricKey": {
        "primaryKey": fleethub_core::keys::generate_key()}}});
    let (status, v) = call(&hub, "PUT", "/devices/d-rekey", Some(&rekeyed)).await;
    assert_eq!(status, 200, "{v}");
    let took = disconnected_within(&hub, "d-rekey", REVOKE_BOUND).await;
    assert!(
        took.is_some(),
        "re-keyed device still connected; log: {}",
        s.log()
    );
    drop(dev);

    let ids = stored_message_ids(&mut s).await;
    assert!(
        !ids.iter().any(|m| m == "after-disable"),
        "telemetry sent after the disable was stored"
    );
}

fn logged_disconnect(log: &str, id: &str) -> bool {
    log.lines()
        .any(|l| l.contains("device disconnected") && l.contains(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_writes_stall_is_cut_off() {
    let (s, _tmp) = ServerProcess::start_with_config("mqtt_write_stall_timeout_secs = 2\n");
    let hub = service(&s);
    let key = put_device(&hub, "d-stall", json!({"deviceId": "d-stall"})).await;
    let _dev = stalled_device(&s, &hub, "d-stall", &key, 0).await;
    let took = disconnected_within(&hub, "d-stall", Duration::from_secs(10)).await;
    assert!(
        took.is_some(),
        "stalled connection still open; log: {}",
        s.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ends_at_the_token_lifetime_cap() {
    let (s, _tmp) = ServerProcess::start_with_config("max_token_lifetime_secs = 2\n");
    let hub = service(&s);
    let key = put_device(&hub, "d-cap", json!({"deviceId": "d-cap"})).await;
    // A token valid for a year is accepted ...
    let mut dev = connect(&s, "d-cap", &key, 365 * 24 * 3600).await;
    assert_eq!(connection_state(&hub, "d-cap").await, "Connected");
    // ... but the connection closes at the cap.
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        while let Ok(Some(_)) = dev.reader.next().await {}
    })
    .await;
    assert!(closed.is_ok(), "connection outlived the token cap");
}

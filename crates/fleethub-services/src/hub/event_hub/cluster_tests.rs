//! Live receivers on one node see the appends of another (two hubs on one store), through
//! the bus and, when its message is lost, through the store re-read; appends are announced
//! coalesced.

use super::*;
use crate::cluster::test_bus::two_hubs;
use crate::cluster::{ClusterBus, InvokeFuture, PeerError, PeerEvent, PeerMethod};
use crate::hub::{AuthKey, HubConfig, HubPrincipal, TelemetryIn};
use fleethub_storage::partition_of;
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn principal(device: &str) -> HubPrincipal {
    HubPrincipal {
        device_id: device.into(),
        module_id: None,
        token_expiry: u64::MAX,
        key: AuthKey::Primary,
        auth_epoch: 0,
    }
}

async fn send(hub: &Hub, device: &str) {
    let msg = TelemetryIn {
        body: b"x".to_vec(),
        ..Default::default()
    };
    hub.send_telemetry(&principal(device), msg).await.unwrap();
}

/// Waits (at most 5 s) until the watch shows `seq`.
async fn sees(w: &mut watch::Receiver<i64>, seq: i64) {
    tokio::time::timeout(Duration::from_secs(5), w.wait_for(|s| *s >= seq))
        .await
        .expect("the receiver is woken")
        .unwrap();
}

#[tokio::test]
async fn a_receiver_on_one_node_sees_another_nodes_appends() {
    let c = two_hubs().await;
    c.a.start_event_hub().await.unwrap();
    let count = c.b.start_event_hub().await.unwrap();
    let p = partition_of("d1", count);
    let mut w = c.b.watch_partition(p).unwrap();
    assert_eq!(*w.borrow_and_update(), -1);
    assert_eq!(
        c.b.resolve_event_position(p, &EventPosition::Latest)
            .await
            .unwrap(),
        0
    );

    send(&c.a, "d1").await;
    sees(&mut w, 0).await;
    assert_eq!(c.b.read_partition(p, 0, 10).await.unwrap().len(), 1);

    // The bus loses the announcement: b re-reads the partition from the store.
    let b = c.disconnect("b");
    send(&c.a, "d1").await;
    send(&c.a, "d1").await;
    sees(&mut w, 2).await;
    c.reconnect("b", b);
    // @latest is the store's, not what b appended itself (nothing).
    assert_eq!(
        c.b.resolve_event_position(p, &EventPosition::Latest)
            .await
            .unwrap(),
        3
    );
}

/// Records broadcasts.
#[derive(Default)]
struct Recorder(Mutex<Vec<(Instant, PeerEvent)>>);

impl ClusterBus for Recorder {
    fn node_id(&self) -> &'static str {
        "rec"
    }
    fn send(&self, _node: &str, _event: PeerEvent) {}
    fn broadcast(&self, event: PeerEvent) {
        self.0.lock().unwrap().push((Instant::now(), event));
    }
    fn invoke<'a>(&'a self, _node: &'a str, _call: PeerMethod) -> InvokeFuture<'a> {
        Box::pin(async { Err(PeerError("none".into())) })
    }
}

#[tokio::test]
async fn appends_are_announced_at_most_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(fleethub_store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap());
    let hub = Hub::new(
        &crate::Shared::new(store),
        HubConfig {
            host: "myhub.example.com".into(),
            token_skew_secs: 30,
        },
        vec![],
    );
    let rec = Arc::new(Recorder::default());
    hub.set_cluster_bus(rec.clone());
    let count = hub.start_event_hub().await.unwrap();
    let started = Instant::now();
    for i in 0..40 {
        send(&hub, &format!("dev-{}", i % 2)).await;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(ADVANCE_COALESCE * 3).await;
    let got = rec.0.lock().unwrap().clone();
    let advanced: Vec<&(Instant, PeerEvent)> = got
        .iter()
        .filter(|(_, e)| matches!(e, PeerEvent::PartitionsAdvanced { .. }))
        .collect();
    assert!(!advanced.is_empty());
    for pair in advanced.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= ADVANCE_COALESCE.saturating_sub(Duration::from_millis(5)));
    }
    let max = elapsed.as_millis() / ADVANCE_COALESCE.as_millis() + 2;
    assert!(advanced.len() as u128 <= max, "{} > {max}", advanced.len());
    // Together they name each partition's last sequence number.
    let mut last = std::collections::BTreeMap::new();
    for (_, e) in &advanced {
        if let PeerEvent::PartitionsAdvanced { last: l } = e {
            last.extend(l.iter().copied());
        }
    }
    for d in ["dev-0", "dev-1"] {
        let p = partition_of(d, count);
        let s = hub.store.partition_summary(p).await.unwrap();
        assert_eq!(last.get(&p), Some(&s.last_sequence_number));
    }
}

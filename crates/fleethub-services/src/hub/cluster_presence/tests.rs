//! Two hubs on one store over the in-process bus (`cluster::test_bus`; the NATS bus is tested
//! end to end in fleethub-server's `e2e_cluster_nats`).

use super::*;
use crate::cluster::test_bus::{Cluster, lease, now_unix, two_hubs};
use crate::hub::Attachment;
use fleethub_api::Device;

/// Nodes `a` and `b`, and device `d1`.
async fn cluster() -> Cluster {
    let c = two_hubs().await;
    c.a.put_device("d1", Device::default(), None).await.unwrap();
    c
}

const ALL: Features = Features {
    desired: true,
    methods: true,
    c2d: true,
};

/// Attaches `d1` to `hub` as connection `conn` and waits until the store shows it there.
async fn attach(c: &Cluster, hub: &Hub, node: &str, conn: u64) -> Attachment {
    let p = crate::hub::HubPrincipal {
        device_id: "d1".into(),
        module_id: None,
        token_expiry: u64::MAX,
        key: AuthKey::Primary,
        auth_epoch: hub.revocation_epoch(),
    };
    let a = hub.attach_principal(&p, conn);
    hub.set_features("d1", None, conn, ALL);
    for _ in 0..200 {
        let rec = c.store.get_presence("d1").await.unwrap();
        if rec.and_then(|r| r.node).as_deref() == Some(node) {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("presence of d1 never on {node}");
}

#[tokio::test]
async fn methods_and_events_reach_a_device_on_another_node() {
    let c = cluster().await;
    let mut on_a = attach(&c, &c.a, "a", 1).await;
    assert_eq!(
        c.b.get_device("d1")
            .await
            .unwrap()
            .connection_state
            .as_deref(),
        Some("Connected")
    );
    assert_eq!(c.b.connected_count_everywhere().await, 1);
    assert_eq!(c.a.connected_count_everywhere().await, 1);
    let b = c.b.clone();
    let call = tokio::spawn(async move {
        b.invoke_method("d1", None, "reboot", &serde_json::json!({"n": 1}), 5)
            .await
    });
    let Some(HubEvent::MethodRequest(request)) = on_a.events.recv().await else {
        panic!("no method request on node a");
    };
    let crate::hub::MethodCall { rid, name, payload } = *request;
    assert_eq!(
        (name.as_str(), &payload[..]),
        ("reboot", &br#"{"n":1}"#[..])
    );
    c.a.method_response(&rid, 201, br#"{"ok":true}"#);
    assert_eq!(
        call.await.unwrap().unwrap(),
        (201, serde_json::json!({"ok": true}))
    );
    // A desired patch written through node b.
    c.b.update_twin(
        crate::hub::TwinTarget::Device("d1"),
        &serde_json::json!({"properties": {"desired": {"fan": 1}}}),
        None,
        false,
    )
    .await
    .unwrap();
    match on_a.events.recv().await {
        Some(HubEvent::DesiredPatch(p)) => assert_eq!(p["fan"], 1),
        other => panic!("expected a desired patch, got {other:?}"),
    }
    // Disabling through node b closes the connection on node a.
    let mut d = c.b.get_device("d1").await.unwrap();
    d.status = Some("disabled".into());
    c.b.put_device("d1", d, Some("*")).await.unwrap();
    assert!(on_a.revocation.reason().unwrap().contains("disabled"));
}

#[tokio::test]
async fn a_dead_node_or_one_without_a_listener_leaves_its_devices_offline() {
    let c = cluster().await;
    let _on_a = attach(&c, &c.a, "a", 1).await;
    // Node a stops listening (its bus subscription is gone): offline at once.
    c.nodes.0.lock().unwrap().remove("a");
    let r =
        c.b.invoke_method("d1", None, "reboot", &Value::Null, 30)
            .await;
    assert_eq!(r, Err(MethodError::NotOnline("d1".into())));
    // Its lease goes stale: offline without asking, and shown disconnected.
    lease(&c.store, "a", now_unix() - 60).await;
    let r =
        c.b.invoke_method("d1", None, "reboot", &Value::Null, 30)
            .await;
    assert_eq!(r, Err(MethodError::NotOnline("d1".into())));
    let d = c.b.get_device("d1").await.unwrap();
    assert_eq!(d.connection_state.as_deref(), Some("Disconnected"));
    assert_eq!(c.b.connected_count_everywhere().await, 0);
    let listed =
        c.b.list_devices(fleethub_storage::PageRequest::default())
            .await
            .unwrap();
    assert_eq!(
        listed.items[0].connection_state.as_deref(),
        Some("Disconnected")
    );
    // A device connected nowhere.
    c.a.put_device("d2", Device::default(), None).await.unwrap();
    let r = c.b.invoke_method("d2", None, "m", &Value::Null, 30).await;
    assert_eq!(r, Err(MethodError::NotOnline("d2".into())));
}

/// Waits until `cond` holds (2 s at most).
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 2 s");
}

#[tokio::test]
async fn an_older_connection_whose_claim_comes_late_is_taken_over() {
    let c = cluster().await;
    let on_a = attach(&c, &c.a, "a", 1).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Node b's take-over does not reach node a (as if node a's claim were still queued)...
    let a_entry = c.nodes.0.lock().unwrap().remove("a").unwrap();
    let on_b = attach(&c, &c.b, "b", 7).await;
    c.nodes.0.lock().unwrap().insert("a".into(), a_entry);
    assert_eq!(on_a.revocation.reason(), None);
    // ...and node a's claim of its older connection reaches the store after node b's.
    let older = c.a.presence.map.lock().unwrap()["d1"].since_ms;
    c.a.cluster_claim("d1", None, older);
    // The newer connection (node b's) stays, the older one (node a's) goes, the store shows b.
    eventually("node a's older connection closed", || {
        on_a.revocation.reason().is_some()
    })
    .await;
    assert_eq!(on_b.revocation.reason(), None);
    for _ in 0..200 {
        let node = c
            .store
            .get_presence("d1")
            .await
            .unwrap()
            .and_then(|r| r.node);
        if node.as_deref() == Some("b") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store does not show d1 on node b");
}

#[tokio::test]
async fn connecting_to_another_node_takes_the_session_over() {
    let c = cluster().await;
    let on_a = attach(&c, &c.a, "a", 1).await;
    let on_b = attach(&c, &c.b, "b", 7).await;
    for _ in 0..200 {
        if on_a.revocation.reason().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reason = on_a
        .revocation
        .reason()
        .expect("node a's connection closed");
    assert!(reason.contains("node 'b' takes over"), "{reason}");
    assert_eq!(on_b.revocation.reason(), None);
    // A take-over older than the connection leaves it open.
    let on_a = attach(&c, &c.a, "a", 2).await;
    c.a.take_over_here("d1", None, "b", 0);
    assert_eq!(on_a.revocation.reason(), None);
    // Node b's connection (closed by that take-over: the claim is in the store before node a's
    // writer tells node b) goes; node b shows the one on node a.
    for _ in 0..200 {
        if on_b.revocation.reason().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(on_b.revocation.reason().is_some());
    c.b.detach("d1", None, 7);
    let listed =
        c.b.list_devices(fleethub_storage::PageRequest::default())
            .await
            .unwrap();
    assert_eq!(
        listed.items[0].connection_state.as_deref(),
        Some("Connected")
    );
}

#[tokio::test]
async fn a_revocation_lost_while_the_bus_was_down_is_made_up_for() {
    let c = cluster().await;
    let on_a = attach(&c, &c.a, "a", 1).await;
    // Node a cannot be reached: node b's broadcast does not arrive.
    let a = c.nodes.0.lock().unwrap().remove("a").unwrap();
    let mut d = c.b.get_device("d1").await.unwrap();
    d.status = Some("disabled".into());
    c.b.put_device("d1", d, Some("*")).await.unwrap();
    assert_eq!(on_a.revocation.reason(), None);
    // The bus is back: node a re-checks its connections.
    c.nodes.0.lock().unwrap().insert("a".into(), a);
    c.a.after_bus_outage().await;
    let reason = on_a.revocation.reason().expect("closed after the outage");
    assert!(reason.contains("disabled"), "{reason}");
}

//! The engine on two nodes sharing a store: a configuration changed on one node is what the
//! other plans from, through the bus and, when its event is lost, through the stored
//! configurations generation.

use super::tests::{agent, deployment, edge_device, hub, sensor_image};
use super::*;
use crate::cluster::STORE_RECHECK;
use crate::cluster::test_bus::two_hubs;
use crate::hub::configurations::validate::tests::base_manifest;

async fn configurations(hub: &Hub, id: &str) -> Option<Value> {
    hub.get_twin(TwinTarget::Device(id))
        .await
        .unwrap()
        .configurations
}

#[tokio::test]
async fn another_nodes_configuration_changes_are_planned_from() {
    let c = two_hubs().await;
    edge_device(&c.a, "edge-1", "test").await;
    c.a.put_configuration(
        "low",
        deployment("low", 1, "tags.env='test'", base_manifest("low")),
        None,
    )
    .await
    .unwrap();
    // Node b compiles (and caches) the deployments.
    c.b.apply_deployments_to("edge-1").await.unwrap();
    assert_eq!(sensor_image(&agent(&c.b, "edge-1").await), "low");

    // Created on a: b's next plan (a twin change, its sweep) uses it at once (the bus event).
    c.a.put_configuration(
        "high",
        deployment("high", 10, "tags.env='test'", base_manifest("high")),
        None,
    )
    .await
    .unwrap();
    c.b.apply_deployments_to("edge-1").await.unwrap();
    assert_eq!(sensor_image(&agent(&c.b, "edge-1").await), "high");
    assert_eq!(
        configurations(&c.b, "edge-1").await,
        Some(json!({"high": {"status": "Applied"}, "low": {"status": "Targeted"}}))
    );

    // Deleted on a while b cannot be reached (the event is lost): b sees the stored
    // generation change within STORE_RECHECK, drops its cache and sweeps.
    let b = c.disconnect("b");
    c.a.delete_configuration("high", None).await.unwrap();
    tokio::time::sleep(STORE_RECHECK + Duration::from_millis(50)).await;
    c.b.apply_deployments_to("edge-1").await.unwrap();
    assert_eq!(sensor_image(&agent(&c.b, "edge-1").await), "low");
    assert_eq!(
        configurations(&c.b, "edge-1").await,
        Some(json!({"low": {"status": "Applied"}}))
    );
    assert!(
        c.b.deployments.sweep.load(Ordering::SeqCst),
        "a change seen in the store re-plans every device"
    );
    c.reconnect("b", b);

    // Updated on a (another target): b follows.
    let mut low = c.a.get_configuration("low").await.unwrap();
    low.target_condition = Some("tags.env='prod'".into());
    c.a.put_configuration("low", low, Some("*")).await.unwrap();
    c.b.apply_deployments_to("edge-1").await.unwrap();
    assert_eq!(configurations(&c.b, "edge-1").await, None);
}

#[tokio::test]
async fn a_single_node_keeps_no_generation() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    hub.put_configuration(
        "one",
        deployment("one", 1, "tags.env='test'", base_manifest("one")),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        hub.store.get_setting(GENERATION_SETTING).await.unwrap(),
        None
    );
}

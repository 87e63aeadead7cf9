//! The engine against a real (temporary) store: targeting, moving between deployments,
//! layering, manual content, metrics, and no write when nothing changed.

use super::*;
use crate::Hub;
use crate::hub::HubConfig;
use crate::hub::TwinTarget;
use crate::hub::configurations::validate::tests::base_manifest;
use fleethub_api::{
    Capabilities, Configuration, ConfigurationContent, ConfigurationMetrics, Device,
};
use fleethub_store::sqlite::SqliteStore;

pub(super) fn hub(dir: &tempfile::TempDir) -> Hub {
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    Hub::new(
        &crate::Shared::new(store),
        HubConfig {
            host: "hub.local".into(),
            token_skew_secs: 30,
        },
        vec![],
    )
}

pub(super) async fn edge_device(hub: &Hub, id: &str, env: &str) {
    hub.put_device(
        id,
        Device {
            capabilities: Some(Capabilities { iot_edge: true }),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    hub.update_twin(
        TwinTarget::Device(id),
        &json!({"tags": {"env": env}}),
        None,
        false,
    )
    .await
    .unwrap();
}

pub(super) fn deployment(
    id: &str,
    priority: i64,
    target: &str,
    modules: Map<String, Value>,
) -> Configuration {
    Configuration {
        id: id.into(),
        priority,
        target_condition: Some(target.into()),
        content: Some(ConfigurationContent {
            modules_content: Some(modules),
            ..Default::default()
        }),
        metrics: Some(ConfigurationMetrics {
            queries: [(
                "tagged".to_string(),
                "SELECT deviceId FROM devices WHERE tags.env = 'test'".to_string(),
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) async fn agent(hub: &Hub, id: &str) -> Value {
    hub.get_twin(TwinTarget::Module(id, "$edgeAgent"))
        .await
        .unwrap()
        .properties
        .desired
}

pub(super) fn sensor_image(desired: &Value) -> &str {
    desired["modules"]["sensor"]["settings"]["image"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn devices_follow_their_deployments() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    edge_device(&hub, "edge-1", "test").await;
    hub.put_device("plain", Device::default(), None)
        .await
        .unwrap();
    hub.put_configuration(
        "high",
        deployment("high", 10, "tags.env='test'", base_manifest("high")),
        None,
    )
    .await
    .unwrap();
    hub.put_configuration(
        "low",
        deployment(
            "low",
            1,
            "tags.env='test' OR tags.env='prod'",
            base_manifest("low"),
        ),
        None,
    )
    .await
    .unwrap();
    hub.apply_deployments_all().await.unwrap();

    let d = agent(&hub, "edge-1").await;
    assert_eq!(sensor_image(&d), "high");
    let v1 = d["$version"].as_u64().unwrap();
    let hub_twin = hub
        .get_twin(TwinTarget::Module("edge-1", "$edgeHub"))
        .await
        .unwrap();
    assert_eq!(
        hub_twin.properties.desired["routes"]["up"],
        "FROM /messages/* INTO $upstream"
    );
    let twin = hub.get_twin(TwinTarget::Device("edge-1")).await.unwrap();
    assert_eq!(
        twin.configurations,
        Some(json!({"high": {"status": "Applied"}, "low": {"status": "Targeted"}}))
    );
    assert_eq!(
        hub.get_twin(TwinTarget::Device("plain"))
            .await
            .unwrap()
            .configurations,
        None
    );

    // nothing changed -> no new desired version
    hub.apply_deployments_to("edge-1").await.unwrap();
    assert_eq!(agent(&hub, "edge-1").await["$version"].as_u64(), Some(v1));

    // metrics
    let c = hub.get_configuration("high").await.unwrap();
    let sys = &c.system_metrics.as_ref().unwrap().results;
    assert_eq!(sys["targetedCount"], 1);
    assert_eq!(sys["appliedCount"], 1);
    assert_eq!(sys["reportedSuccessfulCount"], 0);
    assert_eq!(c.metrics.as_ref().unwrap().results["tagged"], 1);
    hub.patch_reported(
        TwinTarget::Module("edge-1", "$edgeAgent"),
        &json!({"lastDesiredVersion": v1, "lastDesiredStatus": {"code": 200}}),
    )
    .await
    .unwrap();
    let c = hub.get_configuration("high").await.unwrap();
    assert_eq!(
        c.system_metrics.unwrap().results["reportedSuccessfulCount"],
        1
    );
    let low = hub.get_configuration("low").await.unwrap();
    assert_eq!(low.system_metrics.unwrap().results["appliedCount"], 0);

    // the tag changes: moved to the lower-priority deployment
    hub.update_twin(
        TwinTarget::Device("edge-1"),
        &json!({"tags": {"env": "prod"}}),
        None,
        false,
    )
    .await
    .unwrap();
    hub.apply_deployments_to("edge-1").await.unwrap();
    let d = agent(&hub, "edge-1").await;
    assert_eq!(sensor_image(&d), "low");
    assert!(d["$version"].as_u64().unwrap() > v1);
    assert_eq!(
        hub.get_twin(TwinTarget::Device("edge-1"))
            .await
            .unwrap()
            .configurations,
        Some(json!({"low": {"status": "Applied"}}))
    );

    // manual content is kept but the automatic deployment wins
    hub.apply_configuration_content(
        "edge-1",
        ConfigurationContent {
            modules_content: Some(base_manifest("manual")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(sensor_image(&agent(&hub, "edge-1").await), "low");
    // deleting the deployment: the device falls back to its own content
    hub.delete_configuration("low", None).await.unwrap();
    hub.apply_deployments_all().await.unwrap();
    assert_eq!(sensor_image(&agent(&hub, "edge-1").await), "manual");
    assert_eq!(
        hub.get_twin(TwinTarget::Device("edge-1"))
            .await
            .unwrap()
            .configurations,
        None
    );
}

#[tokio::test]
async fn layers_and_late_modules() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    edge_device(&hub, "edge-2", "test").await;
    hub.put_configuration("base", deployment("base", 1, "*", base_manifest("b")), None)
        .await
        .unwrap();
    let layer = json!({
        "$edgeAgent": {"properties.desired.modules.extra": {"type": "docker", "settings": {"image": "extra:1"}}},
        "$edgeHub": {"properties.desired.routes.extra": "FROM /messages/modules/extra/* INTO $upstream"},
        "extra": {"properties.desired": {"interval": 7}}
    });
    hub.put_configuration(
        "layer",
        deployment(
            "layer",
            2,
            "tags.env='test'",
            layer.as_object().unwrap().clone(),
        ),
        None,
    )
    .await
    .unwrap();
    hub.apply_deployments_all().await.unwrap();
    let d = agent(&hub, "edge-2").await;
    assert_eq!(d["modules"]["extra"]["settings"]["image"], "extra:1");
    assert_eq!(sensor_image(&d), "b");
    // the module "extra" has no identity yet; it gets its content once created
    hub.put_module("edge-2", "extra", fleethub_api::Module::default(), None)
        .await
        .unwrap();
    hub.apply_deployments_to("edge-2").await.unwrap();
    let t = hub
        .get_twin(TwinTarget::Module("edge-2", "extra"))
        .await
        .unwrap();
    assert_eq!(t.properties.desired["interval"], 7);
    // the layer stops matching: its module and route go away from the agent and hub
    hub.update_twin(
        TwinTarget::Device("edge-2"),
        &json!({"tags": {"env": null}}),
        None,
        false,
    )
    .await
    .unwrap();
    hub.apply_deployments_to("edge-2").await.unwrap();
    let d = agent(&hub, "edge-2").await;
    assert!(d["modules"].get("extra").is_none());
    let h = hub
        .get_twin(TwinTarget::Module("edge-2", "$edgeHub"))
        .await
        .unwrap();
    assert!(h.properties.desired["routes"].get("extra").is_none());
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    edge_device(&hub, "edge-3", "test").await;
    let mut bad = base_manifest("x");
    bad.remove("$edgeHub");
    let e = hub
        .put_configuration("bad", deployment("bad", 1, "*", bad.clone()), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("$edgeHub"), "{e}");
    assert!(hub.list_configurations(0).await.unwrap().is_empty());
    let e = hub
        .apply_configuration_content(
            "edge-3",
            ConfigurationContent {
                modules_content: Some(bad),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)));
    assert!(
        hub.store
            .get_manual_content("edge-3")
            .await
            .unwrap()
            .is_none()
    );

    // create, duplicate, etag rules, immutable content
    let c = hub
        .put_configuration("good", deployment("good", 1, "*", base_manifest("g")), None)
        .await
        .unwrap();
    assert!(matches!(
        hub.put_configuration("good", deployment("good", 1, "*", base_manifest("g")), None)
            .await,
        Err(Error::ConfigurationAlreadyExists { .. })
    ));
    assert!(matches!(
        hub.put_configuration(
            "good",
            deployment("good", 2, "*", base_manifest("g")),
            Some("\"nope\"")
        )
        .await,
        Err(Error::PreconditionFailed(_))
    ));
    assert!(matches!(
        hub.put_configuration(
            "good",
            deployment("good", 2, "*", base_manifest("other")),
            c.etag.as_deref()
        )
        .await,
        Err(Error::Invalid(_))
    ));
    let mut update = deployment("good", 2, "tags.env='test'", base_manifest("g"));
    update.content = None;
    let u = hub
        .put_configuration("good", update, c.etag.as_deref())
        .await
        .unwrap();
    assert_eq!(u.priority, 2);
    assert_ne!(u.etag, c.etag);
    assert_eq!(u.created_time_utc, c.created_time_utc);
    assert!(u.content.unwrap().is_edge());
    assert!(matches!(
        hub.delete_configuration("good", c.etag.as_deref()).await,
        Err(Error::PreconditionFailed(_))
    ));
    assert!(matches!(
        hub.get_configuration("missing").await,
        Err(Error::ConfigurationNotFound { .. })
    ));
}

#[test]
fn diffs_turn_old_into_new() {
    let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "gone": true});
    let new = json!({"a": 1, "b": {"c": 5}, "e": [1]});
    let patch = diff(old.as_object().unwrap(), new.as_object().unwrap());
    assert_eq!(
        Value::Object(patch.clone()),
        json!({"gone": null, "b": {"c": 5, "d": null}, "e": [1]})
    );
    let mut t = old.as_object().unwrap().clone();
    crate::hub::twin::merge_patch(&mut t, &patch);
    assert_eq!(Value::Object(t), new);
}

#[tokio::test]
async fn a_list_read_before_a_change_does_not_fill_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    // A sweep lists the configurations (none yet) and compiles them, as `compiled_deployments`
    // does; a configuration is created (on another task) before the sweep caches its list.
    let change = hub.deployments.change_count();
    let stale = Arc::new(Vec::new());
    hub.put_configuration("late", deployment("late", 1, "*", base_manifest("l")), None)
        .await
        .unwrap();
    hub.deployments.keep(change, &stale);
    // The next pass (the one the change asked for) sees the new configuration.
    let compiled = hub.compiled_deployments().await.unwrap();
    assert_eq!(
        compiled.len(),
        1,
        "the cache kept the list read before the change"
    );
}

//! The behaviour every backend owes, one aggregate at a time: async checks generic over the
//! aggregate traits. A backend's tests call them with a fresh, empty store (the SQLite
//! backend's do, in `sqlite/tests.rs`); a new backend can pass them aggregate by aggregate.
//! Compiled for this crate's tests and with the `suite` feature.

mod c2d_feedback;
mod c2d_locks;
mod partitioned_log;

pub use c2d_feedback::c2d_feedback;
pub use c2d_locks::{c2d_locks, c2d_message};

pub use partitioned_log::{
    consumer_groups, telemetry, telemetry_default_partitions, telemetry_partitions,
    telemetry_sender_properties,
};

use crate::{
    AuthFailureRecord, AuthFailureStore, C2dStore, ConfigurationStore, DeviceRecord, DpsStore,
    LinkedHubStore, ModuleRecord, PageRequest, Precondition, PresenceRecord, PresenceStore,
    RegistryStore, SessionStore, SettingsStore, StoreError,
};
use fleethub_api::{
    AttestationMechanism, Configuration, ConfigurationContent, Device, IndividualEnrollment,
    Module, Twin,
};

fn enrollment(id: &str) -> IndividualEnrollment {
    IndividualEnrollment {
        registration_id: id.into(),
        attestation: AttestationMechanism::symmetric("a".into(), "b".into()),
        ..Default::default()
    }
}

fn device(id: &str) -> DeviceRecord {
    DeviceRecord {
        device: Device {
            device_id: id.into(),
            ..Default::default()
        },
        twin: Twin {
            device_id: id.into(),
            ..Default::default()
        },
    }
}

fn module(device_id: &str, module_id: &str) -> ModuleRecord {
    ModuleRecord {
        module: Module {
            device_id: device_id.into(),
            module_id: module_id.into(),
            ..Default::default()
        },
        twin: Twin {
            device_id: device_id.into(),
            module_id: Some(module_id.into()),
            ..Default::default()
        },
    }
}

fn if_match(etag: &str) -> Precondition {
    Precondition::IfMatch(etag.into())
}

/// Settings: `init_setting` keeps the first value, `put_setting` replaces it.
pub async fn settings(s: &impl SettingsStore) {
    assert_eq!(s.get_setting("scope").await.unwrap(), None);
    assert_eq!(s.init_setting("scope", "a").await.unwrap(), "a");
    assert_eq!(s.init_setting("scope", "b").await.unwrap(), "a");
    s.put_setting("scope", "c").await.unwrap();
    assert_eq!(s.get_setting("scope").await.unwrap().as_deref(), Some("c"));
}

/// Enrollments: case-insensitive IDs, etags on writes and deletes.
pub async fn enrollment_crud_with_etags(s: &impl DpsStore) {
    let e = s
        .put_enrollment(enrollment("Dev-01"), Precondition::MustNotExist)
        .await
        .unwrap();
    let etag = e.etag.clone().unwrap();
    assert!(e.created_date_time_utc.is_some());
    // case-insensitive lookup
    assert_eq!(
        s.get_enrollment("dev-01")
            .await
            .unwrap()
            .unwrap()
            .registration_id,
        "Dev-01"
    );
    assert!(matches!(
        s.put_enrollment(enrollment("dev-01"), Precondition::MustNotExist)
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.put_enrollment(enrollment("dev-01"), if_match("\"nope\""))
            .await,
        Err(StoreError::EtagMismatch { .. })
    ));
    let e2 = s
        .put_enrollment(enrollment("dev-01"), Precondition::IfMatch(etag.clone()))
        .await
        .unwrap();
    assert_ne!(e2.etag.as_deref(), Some(etag.as_str()));
    assert_eq!(e2.created_date_time_utc, e.created_date_time_utc);
    assert!(matches!(
        s.delete_enrollment("DEV-01", if_match(&etag)).await,
        Err(StoreError::EtagMismatch { .. })
    ));
    assert!(matches!(
        s.delete_enrollment("DEV-01", Precondition::MustNotExist)
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    s.delete_enrollment("DEV-01", Precondition::Any)
        .await
        .unwrap();
    assert!(s.get_enrollment("dev-01").await.unwrap().is_none());
    assert!(matches!(
        s.delete_enrollment("dev-01", Precondition::Any).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Enrollment pages: every item once, in ID order.
pub async fn pagination_visits_everything_once(s: &impl DpsStore) {
    for i in 0..25 {
        s.put_enrollment(enrollment(&format!("d-{i:02}")), Precondition::Any)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cont = None;
    loop {
        let p = s
            .list_enrollments(PageRequest {
                continuation: cont,
                max_items: 10,
            })
            .await
            .unwrap();
        seen.extend(p.items.into_iter().map(|e| e.registration_id));
        cont = p.continuation;
        if cont.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen[0], "d-00");
    assert_eq!(seen[24], "d-24");
}

/// Devices and modules: preconditions on writes and deletes, modules need their device and
/// go with it.
pub async fn registry(s: &impl RegistryStore) {
    let d = s
        .put_device(device("dev-1"), Precondition::MustNotExist)
        .await
        .unwrap();
    let etag = d.device.etag.clone().unwrap();
    assert_eq!(d.twin.device_etag.as_deref(), Some(etag.as_str()));
    assert!(matches!(
        s.put_device(device("dev-1"), Precondition::MustNotExist)
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.put_device(device("dev-2"), if_match("*")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.put_module(module("dev-2", "m"), Precondition::Any).await,
        Err(StoreError::NotFound { kind: "device", .. })
    ));
    let m = s
        .put_module(module("dev-1", "m"), Precondition::MustNotExist)
        .await
        .unwrap();
    assert_eq!(
        s.get_module("dev-1", "m")
            .await
            .unwrap()
            .unwrap()
            .module
            .etag,
        m.module.etag
    );
    assert!(matches!(
        s.delete_module("dev-1", "m", if_match("\"nope\"")).await,
        Err(StoreError::EtagMismatch { .. })
    ));
    assert!(matches!(
        s.delete_module("dev-1", "other", Precondition::Any).await,
        Err(StoreError::NotFound { kind: "module", .. })
    ));
    s.put_module(module("dev-1", "n"), Precondition::Any)
        .await
        .unwrap();
    let ids: Vec<_> = s
        .list_modules("dev-1")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.module.module_id)
        .collect();
    assert_eq!(ids, ["m", "n"]);
    s.delete_module("dev-1", "m", if_match(m.module.etag.as_deref().unwrap()))
        .await
        .unwrap();
    assert!(matches!(
        s.delete_device("dev-1", if_match("\"nope\"")).await,
        Err(StoreError::EtagMismatch { .. })
    ));
    s.delete_device("dev-1", if_match(&etag)).await.unwrap();
    assert!(s.get_device("dev-1").await.unwrap().is_none());
    assert!(s.list_modules("dev-1").await.unwrap().is_empty());
    assert!(matches!(
        s.delete_device("dev-1", Precondition::Any).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Configurations with Azure-style etags, and a device's manual content (needs the device,
/// goes with it).
pub async fn configuration_crud_with_etags(s: &(impl ConfigurationStore + RegistryStore)) {
    let cfg = |p: i64| Configuration {
        id: "dep-1".into(),
        priority: p,
        target_condition: Some("tags.a='b'".into()),
        ..Default::default()
    };
    let c1 = s
        .put_configuration(cfg(1), Precondition::MustNotExist)
        .await
        .unwrap();
    assert_eq!(c1.etag.as_deref(), Some("MQ=="));
    assert!(matches!(
        s.put_configuration(cfg(2), Precondition::MustNotExist)
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.put_configuration(cfg(2), if_match("\"nope\"")).await,
        Err(StoreError::EtagMismatch { .. })
    ));
    // a refused write changed nothing
    assert_eq!(s.get_configuration("dep-1").await.unwrap().unwrap(), c1);
    let c2 = s
        .put_configuration(cfg(2), if_match("\"MQ==\""))
        .await
        .unwrap();
    assert_eq!(c2.etag.as_deref(), Some("Mg=="));
    assert_eq!(c2.created_time_utc, c1.created_time_utc);
    assert_eq!(s.list_configurations(0).await.unwrap(), vec![c2.clone()]);
    assert!(matches!(
        s.delete_configuration("dep-1", if_match("MQ==")).await,
        Err(StoreError::EtagMismatch { .. })
    ));
    s.delete_configuration("dep-1", if_match("*"))
        .await
        .unwrap();
    assert!(s.get_configuration("dep-1").await.unwrap().is_none());
    assert!(matches!(
        s.delete_configuration("dep-1", Precondition::Any).await,
        Err(StoreError::NotFound { .. })
    ));

    // manual content needs the device and goes with it
    let content = ConfigurationContent {
        modules_content: Some(serde_json::Map::new()),
        ..Default::default()
    };
    assert!(matches!(
        s.put_manual_content("edge-1", content.clone()).await,
        Err(StoreError::NotFound { .. })
    ));
    s.put_device(device("edge-1"), Precondition::Any)
        .await
        .unwrap();
    s.put_manual_content("edge-1", content.clone())
        .await
        .unwrap();
    assert_eq!(s.get_manual_content("edge-1").await.unwrap(), Some(content));
    s.delete_device("edge-1", Precondition::Any).await.unwrap();
    assert!(s.get_manual_content("edge-1").await.unwrap().is_none());
}

/// Cloud-to-device queues: bounded, oldest first, updated, completed and purged per device.
pub async fn c2d_queue(s: &impl C2dStore) {
    let msg = c2d_message;
    let first = s.enqueue_c2d(msg("d1", "a"), 2).await.unwrap();
    let second = s.enqueue_c2d(msg("d1", "b"), 2).await.unwrap();
    assert!(first.sequence_number < second.sequence_number);
    assert!(matches!(
        s.enqueue_c2d(msg("d1", "c"), 2).await,
        Err(StoreError::QueueFull { max: 2, .. })
    ));
    s.enqueue_c2d(msg("d2", "x"), 2).await.unwrap();
    let mut updated = first.clone();
    updated.delivery_count = 3;
    s.update_c2d(updated).await.unwrap();
    let queued = s.list_c2d("d1", 10).await.unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(queued[0].delivery_count, 3);
    s.delete_c2d(first.sequence_number).await.unwrap();
    assert!(matches!(
        s.update_c2d(first).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.purge_c2d("d1").await.unwrap(), 1);
    assert!(s.list_c2d("d1", 10).await.unwrap().is_empty());
    assert_eq!(s.list_c2d("d2", 10).await.unwrap().len(), 1);
}

/// Persistent MQTT sessions: one document per client identity.
pub async fn sessions(s: &impl SessionStore) {
    assert_eq!(s.get_mqtt_session("d1").await.unwrap(), None);
    s.put_mqtt_session("d1", r#"{"a":1}"#).await.unwrap();
    s.put_mqtt_session("d1", r#"{"b":0}"#).await.unwrap();
    assert_eq!(
        s.get_mqtt_session("d1").await.unwrap().as_deref(),
        Some(r#"{"b":0}"#)
    );
    s.delete_mqtt_session("d1").await.unwrap();
    assert_eq!(s.get_mqtt_session("d1").await.unwrap(), None);
}

/// Presence: a claim returns the previous holder, a release by another node changes nothing,
/// activity only rises.
pub async fn presence(s: &impl PresenceStore) {
    assert_eq!(s.get_presence("d1").await.unwrap(), None);
    assert_eq!(s.claim_presence("d1", "n1", 100).await.unwrap(), None);
    let held = |node: Option<&str>, state, activity| PresenceRecord {
        node: node.map(str::to_string),
        state_updated_ms: state,
        last_activity_ms: activity,
    };
    assert_eq!(
        s.get_presence("d1").await.unwrap(),
        Some(held(Some("n1"), 100, 100))
    );
    // The same node again: no other previous holder.
    assert_eq!(s.claim_presence("d1", "n1", 110).await.unwrap(), None);
    s.touch_presence(vec![("d1".into(), 150), ("d1/m".into(), 150)])
        .await
        .unwrap();
    s.touch_presence(vec![("d1".into(), 120)]).await.unwrap();
    assert_eq!(
        s.get_presence("d1").await.unwrap(),
        Some(held(Some("n1"), 110, 150))
    );
    // Touching an identity never seen creates nothing.
    assert_eq!(s.get_presence("d1/m").await.unwrap(), None);
    // Several at once: only those the store has.
    s.claim_presence("d1/m", "n2", 130).await.unwrap();
    let mut many = s
        .get_presences(&["d1".into(), "d1/m".into(), "nobody".into()])
        .await
        .unwrap();
    many.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        many,
        vec![
            ("d1".to_string(), held(Some("n1"), 110, 150)),
            ("d1/m".to_string(), held(Some("n2"), 130, 130)),
        ]
    );
    assert!(s.get_presences(&[]).await.unwrap().is_empty());
    s.forget_presence("d1/m").await.unwrap();
    // Another node takes over; the first node's late release changes nothing.
    assert_eq!(
        s.claim_presence("d1", "n2", 200).await.unwrap().as_deref(),
        Some("n1")
    );
    assert!(!s.release_presence("d1", "n1", 210).await.unwrap());
    assert_eq!(
        s.get_presence("d1").await.unwrap(),
        Some(held(Some("n2"), 200, 200))
    );
    assert!(s.release_presence("d1", "n2", 300).await.unwrap());
    assert_eq!(
        s.get_presence("d1").await.unwrap(),
        Some(held(None, 300, 200))
    );
    // Connecting again after a disconnect: no previous holder.
    assert_eq!(s.claim_presence("d1", "n1", 400).await.unwrap(), None);
    s.claim_presence("d2", "n1", 400).await.unwrap();
    s.forget_presence("d1").await.unwrap();
    assert_eq!(s.get_presence("d1").await.unwrap(), None);
    assert!(s.get_presence("d2").await.unwrap().is_some());
    // A restarting node releases what it held, nothing else.
    s.claim_presence("d3", "n2", 400).await.unwrap();
    let mut counts = s.count_presence_by_node().await.unwrap();
    counts.sort();
    assert_eq!(counts, vec![("n1".to_string(), 1), ("n2".to_string(), 1)]);
    assert_eq!(s.release_node_presence("n1", 500).await.unwrap(), 1);
    assert_eq!(
        s.get_presence("d2").await.unwrap(),
        Some(held(None, 500, 400))
    );
    assert_eq!(
        s.get_presence("d3").await.unwrap().unwrap().node.as_deref(),
        Some("n2")
    );
}

fn auth_failure(n: usize) -> AuthFailureRecord {
    AuthFailureRecord {
        time_utc: format!("2026-01-01T00:00:{n:02}Z"),
        endpoint: "dps".into(),
        transport: "mqtt".into(),
        identity: format!("dev-{n}"),
        peer: n.is_multiple_of(2).then(|| format!("10.0.0.{n}:1234")),
        reason: format!("reason {n}"),
    }
}

/// Auth failures: newest first, only the newest `keep` are kept.
pub async fn auth_failures(s: &impl AuthFailureStore) {
    assert!(s.recent_auth_failures(10).await.unwrap().is_empty());
    for n in 0..5 {
        s.append_auth_failure(auth_failure(n), 3).await.unwrap();
    }
    let all = s.recent_auth_failures(10).await.unwrap();
    assert_eq!(all, vec![auth_failure(4), auth_failure(3), auth_failure(2)]);
    assert_eq!(
        s.recent_auth_failures(1).await.unwrap(),
        vec![auth_failure(4)]
    );
    assert!(s.recent_auth_failures(0).await.unwrap().is_empty());
    // a larger window keeps what is there and grows again
    s.append_auth_failure(auth_failure(5), 10).await.unwrap();
    assert_eq!(s.recent_auth_failures(10).await.unwrap().len(), 4);
}

fn linked_hub(name: &str, weight: i64) -> fleethub_api::LinkedHub {
    fleethub_api::LinkedHub {
        name: name.into(),
        connection_string: format!(
            "HostName={name};SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5"
        ),
        allocation_weight: Some(weight),
        apply_allocation_policy: Some(true),
        location: None,
        service_endpoint: None,
    }
}

/// Linked hubs: create, replace (host names compare case-insensitively), list by name, delete.
pub async fn linked_hubs(s: &impl LinkedHubStore) {
    assert!(s.list_linked_hubs().await.unwrap().is_empty());
    s.put_linked_hub(linked_hub("hub2.example", 1))
        .await
        .unwrap();
    s.put_linked_hub(linked_hub("hub1.example", 1))
        .await
        .unwrap();
    s.put_linked_hub(linked_hub("HUB2.example", 3))
        .await
        .unwrap();
    let all = s.list_linked_hubs().await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0], linked_hub("hub1.example", 1));
    assert_eq!(all[1], linked_hub("HUB2.example", 3), "replaced");
    s.delete_linked_hub("hub2.EXAMPLE").await.unwrap();
    assert_eq!(
        s.list_linked_hubs().await.unwrap(),
        vec![linked_hub("hub1.example", 1)]
    );
    assert!(matches!(
        s.delete_linked_hub("hub2.example").await,
        Err(StoreError::NotFound {
            kind: "linked hub",
            ..
        })
    ));
}

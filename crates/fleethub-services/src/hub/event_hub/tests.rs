use super::*;
use crate::clock::{Clock, TestClock};
use crate::hub::{AuthKey, HubConfig, HubPrincipal, TelemetryIn};
use fleethub_storage::partition_of;
use fleethub_store::sqlite::SqliteStore;

fn hub_with(dir: &tempfile::TempDir, clock: Clock, cfg: EventHubConfig) -> Hub {
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    Hub::new(
        &crate::Shared::with_clock(store, clock),
        HubConfig {
            host: "myhub.example.com".into(),
            token_skew_secs: 30,
        },
        vec![],
    )
    .with_event_hub(cfg)
}

fn principal(device: &str) -> HubPrincipal {
    HubPrincipal {
        device_id: device.into(),
        module_id: None,
        token_expiry: u64::MAX,
        key: AuthKey::Primary,
        auth_epoch: 0,
    }
}

async fn send(hub: &Hub, device: &str, body: &str) -> u64 {
    let msg = TelemetryIn {
        body: body.as_bytes().to_vec(),
        ..Default::default()
    };
    hub.send_telemetry(&principal(device), msg).await.unwrap()
}

/// Two device ids that land in different partitions of 4.
fn two_partitions() -> (String, String) {
    let a = "dev-0".to_string();
    let b = (1..1000)
        .map(|i| format!("dev-{i}"))
        .find(|d| partition_of(d, 4) != partition_of(&a, 4))
        .unwrap();
    (a, b)
}

#[tokio::test]
async fn properties_name_and_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with(&dir, Clock::system(), EventHubConfig::default());
    assert_eq!(hub.start_event_hub().await.unwrap(), 4);
    let p = hub.event_hub_properties();
    assert_eq!(p.name, "myhub");
    assert_eq!(p.partition_ids, ["0", "1", "2", "3"]);
    assert!(p.created_at_ms > 0);
    let empty = hub.partition_properties(2).await.unwrap();
    assert_eq!(
        empty,
        PartitionProperties {
            event_hub_name: "myhub".into(),
            partition_id: "2".into(),
            begin_sequence_number: -1,
            last_enqueued_sequence_number: -1,
            last_enqueued_offset: "-1".into(),
            last_enqueued_time_utc_ms: 0,
            is_empty: true,
        }
    );
    assert!(matches!(
        hub.partition_properties(4).await,
        Err(Error::PartitionOutOfRange {
            partition: 4,
            count: 4
        })
    ));
    assert!(matches!(
        hub.read_partition(9, 0, 10).await,
        Err(Error::PartitionOutOfRange { .. })
    ));
    assert!(hub.watch_partition(4).is_err());
}

#[tokio::test]
async fn partitions_number_their_events_and_positions_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::Utc::now();
    let time = TestClock::new(start);
    let hub = hub_with(
        &dir,
        Clock::from_source(time.clone()),
        EventHubConfig::default(),
    );
    hub.start_event_hub().await.unwrap();
    let (a, b) = two_partitions();
    let pa = partition_of(&a, 4);
    let mut watch = hub.watch_partition(pa).unwrap();
    assert_eq!(*watch.borrow_and_update(), -1);

    let o0 = send(&hub, &a, "a0").await;
    let ob = send(&hub, &b, "b0").await;
    time.advance(chrono::Duration::milliseconds(10));
    let o1 = send(&hub, &a, "a1").await;
    time.advance(chrono::Duration::milliseconds(10));
    let o2 = send(&hub, &a, "a2").await;
    assert!(o0 < ob && ob < o1 && o1 < o2);
    assert!(watch.has_changed().unwrap());
    assert_eq!(*watch.borrow_and_update(), 2);

    let events = hub.read_partition(pa, 0, 100).await.unwrap();
    let seqs: Vec<(i64, u64)> = events
        .iter()
        .map(|e| (e.sequence_number, e.offset))
        .collect();
    assert_eq!(seqs, [(0, o0), (1, o1), (2, o2)]);
    assert_eq!(events[1].message.body, b"a1");
    assert_eq!(events[1].partition, pa);
    let t1 = events[1].enqueued_time_utc_ms;
    assert_eq!(t1, start.timestamp_millis() + 10);
    assert_eq!(hub.read_partition(pa, 2, 100).await.unwrap().len(), 1);
    assert_eq!(hub.read_partition(pa, 1, 1).await.unwrap()[0].offset, o1);

    let props = hub.partition_properties(pa).await.unwrap();
    assert_eq!(props.begin_sequence_number, 0);
    assert_eq!(props.last_enqueued_sequence_number, 2);
    assert_eq!(props.last_enqueued_offset, o2.to_string());
    assert_eq!(props.last_enqueued_time_utc_ms, t1 + 10);
    assert!(!props.is_empty);

    let at = |pos: EventPosition| {
        let hub = &hub;
        async move { hub.resolve_event_position(pa, &pos).await.unwrap() }
    };
    assert_eq!(at(EventPosition::Start).await, 0);
    assert_eq!(at(EventPosition::Latest).await, 3);
    let offset = |offset, inclusive| EventPosition::Offset { offset, inclusive };
    assert_eq!(at(offset(o1, true)).await, 1);
    assert_eq!(at(offset(o1, false)).await, 2);
    // the other partition's offset between a0 and a1 starts at a1
    assert_eq!(at(offset(ob, true)).await, 1);
    assert_eq!(at(offset(o2 + 100, true)).await, 3);
    let seq = |sequence_number, inclusive| EventPosition::SequenceNumber {
        sequence_number,
        inclusive,
    };
    assert_eq!(at(seq(1, true)).await, 1);
    assert_eq!(at(seq(1, false)).await, 2);
    assert_eq!(at(seq(-1, false)).await, 0);
    let time_at = |utc_ms, inclusive| EventPosition::EnqueuedTime { utc_ms, inclusive };
    assert_eq!(at(time_at(t1, true)).await, 1);
    assert_eq!(at(time_at(t1, false)).await, 2);
    assert_eq!(at(time_at(0, true)).await, 0);
    assert_eq!(at(time_at(t1 + 1000, true)).await, 3);
}

#[tokio::test]
async fn retention_moves_the_beginning_and_keeps_the_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let time = TestClock::new(chrono::Utc::now());
    let hub = hub_with(
        &dir,
        Clock::from_source(time.clone()),
        EventHubConfig::default(),
    );
    let (a, _) = two_partitions();
    let pa = partition_of(&a, 4);
    send(&hub, &a, "old").await;
    time.advance(chrono::Duration::hours(2));
    let o1 = send(&hub, &a, "new").await;
    assert_eq!(
        hub.apply_retention(std::time::Duration::from_hours(1))
            .await
            .unwrap(),
        1
    );
    let props = hub.partition_properties(pa).await.unwrap();
    assert_eq!(
        (
            props.begin_sequence_number,
            props.last_enqueued_sequence_number
        ),
        (1, 1)
    );
    assert_eq!(
        hub.resolve_event_position(pa, &EventPosition::Start)
            .await
            .unwrap(),
        1
    );
    let from_zero = hub.read_partition(pa, 0, 10).await.unwrap();
    assert_eq!(from_zero.len(), 1);
    assert_eq!(from_zero[0].offset, o1);
    time.advance(chrono::Duration::hours(2));
    hub.apply_retention(std::time::Duration::from_hours(1))
        .await
        .unwrap();
    let props = hub.partition_properties(pa).await.unwrap();
    assert!(props.is_empty);
    assert_eq!(
        (
            props.begin_sequence_number,
            props.last_enqueued_sequence_number
        ),
        (2, 1)
    );
    assert_eq!(props.last_enqueued_offset, o1.to_string());
    send(&hub, &a, "next").await;
    let next = hub.read_partition(pa, 0, 10).await.unwrap();
    assert_eq!(next[0].sequence_number, 2);
}

#[tokio::test]
async fn the_stored_partition_count_wins() {
    let dir = tempfile::tempdir().unwrap();
    let two = EventHubConfig {
        partition_count: 2,
        ..EventHubConfig::default()
    };
    {
        let hub = hub_with(&dir, Clock::system(), two);
        // an append before start fixes the configured count too
        send(&hub, "d", "x").await;
        assert_eq!(hub.partition_count(), 2);
    }
    let hub = hub_with(&dir, Clock::system(), EventHubConfig::default());
    assert_eq!(hub.start_event_hub().await.unwrap(), 2);
    assert_eq!(hub.partition_count(), 2);
    assert_eq!(hub.event_hub_properties().partition_ids, ["0", "1"]);
    let zero = EventHubConfig {
        partition_count: 0,
        ..EventHubConfig::default()
    };
    let dir2 = tempfile::tempdir().unwrap();
    let bad = hub_with(&dir2, Clock::system(), zero);
    assert!(matches!(
        bad.start_event_hub().await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn consumer_groups_follow_azure_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EventHubConfig {
        max_consumer_groups: 3,
        ..EventHubConfig::default()
    };
    let hub = hub_with(&dir, Clock::system(), cfg);
    let names = |gs: Vec<ConsumerGroup>| gs.into_iter().map(|g| g.name).collect::<Vec<_>>();
    assert_eq!(
        names(hub.list_consumer_groups().await.unwrap()),
        ["$Default"]
    );
    assert_eq!(
        hub.consumer_group("$default").await.unwrap().name,
        "$Default"
    );

    let g = hub.create_consumer_group("Reports.v1_x-y").await.unwrap();
    assert_eq!(g.name, "Reports.v1_x-y");
    assert!(g.created_at_ms > 0);
    assert_eq!(
        hub.consumer_group("reports.V1_X-Y").await.unwrap().name,
        "Reports.v1_x-y"
    );
    assert!(matches!(
        hub.create_consumer_group("REPORTS.v1_x-y").await,
        Err(Error::ConsumerGroupExists(_))
    ));
    assert!(matches!(
        hub.create_consumer_group("$Default").await,
        Err(Error::ConsumerGroupExists(_))
    ));
    for bad in ["", "a b", "$x", &"x".repeat(51), "caf\u{e9}"] {
        assert!(
            matches!(
                hub.create_consumer_group(bad).await,
                Err(Error::InvalidConsumerGroupName(_))
            ),
            "{bad:?}"
        );
    }
    hub.create_consumer_group(&"a".repeat(50)).await.unwrap();
    assert!(matches!(
        hub.create_consumer_group("one-too-many").await,
        Err(Error::TooManyConsumerGroups { max: 3 })
    ));
    assert_eq!(
        names(hub.list_consumer_groups().await.unwrap()),
        [
            "$Default".to_string(),
            "a".repeat(50),
            "Reports.v1_x-y".into()
        ]
    );

    // deleting removes the group and its checkpoint; $Default stays
    hub.checkpoint("Reports.v1_x-y", 7).await.unwrap();
    hub.delete_consumer_group("reports.v1_x-y").await.unwrap();
    assert!(matches!(
        hub.consumer_group("Reports.v1_x-y").await,
        Err(Error::ConsumerGroupNotFound(_))
    ));
    assert!(matches!(
        hub.delete_consumer_group("Reports.v1_x-y").await,
        Err(Error::ConsumerGroupNotFound(_))
    ));
    hub.create_consumer_group("Reports.v1_x-y").await.unwrap();
    let page = hub.read_events("Reports.v1_x-y", None, 10).await.unwrap();
    assert_eq!(page.next, 0, "the old checkpoint went with the group");
    assert!(matches!(
        hub.delete_consumer_group("$DEFAULT").await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn the_live_feed_and_the_stored_log_show_the_same_sender_properties() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with(&dir, Clock::system(), EventHubConfig::default());
    let mut live = hub.subscribe_telemetry();
    let module = HubPrincipal {
        module_id: Some("mod-1".into()),
        key: AuthKey::Secondary,
        ..principal("dev-1")
    };
    let msg = TelemetryIn {
        system_properties: [
            ("message-id".to_string(), "m-1".to_string()),
            // a device cannot set the hub's own properties: IoT Hub's value wins
            (
                "iothub-connection-device-id".to_string(),
                "spoofed".to_string(),
            ),
        ]
        .into(),
        body: b"{}".to_vec(),
        ..Default::default()
    };
    hub.send_telemetry(&module, msg).await.unwrap();
    let fed = live.recv().await.unwrap();
    let expected: std::collections::BTreeMap<String, String> = [
        (
            "iothub-connection-auth-method",
            r#"{"scope":"module","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#,
        ),
        ("iothub-connection-device-id", "dev-1"),
        ("iothub-connection-module-id", "mod-1"),
        ("iothub-message-source", "Telemetry"),
        ("message-id", "m-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(fed.system_properties, expected);
    assert_eq!(fed.sender, None);
    let page = hub.read_events("$Default", Some(0), 10).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0], *fed);
}

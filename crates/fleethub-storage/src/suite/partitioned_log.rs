//! The partitioned telemetry log and its consumer groups (see the parent module).

use crate::{
    ConsumerGroupRecord, DEFAULT_PARTITION_COUNT, StoreError, TelemetryMessage, TelemetryStore,
    partition_of,
};

/// A telemetry message of `device` enqueued at second `sec` of 2024-01-01.
pub fn telemetry(device: &str, sec: u32) -> TelemetryMessage {
    TelemetryMessage {
        sequence_number: 0,
        partition: 0,
        partition_sequence_number: 0,
        device_id: device.into(),
        module_id: None,
        enqueued_time_utc: format!("2024-01-01T00:00:{sec:02}.0000000Z"),
        system_properties: std::collections::BTreeMap::default(),
        properties: std::collections::BTreeMap::default(),
        body: format!("{device}@{sec}").into_bytes(),
        sender: None,
    }
}

/// Unix ms of second `sec` of 2024-01-01.
fn ms(sec: u32) -> i64 {
    1_704_067_200_000 + i64::from(sec) * 1000
}

/// Two device ids in different partitions of `count`.
fn devices_in_two_partitions(count: u32) -> (String, String) {
    let a = "dev-a".to_string();
    let b = (0..1000)
        .map(|i| format!("dev-{i}"))
        .find(|d| partition_of(d, count) != partition_of(&a, count))
        .expect("two partitions");
    (a, b)
}

/// The partitioned telemetry log: a fixed partition count, per-partition numbering from 0
/// without gaps, reads from a position, summaries, positions by offset and time, and
/// retention that moves the beginning but never renumbers.
pub async fn telemetry_partitions(s: &impl TelemetryStore) {
    assert_eq!(s.init_partitions(4).await.unwrap(), 4);
    assert_eq!(
        s.init_partitions(8).await.unwrap(),
        4,
        "the first count stays"
    );
    let (a, b) = devices_in_two_partitions(4);
    let (pa, pb) = (partition_of(&a, 4), partition_of(&b, 4));
    let empty = s.partition_summary(pa).await.unwrap();
    assert_eq!(
        (
            empty.begin_sequence_number,
            empty.last_sequence_number,
            empty.is_empty
        ),
        (-1, -1, true)
    );
    assert!(matches!(
        s.partition_summary(4).await,
        Err(StoreError::NotFound { .. })
    ));

    let first = s
        .append_telemetry(vec![telemetry(&a, 1), telemetry(&b, 1), telemetry(&a, 2)])
        .await
        .unwrap();
    let second = s
        .append_telemetry(vec![telemetry(&b, 3), telemetry(&a, 4)])
        .await
        .unwrap();
    let all: Vec<_> = first.iter().chain(&second).collect();
    let numbering: Vec<(u32, i64)> = all
        .iter()
        .map(|m| (m.partition, m.partition_sequence_number))
        .collect();
    assert_eq!(numbering, [(pa, 0), (pb, 0), (pa, 1), (pb, 1), (pa, 2)]);
    assert!(
        all.windows(2)
            .all(|w| w[0].sequence_number < w[1].sequence_number)
    );

    let read = s.read_partition(pa, 0, 10).await.unwrap();
    assert_eq!(
        read.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        [
            all[0].body.clone(),
            all[2].body.clone(),
            all[4].body.clone()
        ]
    );
    assert_eq!(read[1].sequence_number, all[2].sequence_number);
    assert_eq!(read[1].partition_sequence_number, 1);
    assert_eq!(read[1].partition, pa);
    assert_eq!(
        s.read_partition(pa, 1, 1).await.unwrap()[0].body,
        all[2].body
    );
    assert!(s.read_partition(pa, 3, 10).await.unwrap().is_empty());
    // the global log sees the same messages with their partitions
    let global = s.read_telemetry(0, 10).await.unwrap();
    assert_eq!(global.len(), 5);
    assert_eq!(global[3].partition, pb);
    assert_eq!(global[3].partition_sequence_number, 1);

    let sum = s.partition_summary(pa).await.unwrap();
    assert_eq!(
        (
            sum.begin_sequence_number,
            sum.last_sequence_number,
            sum.is_empty
        ),
        (0, 2, false)
    );
    assert_eq!(sum.last_offset, all[4].sequence_number);
    assert_eq!(sum.last_enqueued_utc_ms, ms(4));

    // positions: by offset (global sequence number) and by enqueued time
    assert_eq!(s.partition_seq_at_offset(pa, 0).await.unwrap(), 0);
    assert_eq!(
        s.partition_seq_at_offset(pa, all[1].sequence_number)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.partition_seq_at_offset(pa, all[4].sequence_number)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.partition_seq_at_offset(pa, all[4].sequence_number + 1)
            .await
            .unwrap(),
        3
    );
    assert_eq!(s.partition_seq_at_time(pa, ms(2)).await.unwrap(), 1);
    assert_eq!(s.partition_seq_at_time(pa, ms(2) + 1).await.unwrap(), 2);
    assert_eq!(s.partition_seq_at_time(pa, 0).await.unwrap(), 0);
    assert_eq!(s.partition_seq_at_time(pa, ms(59)).await.unwrap(), 3);
    let other = (0..4).find(|p| *p != pa && *p != pb).unwrap();
    assert_eq!(s.partition_seq_at_time(other, 0).await.unwrap(), 0);

    // retention: the beginning moves up, the numbering goes on
    assert_eq!(
        s.prune_telemetry("2024-01-01T00:00:02.0000000Z")
            .await
            .unwrap(),
        2
    );
    let sum = s.partition_summary(pa).await.unwrap();
    assert_eq!(
        (sum.begin_sequence_number, sum.last_sequence_number),
        (1, 2)
    );
    assert_eq!(s.read_partition(pa, 0, 10).await.unwrap().len(), 2);
    assert_eq!(s.partition_seq_at_offset(pa, 0).await.unwrap(), 1);
    s.prune_telemetry("2024-01-01T00:01:00.0000000Z")
        .await
        .unwrap();
    let sum = s.partition_summary(pa).await.unwrap();
    assert_eq!(
        (
            sum.begin_sequence_number,
            sum.last_sequence_number,
            sum.is_empty
        ),
        (3, 2, true)
    );
    assert_eq!(sum.last_offset, all[4].sequence_number);
    assert_eq!(s.partition_seq_at_offset(pa, 0).await.unwrap(), 3);
    let next = s.append_telemetry(vec![telemetry(&a, 5)]).await.unwrap();
    assert_eq!(next[0].partition_sequence_number, 3);
}

/// Appending before `init_partitions` fixes the default partition count.
pub async fn telemetry_default_partitions(s: &impl TelemetryStore) {
    let m = s.append_telemetry(vec![telemetry("d", 0)]).await.unwrap();
    assert_eq!(m[0].partition, partition_of("d", DEFAULT_PARTITION_COUNT));
    assert_eq!(m[0].partition_sequence_number, 0);
    assert_eq!(
        s.init_partitions(DEFAULT_PARTITION_COUNT * 2)
            .await
            .unwrap(),
        DEFAULT_PARTITION_COUNT
    );
    assert!(matches!(
        s.read_partition(DEFAULT_PARTITION_COUNT, 0, 1)
            .await
            .map(|v| v.len()),
        Ok(0)
    ));
}

/// A message appended with its sender in compact form ([`crate::SenderAuth`]) reads back, by
/// every read, with the sender's connection properties in its system properties, next to the
/// device's own; one appended with them spelled out reads back as it was.
pub async fn telemetry_sender_properties(s: &impl TelemetryStore) {
    use crate::{SenderAuth, fill_sender_properties};
    let mut compact = telemetry("dev-s", 1);
    compact.module_id = Some("mod-s".into());
    compact
        .system_properties
        .insert("message-id".into(), "m-1".into());
    compact.sender = Some(SenderAuth::Module);
    let mut spelled = telemetry("dev-s", 2);
    spelled.sender = Some(SenderAuth::Hub);
    fill_sender_properties(&mut spelled);
    let mut device = telemetry("dev-t", 3);
    device.sender = Some(SenderAuth::Device);
    let appended = s
        .append_telemetry(vec![compact.clone(), spelled.clone(), device.clone()])
        .await
        .unwrap();
    assert_eq!(appended[0].sender, Some(SenderAuth::Module));
    let mut expected = Vec::new();
    for (mut m, stored) in [compact, spelled, device].into_iter().zip(&appended) {
        fill_sender_properties(&mut m);
        m.sequence_number = stored.sequence_number;
        m.partition = stored.partition;
        m.partition_sequence_number = stored.partition_sequence_number;
        expected.push(m);
    }
    assert_eq!(
        expected[0].system_properties["iothub-connection-module-id"],
        "mod-s"
    );
    let read = s.read_telemetry(0, 10).await.unwrap();
    assert_eq!(read, expected);
    for m in &expected {
        let got = s
            .read_partition(m.partition, m.partition_sequence_number, 1)
            .await
            .unwrap();
        assert_eq!(got, std::slice::from_ref(m));
    }
}

/// Consumer groups: case-insensitive names, a limit, and a delete that takes the group's
/// checkpoint with it.
pub async fn consumer_groups(s: &impl TelemetryStore) {
    let group = |name: &str| ConsumerGroupRecord {
        name: name.into(),
        created_utc: "2024-01-01T00:00:00.0000000Z".into(),
    };
    assert!(s.list_consumer_groups().await.unwrap().is_empty());
    s.create_consumer_group(group("$Default"), 3).await.unwrap();
    s.create_consumer_group(group("Reports"), 3).await.unwrap();
    assert!(matches!(
        s.create_consumer_group(group("reports"), 3).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    s.create_consumer_group(group("alerts"), 3).await.unwrap();
    assert!(matches!(
        s.create_consumer_group(group("more"), 3).await,
        Err(StoreError::LimitReached { max: 3, .. })
    ));
    assert_eq!(
        s.get_consumer_group("REPORTS").await.unwrap(),
        Some(group("Reports"))
    );
    assert_eq!(s.get_consumer_group("nope").await.unwrap(), None);
    let names: Vec<String> = s
        .list_consumer_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["$Default", "alerts", "Reports"]);

    s.set_checkpoint("Reports", 42).await.unwrap();
    s.set_checkpoint("alerts", 7).await.unwrap();
    s.delete_consumer_group("reports").await.unwrap();
    assert_eq!(s.get_checkpoint("Reports").await.unwrap(), 0);
    assert_eq!(s.get_checkpoint("alerts").await.unwrap(), 7);
    assert!(matches!(
        s.delete_consumer_group("reports").await,
        Err(StoreError::NotFound { .. })
    ));
    s.create_consumer_group(group("more"), 3).await.unwrap();
}

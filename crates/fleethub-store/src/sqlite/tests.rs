use super::*;
use crate::suite;
use crate::{DpsStore, RegistryStore, TelemetryStore};
use fleethub_api::{AttestationMechanism, Device, Twin};

fn enrollment(id: &str) -> IndividualEnrollment {
    IndividualEnrollment {
        registration_id: id.into(),
        attestation: AttestationMechanism::symmetric("a".into(), "b".into()),
        ..Default::default()
    }
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("store.db")).unwrap()
}

/// Runs a suite check against a fresh SQLite store.
macro_rules! suite_test {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let dir = tempfile::tempdir().unwrap();
            suite::$name(&open(&dir)).await;
        }
    )*};
}

suite_test!(
    settings,
    enrollment_crud_with_etags,
    pagination_visits_everything_once,
    registry,
    configuration_crud_with_etags,
    c2d_queue,
    c2d_locks,
    sessions,
    auth_failures,
    c2d_feedback,
    telemetry_partitions,
    telemetry_default_partitions,
    telemetry_sender_properties,
    consumer_groups,
    linked_hubs,
    presence,
);

#[tokio::test]
async fn assignment_is_atomic_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        let rec = RegistrationRecord {
            operation_id: "op-1".into(),
            state: DeviceRegistrationState {
                registration_id: "dev-01".into(),
                device_id: Some("dev-01".into()),
                status: Some("assigned".into()),
                enrollment_group_id: Some("G1".into()),
                ..Default::default()
            },
        };
        let dev = DeviceRecord {
            device: Device {
                device_id: "dev-01".into(),
                ..Default::default()
            },
            twin: Twin {
                device_id: "dev-01".into(),
                ..Default::default()
            },
        };
        s.commit_assignment(Assignment {
            registration: rec,
            device: Some(dev),
        })
        .await
        .unwrap();
    }
    let s = open(&dir);
    let r = s
        .get_registration_by_operation("op-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.state.registration_id, "dev-01");
    assert!(r.state.etag.is_some());
    assert!(
        s.get_device("dev-01")
            .await
            .unwrap()
            .unwrap()
            .device
            .etag
            .is_some()
    );
    let by_group = s
        .list_registrations(Some("g1"), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(by_group.items.len(), 1);
    let other = s
        .list_registrations(Some("g2"), PageRequest::default())
        .await
        .unwrap();
    assert!(other.items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.put_enrollment(enrollment(&format!("c-{i}")), Precondition::MustNotExist)
                .await
        }));
    }
    // one conflicting write must fail alone without rolling back the others
    let s2 = s.clone();
    tasks.push(tokio::spawn(async move {
        s2.put_enrollment(enrollment("c-0"), Precondition::IfMatch("\"x\"".into()))
            .await
    }));
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 200);
    let all = s
        .list_enrollments(PageRequest {
            continuation: None,
            max_items: 1000,
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 200);
}

#[test]
fn database_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let _s = SqliteStore::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn telemetry_log_appends_in_order_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let msg = |i: u8| TelemetryMessage {
        sequence_number: 0,
        partition: 0,
        partition_sequence_number: 0,
        device_id: "d1".into(),
        module_id: None,
        enqueued_time_utc: "2024-01-01T00:00:00Z".into(),
        system_properties: [("message-id".to_string(), format!("m{i}"))].into(),
        properties: std::collections::BTreeMap::default(),
        body: vec![i, 0xff],
        sender: None,
    };
    {
        let s = open(&dir);
        let stored = s.append_telemetry(vec![msg(1), msg(2)]).await.unwrap();
        assert!(stored[0].sequence_number < stored[1].sequence_number);
    }
    let s = open(&dir);
    let all = s.read_telemetry(0, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].body, vec![2, 0xff]);
    assert_eq!(
        s.read_telemetry(all[0].sequence_number, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn auth_failures_survive_reopen() {
    use crate::{AuthFailureRecord, AuthFailureStore};
    let dir = tempfile::tempdir().unwrap();
    let entry = |n: usize| AuthFailureRecord {
        time_utc: "t".into(),
        endpoint: "hub".into(),
        transport: "https".into(),
        identity: format!("d{n}"),
        peer: None,
        reason: "disabled".into(),
    };
    {
        let s = open(&dir);
        for n in 0..4 {
            s.append_auth_failure(entry(n), 2).await.unwrap();
        }
    }
    let s = open(&dir);
    assert_eq!(
        s.recent_auth_failures(10).await.unwrap(),
        vec![entry(3), entry(2)]
    );
}

/// `PRAGMA synchronous` as the writer connection and a reader connection see it (FULL = 2,
/// NORMAL = 1).
async fn synchronous_levels(store: &SqliteStore) -> (i64, i64) {
    let writer = store
        .pool
        .write(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?))
        .await
        .unwrap();
    let reader = store
        .pool
        .read(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?))
        .await
        .unwrap();
    (writer, reader)
}

#[tokio::test]
async fn durability_sets_synchronous_on_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let process = SqliteStore::open(&path).unwrap();
    assert_eq!(synchronous_levels(&process).await, (1, 1));
    drop(process);
    let power = SqliteStore::open_with(&path, Durability::Power).unwrap();
    assert_eq!(synchronous_levels(&power).await, (2, 2));
    let journal: String = power
        .pool
        .read(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(journal, "wal");
}

#[test]
fn durability_names() {
    assert_eq!("power".parse::<Durability>(), Ok(Durability::Power));
    assert_eq!("Process".parse::<Durability>(), Ok(Durability::Process));
    let e = "disk".parse::<Durability>().unwrap_err();
    assert!(e.contains("process") && e.contains("power"), "{e}");
    assert_eq!(Durability::Power.to_string(), "power");
    assert_eq!(Durability::default(), Durability::Process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_number_each_partition_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    assert_eq!(s.init_partitions(3).await.unwrap(), 3);
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let batch = (0..3)
                        .map(|k| suite::telemetry(&format!("dev-{t}-{k}"), i))
                        .collect();
                    s.append_telemetry(batch).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut total = 0;
    for p in 0..3 {
        let msgs = s.read_partition(p, 0, 10_000).await.unwrap();
        total += msgs.len();
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.partition, p);
            assert_eq!(
                m.partition_sequence_number, i as i64,
                "partition {p} has a gap"
            );
            assert_eq!(m.partition, crate::partition_of(&m.device_id, 3));
        }
        // per-partition order follows the global order
        assert!(
            msgs.windows(2)
                .all(|w| w[0].sequence_number < w[1].sequence_number)
        );
        let sum = s.partition_summary(p).await.unwrap();
        assert_eq!(sum.last_sequence_number, msgs.len() as i64 - 1);
        assert_eq!(sum.last_offset, msgs.last().unwrap().sequence_number);
    }
    assert_eq!(total, 16 * 20 * 3);
}

#[tokio::test]
async fn an_old_store_gets_its_log_partitioned_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        // a data directory written before the log was partitioned (schema version 8)
        let conn = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..8] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 8").unwrap();
        for (i, device) in ["a", "b", "a", "c", "a", "b"].iter().enumerate() {
            conn.execute(
                "INSERT INTO telemetry (device_id, module_id, enqueued_utc, system_properties, properties, body)
                 VALUES (?1, NULL, ?2, '{}', '{}', ?3)",
                params![device, format!("2024-01-01T00:00:0{i}.5000000Z"), vec![i as u8]],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO consumer_groups (name, offset_seq, updated_utc) VALUES ('reports', 3, 't')",
            [],
        )
        .unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.init_partitions(2).await.unwrap(), 2);
    let global = s.read_telemetry(0, 100).await.unwrap();
    assert_eq!(global.len(), 6);
    let mut next = [0_i64; 2];
    for m in &global {
        let p = crate::partition_of(&m.device_id, 2);
        assert_eq!(m.partition, p);
        assert_eq!(m.partition_sequence_number, next[p as usize]);
        next[p as usize] += 1;
    }
    for p in 0..2 {
        let sum = s.partition_summary(p).await.unwrap();
        assert_eq!(sum.last_sequence_number, next[p as usize] - 1);
        let last = global.iter().rfind(|m| m.partition == p).unwrap();
        assert_eq!(sum.last_offset, last.sequence_number);
        let sec = last.body[0];
        assert_eq!(
            sum.last_enqueued_utc_ms,
            1_704_067_200_500 + i64::from(sec) * 1000
        );
    }
    // enqueued times of the old rows are searchable
    let pa = crate::partition_of("a", 2);
    let at_third_a = s
        .partition_seq_at_time(pa, 1_704_067_200_000 + 4000)
        .await
        .unwrap();
    assert_eq!(
        s.read_partition(pa, at_third_a, 1).await.unwrap()[0].body,
        vec![4]
    );
    // checkpoints stay; appends continue each partition's numbering
    assert_eq!(s.get_checkpoint("reports").await.unwrap(), 3);
    let new = s
        .append_telemetry(vec![suite::telemetry("a", 9)])
        .await
        .unwrap();
    assert_eq!(new[0].partition_sequence_number, next[pa as usize]);
    assert!(new[0].sequence_number > global[5].sequence_number);
    drop(s);
    // reopening neither renumbers nor changes the count
    let s = open(&dir);
    assert_eq!(s.init_partitions(4).await.unwrap(), 2);
    assert_eq!(s.read_telemetry(0, 100).await.unwrap()[..6], global[..]);
}

#[tokio::test]
async fn a_large_old_log_is_numbered_in_chunks_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let rows = 25_000_usize;
    {
        let mut conn = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..8] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 8").unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO telemetry (device_id, module_id, enqueued_utc, system_properties, properties, body)
                     VALUES (?1, NULL, '2024-01-01T00:00:00.0000000Z', '{}', '{}', x'00')",
                )
                .unwrap();
            for i in 0..rows {
                insert.execute(params![format!("d{}", i % 97)]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.init_partitions(4).await.unwrap(), 4);
    let mut total = 0;
    for p in 0..4 {
        let sum = s.partition_summary(p).await.unwrap();
        let msgs = s.read_partition(p, 0, 10_000).await.unwrap();
        let mut n = msgs.len();
        let mut from = msgs.last().map_or(0, |m| m.partition_sequence_number + 1);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.partition_sequence_number, i as i64);
        }
        loop {
            let more = s.read_partition(p, from, 10_000).await.unwrap();
            let Some(last) = more.last() else { break };
            assert_eq!(more[0].partition_sequence_number, from);
            from = last.partition_sequence_number + 1;
            n += more.len();
        }
        assert_eq!(sum.last_sequence_number, n as i64 - 1);
        total += n;
    }
    assert_eq!(total, rows);
}

/// Appends queued behind each other run as one append (the writer is held busy so that they
/// queue up); an append that fails is stored not at all and the others are stored in full,
/// numbered without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_appends_run_together_and_a_failing_one_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    assert_eq!(s.init_partitions(3).await.unwrap(), 3);
    let refuse = super::append_tests::refuse_bad_devices("ABORT");
    s.pool
        .write(move |c| Ok(c.execute_batch(&refuse)?))
        .await
        .unwrap();
    for round in 0..3 {
        let busy = super::append_tests::hold_writer_busy(&s).await;
        let tasks: Vec<_> = (0..40)
            .map(|t| {
                let s = s.clone();
                let second = if t % 5 == 2 { "bad" } else { "dev" };
                let batch = vec![
                    suite::telemetry(&format!("dev-{t}-a"), round),
                    suite::telemetry(&format!("{second}-{t}-b"), round),
                ];
                tokio::spawn(async move { s.append_telemetry(batch).await })
            })
            .collect();
        busy.await.unwrap().unwrap();
        for (t, task) in tasks.into_iter().enumerate() {
            let r = task.await.unwrap();
            if t % 5 == 2 {
                assert!(r.is_err(), "task {t} must fail");
            } else {
                let stored = r.unwrap();
                assert_eq!(stored.len(), 2);
                assert!(stored[0].sequence_number + 1 == stored[1].sequence_number);
            }
        }
    }
    let all = s.read_telemetry(0, 10_000).await.unwrap();
    assert_eq!(all.len(), 3 * 32 * 2, "the good batches in full");
    assert!(
        all.iter()
            .all(|m| !matches!(m.device_id.split('-').nth(1), Some(t) if t.parse::<u32>().unwrap() % 5 == 2)),
        "nothing of a failed batch is stored"
    );
    for p in 0..3 {
        let msgs = s.read_partition(p, 0, 10_000).await.unwrap();
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(
                m.partition_sequence_number, i as i64,
                "partition {p} has a gap"
            );
        }
    }
}

/// One append of more rows than one INSERT statement carries: every returned number is the
/// row it names (sequence number, partition and partition sequence number read back).
#[tokio::test]
async fn a_large_append_returns_the_numbers_of_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert_eq!(s.init_partitions(4).await.unwrap(), 4);
    s.append_telemetry(vec![suite::telemetry("first", 0)])
        .await
        .unwrap();
    let batch = (0..100_u32)
        .map(|i| suite::telemetry(&format!("dev-{}", i % 7), i % 60))
        .collect();
    let stored = s.append_telemetry(batch).await.unwrap();
    assert_eq!(stored.len(), 100);
    let read = s.read_telemetry(1, 1000).await.unwrap();
    assert_eq!(read.len(), 100);
    for (w, r) in stored.iter().zip(&read) {
        assert_eq!(
            (w.sequence_number, w.partition, w.partition_sequence_number),
            (r.sequence_number, r.partition, r.partition_sequence_number)
        );
        assert_eq!(
            (&w.body, &w.enqueued_time_utc),
            (&r.body, &r.enqueued_time_utc)
        );
    }
    assert!(
        stored
            .windows(2)
            .all(|w| w[1].sequence_number == w[0].sequence_number + 1)
    );
}

#[tokio::test]
async fn rows_stored_before_the_compact_sender_read_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let auth = crate::SenderAuth::Device.auth_method();
    let old_sys = serde_json::json!({
        "iothub-connection-auth-method": auth,
        "iothub-connection-device-id": "d1",
        "iothub-message-source": "Telemetry",
        "message-id": "old",
    })
    .to_string();
    {
        // a data directory written before migration 15: the sender's properties in the JSON
        let conn = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..14] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 14").unwrap();
        conn.execute(
            "INSERT INTO telemetry (device_id, module_id, enqueued_utc, system_properties,
                 properties, body)
             VALUES ('d1', NULL, '2024-01-01T00:00:00.0000000Z', ?1, '{}', x'01')",
            params![old_sys],
        )
        .unwrap();
    }
    let s = open(&dir);
    let mut new = crate::suite::telemetry("d1", 1);
    new.system_properties
        .insert("message-id".into(), "new".into());
    new.sender = Some(crate::SenderAuth::Device);
    s.append_telemetry(vec![new]).await.unwrap();
    let read = s.read_telemetry(0, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    let sys = |i: usize| {
        let mut m = read[i].system_properties.clone();
        m.remove("message-id");
        (m, read[i].sender)
    };
    assert_eq!(sys(0), sys(1));
    assert_eq!(
        read[0].system_properties["iothub-connection-auth-method"],
        auth
    );
    assert_eq!(read[0].system_properties["message-id"], "old");
    assert_eq!(read[1].system_properties["message-id"], "new");
    let raw: Vec<(Option<i64>, String)> = {
        let conn = Connection::open(&path).unwrap();
        let mut st = conn
            .prepare("SELECT sender, system_properties FROM telemetry ORDER BY seq")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    assert_eq!(raw[0], (None, old_sys));
    assert_eq!(raw[1], (Some(1), r#"{"message-id":"new"}"#.to_string()));
}

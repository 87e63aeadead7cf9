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
    sessions,
    auth_failures,
    linked_hubs,
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
        device_id: "d1".into(),
        module_id: None,
        enqueued_time_utc: "2024-01-01T00:00:00Z".into(),
        system_properties: [("message-id".to_string(), format!("m{i}"))].into(),
        properties: std::collections::BTreeMap::default(),
        body: vec![i, 0xff],
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

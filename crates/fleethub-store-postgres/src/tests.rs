//! The backend-independent store suite on PostgreSQL, and what only several nodes on one
//! database can show: preconditions and telemetry numbering under concurrent writers of two
//! stores (two nodes), group commit, schema versions, an unreachable server.

use crate::throwaway::Throwaway;
use crate::{ConnectError, PgStore};
use fleethub_api::{AttestationMechanism, IndividualEnrollment};
use fleethub_storage::{
    C2dLock, C2dLockRelease, C2dStore, DpsStore, Precondition, StoreError, TelemetryStore, suite,
};
use std::sync::Arc;

fn server() -> Throwaway {
    Throwaway::start().unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"))
}

async fn fresh(pg: &Throwaway) -> PgStore {
    let url = pg.new_database().await.unwrap();
    PgStore::connect(&url).await.unwrap()
}

/// Runs each named suite check against a fresh database of one server.
macro_rules! run_suite {
    ($pg:expr, $($name:ident),* $(,)?) => {$(
        eprintln!("suite::{}", stringify!($name));
        suite::$name(&fresh($pg).await).await;
    )*};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_suite_passes_on_postgres() {
    let pg = server();
    run_suite!(
        &pg,
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
}

fn enrollment(id: &str) -> IndividualEnrollment {
    IndividualEnrollment {
        registration_id: id.into(),
        attestation: AttestationMechanism::symmetric("a".into(), "b".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preconditions_hold_under_concurrent_writers_on_two_nodes() {
    let pg = server();
    let url = pg.new_database().await.unwrap();
    let nodes = [
        Arc::new(PgStore::connect(&url).await.unwrap()),
        Arc::new(PgStore::connect(&url).await.unwrap()),
    ];
    // Creates of one id that must not overwrite: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = nodes[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            s.put_enrollment(enrollment("same"), Precondition::MustNotExist)
                .await
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(e) => created.push(e),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one create wins");
    // Updates with the same If-Match etag: exactly one wins, the others see a mismatch.
    let etag = created[0].etag.clone().unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = nodes[i % 2].clone();
        let etag = etag.clone();
        tasks.push(tokio::spawn(async move {
            s.put_enrollment(enrollment("same"), Precondition::IfMatch(etag))
                .await
        }));
    }
    let (mut ok, mut mismatch) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::EtagMismatch { .. }) => mismatch += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, mismatch), (1, 19));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c2d_lock_is_taken_and_settled_once_under_two_nodes() {
    let pg = server();
    let url = pg.new_database().await.unwrap();
    let nodes = [
        Arc::new(PgStore::connect(&url).await.unwrap()),
        Arc::new(PgStore::connect(&url).await.unwrap()),
    ];
    let m = nodes[0]
        .enqueue_c2d(suite::c2d_message("d1", "m"), 50)
        .await
        .unwrap();
    let now = 1_700_000_000_000_i64;
    // HTTPS receives of one message on both nodes at once: one lock, one delivery counted.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (s, mut m) = (nodes[i % 2].clone(), m.clone());
            m.delivery_count = 1;
            let lock = C2dLock {
                token: format!("t{i}"),
                now_ms: now,
                until_ms: now + 60_000,
            };
            tokio::spawn(async move { s.lock_c2d(m, lock).await.map(|won| won.then_some(i)) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.unwrap().unwrap());
    }
    assert_eq!(winners.len(), 1, "exactly one lock wins: {winners:?}");
    let token = format!("t{}", winners[0]);
    // The winner's token on either node completes it exactly once.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (s, token) = (nodes[i % 2].clone(), token.clone());
            tokio::spawn(async move {
                s.settle_c2d_lock("d1", &token, now + 1, C2dLockRelease::Remove)
                    .await
            })
        })
        .collect();
    let mut settled = Vec::new();
    for t in tasks {
        settled.extend(t.await.unwrap().unwrap());
    }
    assert_eq!(settled, [m.sequence_number]);
    assert!(nodes[1].list_c2d("d1", 50).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_of_two_nodes_number_each_partition_without_gaps_and_in_order() {
    let pg = server();
    let url = pg.new_database().await.unwrap();
    let nodes = [
        Arc::new(PgStore::connect(&url).await.unwrap()),
        Arc::new(PgStore::connect(&url).await.unwrap()),
    ];
    assert_eq!(nodes[0].init_partitions(3).await.unwrap(), 3);
    assert_eq!(nodes[1].init_partitions(8).await.unwrap(), 3);
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let s = nodes[t % 2].clone();
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
        let msgs = nodes[1].read_partition(p, 0, 10_000).await.unwrap();
        total += msgs.len();
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.partition, p);
            assert_eq!(
                m.partition_sequence_number, i as i64,
                "partition {p} has a gap"
            );
            assert_eq!(m.partition, fleethub_storage::partition_of(&m.device_id, 3));
        }
        assert!(
            msgs.windows(2)
                .all(|w| w[0].sequence_number < w[1].sequence_number)
        );
        let sum = nodes[0].partition_summary(p).await.unwrap();
        assert_eq!(sum.last_sequence_number, msgs.len() as i64 - 1);
        assert_eq!(sum.last_offset, msgs.last().unwrap().sequence_number);
    }
    assert_eq!(total, 16 * 20 * 3);
    // The global log is gapless from 1.
    let global = nodes[0].read_telemetry(0, 10_000).await.unwrap();
    assert_eq!(global.len(), total);
    assert!(
        global
            .iter()
            .enumerate()
            .all(|(i, m)| m.sequence_number == i as u64 + 1)
    );
}

/// Transactions committed in the database so far.
async fn commits(url: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_group_committed() {
    let pg = server();
    let url = pg.new_database().await.unwrap();
    let s = Arc::new(PgStore::connect(&url).await.unwrap());
    s.init_partitions(4).await.unwrap();
    let before = commits(&url).await;
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.append_telemetry(vec![suite::telemetry(&format!("d{i}"), 1)])
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().len(), 1);
    }
    // Statistics reach pg_stat_database within the stats interval.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let used = commits(&url).await - before;
    assert!(
        used < 200,
        "400 concurrent appends took {used} transactions: they are not grouped"
    );
    assert_eq!(s.read_telemetry(0, 1000).await.unwrap().len(), 400);
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_an_unreachable_server_is_transient() {
    let pg = server();
    let url = pg.new_database().await.unwrap();
    drop(PgStore::connect(&url).await.unwrap());
    // Connecting again to the same schema is fine (nothing to migrate).
    drop(PgStore::connect(&url).await.unwrap());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("UPDATE schema_version SET version = version + 1")
        .await
        .unwrap();
    let Err(e) = PgStore::connect(&url).await else {
        panic!("a newer schema must be refused")
    };
    assert!(matches!(e, ConnectError::SchemaTooNew { .. }), "{e}");
    assert!(!e.is_transient());
    assert!(e.to_string().contains("upgrade this node"), "{e}");

    pg.stop();
    let Err(e) = PgStore::connect(&url).await else {
        panic!("a stopped server cannot be reached")
    };
    assert!(e.is_transient(), "{e}");
    assert!(
        e.to_string().contains("cannot connect to PostgreSQL"),
        "{e}"
    );
    assert!(
        matches!(
            PgStore::connect("mysql://x").await,
            Err(ConnectError::BadUrl(_))
        ),
        "a non-PostgreSQL url"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_unavailable_and_the_store_recovers_when_it_returns() {
    use fleethub_storage::SettingsStore;
    let pg = server();
    let store = fresh(&pg).await;
    store.put_setting("k", "v").await.unwrap();
    pg.stop();
    for _ in 0..2 {
        // The pooled connection is gone, then no new one can be made: both are "unavailable".
        assert!(
            matches!(
                store.get_setting("k").await,
                Err(StoreError::Unavailable(_))
            ),
            "a stopped server must read as unavailable"
        );
    }
    assert!(matches!(
        store.append_telemetry(vec![suite::telemetry("d", 1)]).await,
        Err(StoreError::Unavailable(_))
    ));
    pg.restart().unwrap();
    assert_eq!(store.get_setting("k").await.unwrap().as_deref(), Some("v"));
    let stored = store
        .append_telemetry(vec![suite::telemetry("d", 2)])
        .await
        .unwrap();
    assert_eq!(
        stored[0].sequence_number, 1,
        "the failed append stored nothing"
    );
}

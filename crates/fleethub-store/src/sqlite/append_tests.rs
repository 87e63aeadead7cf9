//! The telemetry append on the writer: what a failing row leaves behind, and where the
//! writer keeps its savepoints' journal.

use super::SqliteStore;
use crate::suite;
use crate::{StoreError, TelemetryStore};
use std::sync::Arc;

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("store.db")).unwrap()
}

/// SQL for a trigger that stops the INSERT of a telemetry row of a device named `bad-...` with
/// `RAISE(kind, 'refused')`: `FAIL` keeps the rows the statement inserted before it, `ABORT`
/// undoes them.
pub(super) fn refuse_bad_devices(kind: &str) -> String {
    format!(
        "CREATE TRIGGER refuse_bad BEFORE INSERT ON telemetry WHEN NEW.device_id LIKE 'bad-%'
         BEGIN SELECT RAISE({kind}, 'refused'); END"
    )
}

/// [`refuse_bad_devices`] with `FAIL`, on the store's writer.
async fn fail_bad_devices(s: &SqliteStore) {
    s.pool
        .write(|c| Ok(c.execute_batch(&refuse_bad_devices("FAIL"))?))
        .await
        .unwrap();
}

/// Holds the writer busy for 300 ms, from 100 ms before this returns: jobs sent meanwhile queue
/// up and the writer runs them together in one transaction. Await the handle at the end.
pub(super) async fn hold_writer_busy(
    s: &Arc<SqliteStore>,
) -> tokio::task::JoinHandle<crate::Result<()>> {
    let s = s.clone();
    let busy = tokio::spawn(async move {
        s.pool
            .write(|_| {
                std::thread::sleep(std::time::Duration::from_millis(300));
                Ok(())
            })
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    busy
}

fn batch(devices: &[&str], sec: u32) -> Vec<crate::TelemetryMessage> {
    devices.iter().map(|d| suite::telemetry(d, sec)).collect()
}

/// The INSERT runs `OR FAIL` (no statement journal): the rows before the failing one stay in
/// the statement, and the writer's rollback must still remove them, whether the append ran
/// alone in its transaction or beside others in a savepoint. The numbering goes on without
/// gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_failing_mid_statement_leaves_nothing_of_its_append() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    assert_eq!(s.init_partitions(1).await.unwrap(), 1);
    fail_bad_devices(&s).await;
    s.append_telemetry(batch(&["dev-0"], 0)).await.unwrap();
    // Alone in its transaction.
    let r = s
        .append_telemetry(batch(&["dev-1", "dev-2", "bad-3", "dev-4"], 1))
        .await;
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
    let stored = s.append_telemetry(batch(&["dev-5"], 2)).await.unwrap();
    assert_eq!(stored[0].sequence_number, 2);
    assert_eq!(stored[0].partition_sequence_number, 1);
    // Beside others: the writer is held busy so that the appends queue up and run together.
    let busy = hold_writer_busy(&s).await;
    let tasks: Vec<_> = (0..12_u32)
        .map(|t| {
            let s = s.clone();
            let middle = if t % 4 == 1 { "bad" } else { "dev" };
            let devices = [
                format!("dev-{t}-a"),
                format!("{middle}-{t}-b"),
                format!("dev-{t}-c"),
            ];
            let messages = devices.iter().map(|d| suite::telemetry(d, 3)).collect();
            tokio::spawn(async move { s.append_telemetry(messages).await })
        })
        .collect();
    busy.await.unwrap().unwrap();
    for (t, task) in tasks.into_iter().enumerate() {
        let r = task.await.unwrap();
        assert_eq!(r.is_err(), t % 4 == 1, "task {t}: {r:?}");
    }
    let all = s.read_telemetry(0, 1000).await.unwrap();
    let mut devices: Vec<&str> = all.iter().map(|m| m.device_id.as_str()).collect();
    devices.sort_unstable();
    let mut expected = vec!["dev-0".to_string(), "dev-5".to_string()];
    for t in (0..12).filter(|t| t % 4 != 1) {
        expected.extend(["a", "b", "c"].map(|x| format!("dev-{t}-{x}")));
    }
    expected.sort_unstable();
    assert_eq!(
        devices, expected,
        "the good appends in full, nothing of a failed one"
    );
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m.partition_sequence_number, i as i64, "no gap at {i}");
    }
}

/// The writer's savepoints journal pages in memory, not in a temporary file (two `pwrite`s a
/// page once the journal passes 64 KiB).
#[tokio::test]
async fn the_writer_keeps_its_savepoint_journal_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let temp_store = s
        .pool
        .write(|c| Ok(c.pragma_query_value(None, "temp_store", |r| r.get::<_, i64>(0))?))
        .await
        .unwrap();
    assert_eq!(temp_store, 2, "PRAGMA temp_store on the writer (2: MEMORY)");
}

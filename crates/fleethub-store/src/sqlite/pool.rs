//! Connection handling: one writer thread with group commit, a small pool of readers.

use super::Durability;
use crate::{Result, StoreError};
use rusqlite::{Connection, Statement};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

type Completion = Box<dyn FnOnce(Option<&str>) + Send>;
/// A write job: it runs as [`Slot`] says and returns whether it succeeded and what to do once
/// the transaction has ended.
type Job = Box<dyn FnOnce(&Connection, Slot<'_, '_>) -> (Completion, bool) + Send>;

/// How a job runs.
enum Slot<'a, 'c> {
    /// Alone in its transaction: a failure rolls the transaction back.
    Alone,
    /// Beside other jobs, inside a savepoint of its own.
    Savepoint(&'a mut TxControl<'c>),
    /// Not at all: no transaction could be started.
    Refused(String),
}

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;
const WRITE_QUEUE: usize = 4096;
/// Prepared statements kept per connection (the store has fewer distinct statements).
const STATEMENT_CACHE: usize = 128;

pub(crate) fn open_connection(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Every statement the store runs, including the transaction control below, stays prepared.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {};
         PRAGMA foreign_keys = ON;",
        durability.synchronous()
    ))?;
    Ok(conn)
}

pub(crate) struct Pool {
    path: PathBuf,
    durability: Durability,
    readers: Mutex<Vec<Connection>>,
    writer: mpsc::Sender<Job>,
}

impl Pool {
    pub(crate) fn start(path: &Path, durability: Durability, writer_conn: Connection) -> Arc<Pool> {
        let (tx, rx) = mpsc::channel::<Job>(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer_conn, rx))
            .expect("spawn store writer thread");
        Arc::new(Pool {
            path: path.to_path_buf(),
            durability,
            readers: Mutex::new(Vec::new()),
            writer: tx,
        })
    }

    /// Runs `f` on a reader connection. Reads are short (indexed lookups), so on a
    /// multi-threaded runtime they run in place (`block_in_place`) instead of paying a
    /// thread hand-off; elsewhere they go to the blocking pool.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.clone();
        let run = move || {
            let conn = match pool.readers.lock().expect("reader pool").pop() {
                Some(c) => c,
                None => open_connection(&pool.path, pool.durability)?,
            };
            let out = f(&conn);
            let mut readers = pool.readers.lock().expect("reader pool");
            if readers.len() < 8 {
                readers.push(conn);
            }
            out
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(run)
        } else {
            tokio::task::spawn_blocking(run)
                .await
                .map_err(|e| StoreError::Backend(format!("reader task failed: {e}")))?
        }
    }

    /// Runs `f` inside a transaction on the writer thread; returns once committed (durable).
    /// Concurrent writes are committed together (group commit); a failing `f` rolls back only
    /// its own changes.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn: &Connection, slot: Slot<'_, '_>| {
            let r = match slot {
                Slot::Alone => f(conn),
                Slot::Savepoint(tx) => tx.in_savepoint(conn, f),
                Slot::Refused(e) => Err(StoreError::Backend(format!(
                    "cannot begin a transaction: {e}"
                ))),
            };
            let ok = r.is_ok();
            let completion: Completion = Box::new(move |commit_err: Option<&str>| {
                let r = match commit_err {
                    None => r,
                    Some(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                };
                let _ = tx.send(r);
            });
            (completion, ok)
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Backend("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("store writer dropped a write".into()))?
    }
}

/// The writer's transaction control, prepared once (parsing it for every job showed in
/// profiles).
struct TxControl<'c> {
    begin: Statement<'c>,
    commit: Statement<'c>,
    rollback: Statement<'c>,
    savepoint: Statement<'c>,
    release: Statement<'c>,
    rollback_to: Statement<'c>,
}

impl<'c> TxControl<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(TxControl {
            begin: conn.prepare("BEGIN IMMEDIATE")?,
            commit: conn.prepare("COMMIT")?,
            rollback: conn.prepare("ROLLBACK")?,
            savepoint: conn.prepare("SAVEPOINT job")?,
            release: conn.prepare("RELEASE job")?,
            rollback_to: conn.prepare("ROLLBACK TO job")?,
        })
    }

    /// Runs `f` so that when it fails, only its own changes are undone.
    fn in_savepoint<T>(
        &mut self,
        conn: &Connection,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        self.savepoint.execute([])?;
        match f(conn) {
            Ok(v) => {
                self.release.execute([])?;
                Ok(v)
            }
            Err(e) => {
                self.rollback_to.execute([])?;
                self.release.execute([])?;
                Err(e)
            }
        }
    }
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "the writer thread owns the connection and closes it when the queue ends"
)]
fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut tx = match TxControl::prepare(&conn) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "store: cannot prepare the writer's statements");
            while let Some(job) = rx.blocking_recv() {
                job(&conn, Slot::Refused(e.to_string())).0(None);
            }
            return;
        }
    };
    while let Some(first) = rx.blocking_recv() {
        if let Err(e) = tx.begin.execute([]) {
            tracing::error!(error = %e, "store: cannot begin a transaction");
            first(&conn, Slot::Refused(e.to_string())).0(None);
            continue;
        }
        // A job alone in its transaction needs no savepoint: when it fails, rolling back the
        // transaction undoes exactly its changes. Jobs that join later get savepoints.
        let alone = rx.is_empty();
        let slot = if alone {
            Slot::Alone
        } else {
            Slot::Savepoint(&mut tx)
        };
        let (completion, ok) = first(&conn, slot);
        if alone && !ok {
            let _ = tx.rollback.execute([]);
            completion(None);
            continue;
        }
        let mut done = vec![completion];
        while done.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => done.push(job(&conn, Slot::Savepoint(&mut tx)).0),
                Err(_) => break,
            }
        }
        let commit = tx.commit.execute([]);
        let err = commit.as_ref().err().map(std::string::ToString::to_string);
        if err.is_some() {
            let _ = tx.rollback.execute([]);
            tracing::error!(error = ?err, "store: commit failed");
        }
        for c in done {
            c(err.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(dir: &tempfile::TempDir) -> Arc<Pool> {
        let path = dir.path().join("pool.db");
        let conn = open_connection(&path, Durability::Process).unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .unwrap();
        Pool::start(&path, Durability::Process, conn)
    }

    /// Inserts `k`, then fails when `fail` is set: the insert must not survive.
    async fn insert(pool: &Pool, k: String, fail: bool) -> Result<()> {
        pool.write(move |c| {
            c.execute("INSERT INTO t (k) VALUES (?1)", [&k])?;
            if fail {
                return Err(StoreError::Backend(format!("{k} fails after writing")));
            }
            Ok(())
        })
        .await
    }

    async fn keys(pool: &Arc<Pool>) -> Vec<String> {
        pool.read(|c| {
            let mut st = c.prepare("SELECT k FROM t ORDER BY k")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_alone_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir);
        assert!(insert(&pool, "bad".into(), true).await.is_err());
        insert(&pool, "good".into(), false).await.unwrap();
        assert_eq!(keys(&pool).await, ["good"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_in_a_group_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir);
        let mut tasks = Vec::new();
        for i in 0..300 {
            let pool = pool.clone();
            let fail = i % 7 == 3;
            tasks.push(tokio::spawn(async move {
                insert(&pool, format!("k{i:03}"), fail).await.is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        let expected: Vec<String> = (0..300)
            .filter(|i| i % 7 != 3)
            .map(|i| format!("k{i:03}"))
            .collect();
        assert_eq!(ok, expected.len());
        assert_eq!(keys(&pool).await, expected);
    }
}

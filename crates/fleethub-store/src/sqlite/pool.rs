//! Connection handling: one writer thread with group commit ([`super::writer`]), a small pool
//! of readers.

use super::Durability;
use super::writer::{Append, AppendReply, Job, RunJob, Slot, writer_loop};
use crate::{Result, StoreError, TelemetryMessage};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

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
        let run = move || pool.on_reader(f);
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

    /// Runs `f`, a lookup of one row by its key, on a reader connection right here on the
    /// calling task's thread. Such a lookup takes microseconds and, in WAL mode, never waits
    /// for the writer, which is less than what `block_in_place` costs: it hands the worker's
    /// queue to another thread (a wake-up and a context switch per call, several per DPS
    /// registration; docs/benchmarks.md, "DPS registrations: thread hand-offs"). Scans,
    /// pages and everything else use [`Pool::read`].
    pub(crate) fn lookup<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        self.on_reader(f)
    }

    /// Runs `f` on a pooled reader connection (opened when none is free; at most 8 kept).
    fn on_reader<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        let conn = match self.readers.lock().expect("reader pool").pop() {
            Some(c) => c,
            None => open_connection(&self.path, self.durability)?,
        };
        let out = f(&conn);
        let mut readers = self.readers.lock().expect("reader pool");
        if readers.len() < 8 {
            readers.push(conn);
        }
        out
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
        let job: RunJob = Box::new(move |conn: &Connection, slot: Slot<'_, '_>| {
            let r = match slot {
                Slot::Alone => f(conn),
                Slot::Savepoint(tx) => tx.in_savepoint(conn, f),
                Slot::Refused(e) => Err(StoreError::Backend(format!(
                    "cannot begin a transaction: {e}"
                ))),
            };
            let ok = r.is_ok();
            let completion: super::writer::Completion =
                Box::new(move |commit_err: Option<&str>| {
                    let r = match commit_err {
                        None => r,
                        Some(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                    };
                    let _ = tx.send(r);
                });
            (completion, ok)
        });
        self.writer
            .send(Job::Run(job))
            .await
            .map_err(|_| StoreError::Backend("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("store writer dropped a write".into()))?
    }

    /// Appends telemetry on the writer thread (`known`: the partition count, 0 when not known
    /// yet); returns the stored messages and the partition count once committed. The writer
    /// runs the appends queued next to each other as one append (one savepoint, one sequence
    /// lookup per partition); each caller's messages are stored all or none.
    pub(crate) async fn append_telemetry(
        &self,
        messages: Vec<TelemetryMessage>,
        known: u32,
    ) -> Result<(Vec<TelemetryMessage>, u32)> {
        let (reply, rx) = oneshot::channel::<AppendReply>();
        let job = Append {
            messages,
            known,
            reply,
        };
        self.writer
            .send(Job::Append(job))
            .await
            .map_err(|_| StoreError::Backend("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("store writer dropped a write".into()))?
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

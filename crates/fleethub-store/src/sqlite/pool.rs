//! Connection handling: one writer thread with group commit, a small pool of readers.

use super::Durability;
use crate::{Result, StoreError};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

type Completion = Box<dyn FnOnce(Option<&str>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;
const WRITE_QUEUE: usize = 4096;

pub(crate) fn open_connection(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
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
        let job: Job = Box::new(move |conn: &Connection| {
            let r = in_savepoint(conn, f);
            Box::new(move |commit_err: Option<&str>| {
                let r = match commit_err {
                    None => r,
                    Some(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                };
                let _ = tx.send(r);
            })
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Backend("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("store writer dropped a write".into()))?
    }
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "the writer thread owns the connection and closes it when the queue ends"
)]
fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "store: cannot begin a transaction");
            first(&conn)(Some(&e.to_string()));
            continue;
        }
        let mut done = vec![first(&conn)];
        while done.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => done.push(job(&conn)),
                Err(_) => break,
            }
        }
        let commit = conn.execute_batch("COMMIT");
        let err = commit.as_ref().err().map(std::string::ToString::to_string);
        if err.is_some() {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = ?err, "store: commit failed");
        }
        for c in done {
            c(err.as_deref());
        }
    }
}

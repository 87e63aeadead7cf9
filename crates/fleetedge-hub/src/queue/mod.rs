//! Durable store-and-forward queue.
//!
//! SQLite in WAL mode with `synchronous = FULL` (rusqlite, already used by fleethub-store):
//! a commit is on disk (fsynced WAL) before the edge hub acknowledges a message, a crash
//! loses no committed row, and reopening needs no recovery code of ours. All access goes
//! through one worker thread that groups whatever requests are waiting into one
//! transaction ("group commit"), so many publishing modules share one fsync.
//!
//! One row per (message, endpoint): an endpoint is an ordered FIFO (`upstream/{module}` or
//! `module/{module}`), read in sequence order and deleted only once delivered. The sum of
//! row sizes is bounded by `max_bytes`; rows past their expiry are never delivered and are
//! purged (and counted).

mod sql;
mod worker;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::message::EdgeMessage;
use worker::Worker;

/// File name of the queue database inside the state directory.
pub const QUEUE_FILE: &str = "edgehub-queue.db";
/// Most requests grouped into one transaction.
const MAX_BATCH: usize = 512;
/// How often expired rows are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error(
        "store-and-forward queue full: {used} of {max} bytes used, message needs {needed} more"
    )]
    Full { needed: u64, used: u64, max: u64 },
    #[error("queue storage error: {0}")]
    Storage(String),
    #[error("the queue is closed")]
    Closed,
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        QueueError::Storage(e.to_string())
    }
}

/// One copy of a message for one endpoint.
#[derive(Debug, Clone)]
pub struct Entry {
    pub endpoint: String,
    /// Target input for module endpoints.
    pub input: Option<String>,
    pub msg: EdgeMessage,
    pub ttl: Duration,
}

/// A queued row.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: i64,
    pub input: Option<String>,
    pub msg: EdgeMessage,
    pub expires_ms: i64,
}

impl Stored {
    pub fn expired(&self) -> bool {
        self.expires_ms < now_ms()
    }
}

/// Counters (kept in memory; the first two reflect the database).
#[derive(Debug, Default)]
struct Counters {
    messages: AtomicU64,
    bytes: AtomicU64,
    expired: AtomicU64,
    rejected: AtomicU64,
}

/// A snapshot of the queue counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub messages: u64,
    pub bytes: u64,
    /// Rows dropped because their time to live passed (since open).
    pub expired: u64,
    /// Messages refused because the queue was full (since open).
    pub rejected: u64,
}

enum Cmd {
    Enqueue(Vec<Entry>, oneshot::Sender<Result<(), QueueError>>),
    Peek {
        endpoint: String,
        after: i64,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Stored>, QueueError>>,
    },
    Remove(String, Vec<i64>, oneshot::Sender<Result<(), QueueError>>),
    Endpoints(oneshot::Sender<Result<Vec<String>, QueueError>>),
    GetKv(String, oneshot::Sender<Result<Option<String>, QueueError>>),
    SetKv(String, String, oneshot::Sender<Result<(), QueueError>>),
}

/// Handle of the queue (cheap to clone).
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Cmd>,
    counters: Arc<Counters>,
    changes: watch::Receiver<u64>,
    path: PathBuf,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Queue {
    /// Opens (creating if needed) the queue in `dir`; the worker thread ends when the last
    /// handle is dropped.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Queue, QueueError> {
        let path = dir.join(QUEUE_FILE);
        let conn = Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(QueueError::Storage(format!(
                "{} cannot use WAL journaling (got {mode})",
                path.display()
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS messages (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 endpoint TEXT NOT NULL,
                 input TEXT,
                 enqueued_ms INTEGER NOT NULL,
                 expires_ms INTEGER NOT NULL,
                 size INTEGER NOT NULL,
                 header TEXT NOT NULL,
                 body BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS messages_by_endpoint ON messages(endpoint, seq);
             CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        let (messages, bytes): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let counters = Arc::new(Counters::default());
        counters.messages.store(messages as u64, Ordering::Relaxed);
        counters.bytes.store(bytes as u64, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let (changes_tx, changes) = watch::channel(0u64);
        let worker = Worker {
            conn,
            max_bytes,
            counters: counters.clone(),
            changes: changes_tx,
            last_purge: Instant::now()
                .checked_sub(PURGE_INTERVAL)
                .unwrap_or_else(Instant::now),
        };
        std::thread::Builder::new()
            .name("edgehub-queue".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| QueueError::Storage(format!("cannot start the queue thread: {e}")))?;
        Ok(Queue {
            tx,
            counters,
            changes,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> Cmd,
    ) -> Result<T, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// Stores all copies of one message atomically; returns once they are on disk.
    pub async fn enqueue(&self, entries: Vec<Entry>) -> Result<(), QueueError> {
        self.submit(entries).await.map_err(|_| QueueError::Closed)?
    }

    /// Hands the copies of one message to the writer now (submissions are stored in the
    /// order they are made); the receiver resolves once they are on disk.
    pub fn submit(&self, entries: Vec<Entry>) -> oneshot::Receiver<Result<(), QueueError>> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(Cmd::Enqueue(_, tx))) =
            self.tx.send(Cmd::Enqueue(entries, tx))
        {
            let _ = tx.send(Err(QueueError::Closed));
        }
        rx
    }

    /// Up to `limit` unexpired rows of `endpoint` with `seq > after`, in order.
    pub async fn peek(
        &self,
        endpoint: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Stored>, QueueError> {
        self.call(|reply| Cmd::Peek {
            endpoint: endpoint.to_string(),
            after,
            limit,
            reply,
        })
        .await
    }

    /// Deletes delivered rows.
    pub async fn remove(&self, endpoint: &str, seqs: Vec<i64>) -> Result<(), QueueError> {
        self.call(|r| Cmd::Remove(endpoint.to_string(), seqs, r))
            .await
    }

    /// Endpoints that have rows.
    pub async fn endpoints(&self) -> Result<Vec<String>, QueueError> {
        self.call(Cmd::Endpoints).await
    }

    pub async fn get_kv(&self, key: &str) -> Result<Option<String>, QueueError> {
        self.call(|r| Cmd::GetKv(key.to_string(), r)).await
    }

    pub async fn set_kv(&self, key: &str, value: &str) -> Result<(), QueueError> {
        self.call(|r| Cmd::SetKv(key.to_string(), value.to_string(), r))
            .await
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            messages: self.counters.messages.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            expired: self.counters.expired.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
        }
    }

    /// Counts messages dropped by a deliverer because they expired in its hands.
    pub fn count_expired(&self, n: u64) {
        self.counters.expired.fetch_add(n, Ordering::Relaxed);
    }

    /// Bumped after every commit that added rows.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

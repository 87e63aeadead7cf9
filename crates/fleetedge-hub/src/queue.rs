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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot, watch};

use crate::message::EdgeMessage;

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

type Reply = Box<dyn FnOnce(Option<&QueueError>) + Send>;

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
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
            last_purge: Instant::now() - PURGE_INTERVAL,
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

struct Worker {
    conn: Connection,
    max_bytes: u64,
    counters: Arc<Counters>,
    changes: watch::Sender<u64>,
    last_purge: Instant,
}

fn reply<T: Send + 'static>(
    tx: oneshot::Sender<Result<T, QueueError>>,
    result: Result<T, QueueError>,
) -> Reply {
    Box::new(move |commit_err: Option<&QueueError>| {
        let _ = tx.send(match commit_err {
            Some(e) => Err(e.clone()),
            None => result,
        });
    })
}

impl Worker {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
        }
    }

    fn run_batch(&mut self, batch: Vec<Cmd>) {
        let before = (
            self.counters.messages.load(Ordering::Relaxed),
            self.counters.bytes.load(Ordering::Relaxed),
        );
        let mut added = false;
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        let result = (|| -> Result<(), QueueError> {
            let tx = self.conn.transaction()?;
            if self.last_purge.elapsed() >= PURGE_INTERVAL {
                purge_expired(&tx, &self.counters)?;
                self.last_purge = Instant::now();
            }
            for cmd in batch {
                replies.push(match cmd {
                    Cmd::Enqueue(entries, r) => {
                        let res = enqueue(&tx, &entries, self.max_bytes, &self.counters);
                        added |= res.is_ok();
                        reply(r, res)
                    }
                    Cmd::Peek {
                        endpoint,
                        after,
                        limit,
                        reply: r,
                    } => reply(r, peek(&tx, &endpoint, after, limit)),
                    Cmd::Remove(endpoint, seqs, r) => {
                        reply(r, remove(&tx, &endpoint, &seqs, &self.counters))
                    }
                    Cmd::Endpoints(r) => reply(r, endpoints(&tx)),
                    Cmd::GetKv(k, r) => reply(
                        r,
                        tx.query_row("SELECT value FROM kv WHERE key = ?1", [&k], |row| {
                            row.get(0)
                        })
                        .optional()
                        .map_err(QueueError::from),
                    ),
                    Cmd::SetKv(k, v, r) => reply(
                        r,
                        tx.execute(
                            "INSERT INTO kv(key, value) VALUES (?1, ?2)
                             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                            params![k, v],
                        )
                        .map(|_| ())
                        .map_err(QueueError::from),
                    ),
                });
            }
            tx.commit()?;
            Ok(())
        })();
        let commit_err = result.err();
        if let Some(e) = &commit_err {
            tracing::error!("edge hub queue: transaction failed: {e}");
            self.counters.messages.store(before.0, Ordering::Relaxed);
            self.counters.bytes.store(before.1, Ordering::Relaxed);
        }
        for r in replies {
            r(commit_err.as_ref());
        }
        if added && commit_err.is_none() {
            self.changes.send_modify(|v| *v += 1);
        }
    }
}

fn enqueue(
    tx: &rusqlite::Transaction<'_>,
    entries: &[Entry],
    max_bytes: u64,
    counters: &Counters,
) -> Result<(), QueueError> {
    let mut rows = Vec::with_capacity(entries.len());
    let mut needed = 0u64;
    for e in entries {
        let header = serde_json::to_string(&e.msg)
            .map_err(|err| QueueError::Storage(format!("cannot encode a message: {err}")))?;
        let size = (header.len() + e.msg.body.len()) as u64;
        needed += size;
        rows.push((e, header, size));
    }
    let used = counters.bytes.load(Ordering::Relaxed);
    if used + needed > max_bytes {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        return Err(QueueError::Full {
            needed,
            used,
            max: max_bytes,
        });
    }
    let now = now_ms();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO messages(endpoint, input, enqueued_ms, expires_ms, size, header, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (e, header, size) in &rows {
        let expires = now.saturating_add(e.ttl.as_millis().min(i64::MAX as u128) as i64);
        stmt.execute(params![
            e.endpoint,
            e.input,
            now,
            expires,
            *size as i64,
            header,
            e.msg.body
        ])?;
    }
    counters
        .messages
        .fetch_add(rows.len() as u64, Ordering::Relaxed);
    counters.bytes.fetch_add(needed, Ordering::Relaxed);
    Ok(())
}

fn peek(
    tx: &rusqlite::Transaction<'_>,
    endpoint: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<Stored>, QueueError> {
    let mut stmt = tx.prepare_cached(
        "SELECT seq, input, expires_ms, header, body FROM messages
         WHERE endpoint = ?1 AND seq > ?2 AND expires_ms >= ?3 ORDER BY seq LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![endpoint, after, now_ms(), limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Vec<u8>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, input, expires_ms, header, body) = row?;
        let mut msg: EdgeMessage = serde_json::from_str(&header)
            .map_err(|e| QueueError::Storage(format!("queued message {seq} is unreadable: {e}")))?;
        msg.body = body;
        out.push(Stored {
            seq,
            input,
            msg,
            expires_ms,
        });
    }
    Ok(out)
}

fn remove(
    tx: &rusqlite::Transaction<'_>,
    endpoint: &str,
    seqs: &[i64],
    counters: &Counters,
) -> Result<(), QueueError> {
    let mut stmt =
        tx.prepare_cached("DELETE FROM messages WHERE seq = ?1 AND endpoint = ?2 RETURNING size")?;
    for seq in seqs {
        let size: Option<i64> = stmt
            .query_row(params![seq, endpoint], |r| r.get(0))
            .optional()?;
        if let Some(size) = size {
            counters.messages.fetch_sub(1, Ordering::Relaxed);
            counters.bytes.fetch_sub(size as u64, Ordering::Relaxed);
        }
    }
    Ok(())
}

fn endpoints(tx: &rusqlite::Transaction<'_>) -> Result<Vec<String>, QueueError> {
    let mut stmt = tx.prepare_cached("SELECT DISTINCT endpoint FROM messages ORDER BY endpoint")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn purge_expired(tx: &rusqlite::Transaction<'_>, counters: &Counters) -> Result<(), QueueError> {
    let now = now_ms();
    let (n, bytes): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages WHERE expires_ms < ?1",
        [now],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if n > 0 {
        tx.execute("DELETE FROM messages WHERE expires_ms < ?1", [now])?;
        counters.messages.fetch_sub(n as u64, Ordering::Relaxed);
        counters.bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
        counters.expired.fetch_add(n as u64, Ordering::Relaxed);
        tracing::warn!(
            "edge hub queue: dropped {n} message(s) whose time to live expired before delivery"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(endpoint: &str, body: &str, ttl: Duration) -> Entry {
        Entry {
            endpoint: endpoint.into(),
            input: None,
            msg: EdgeMessage {
                source_device: "d".into(),
                source_module: "A".into(),
                system: BTreeMap::from([("mid".to_string(), body.to_string())]),
                properties: BTreeMap::new(),
                body: body.as_bytes().to_vec(),
            },
            ttl,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn fifo_per_endpoint_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        for i in 0..5 {
            q.enqueue(vec![
                entry("upstream/A", &format!("m{i}"), HOUR),
                entry("module/B", &format!("m{i}"), HOUR),
            ])
            .await
            .unwrap();
        }
        assert_eq!(q.stats().messages, 10);
        let rows = q.peek("upstream/A", 0, 3).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.msg.body.clone()).collect::<Vec<_>>(),
            vec![b"m0".to_vec(), b"m1".to_vec(), b"m2".to_vec()]
        );
        assert_eq!(rows[0].msg.system["mid"], "m0");
        let after = q.peek("upstream/A", rows[1].seq, 10).await.unwrap();
        assert_eq!(after.len(), 3);
        q.remove("upstream/A", vec![rows[0].seq, rows[1].seq])
            .await
            .unwrap();
        // Removing with the wrong endpoint does nothing.
        q.remove("module/B", vec![rows[2].seq]).await.unwrap();
        assert_eq!(q.peek("upstream/A", 0, 10).await.unwrap().len(), 3);
        assert_eq!(q.peek("module/B", 0, 10).await.unwrap().len(), 5);
        assert_eq!(q.stats().messages, 8);
        assert_eq!(q.endpoints().await.unwrap(), vec!["module/B", "upstream/A"]);
    }

    #[tokio::test]
    async fn committed_rows_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        q.set_kv("routes", "{\"r\":1}").await.unwrap();
        // Many concurrent enqueues share commits.
        let mut tasks = Vec::new();
        for i in 0..50 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                q.enqueue(vec![entry("upstream/A", &format!("m{i}"), HOUR)])
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // A crash: copy the files as they are on disk while the queue is still open (no
        // checkpoint, no clean close), then open the copy.
        let crashed = tempfile::tempdir().unwrap();
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), crashed.path().join(f.file_name())).unwrap();
        }
        let q2 = Queue::open(crashed.path(), 1 << 20).unwrap();
        assert_eq!(q2.stats().messages, 50);
        assert_eq!(q2.stats().bytes, q.stats().bytes);
        assert_eq!(q2.peek("upstream/A", 0, 100).await.unwrap().len(), 50);
        assert_eq!(
            q2.get_kv("routes").await.unwrap().as_deref(),
            Some("{\"r\":1}")
        );
        assert_eq!(q2.get_kv("nothing").await.unwrap(), None);
        drop(q);
        // Reopening the original after the handles are gone works too.
        let q3 = Queue::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(q3.stats().messages, 50);
    }

    #[tokio::test]
    async fn bound_rejects_without_storing() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 400).unwrap();
        let mut stored = 0;
        let err = loop {
            match q
                .enqueue(vec![entry("upstream/A", "0123456789", HOUR)])
                .await
            {
                Ok(()) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 100);
        };
        assert!(matches!(err, QueueError::Full { max: 400, .. }), "{err}");
        assert!(err.to_string().contains("queue full"));
        assert!(stored > 0);
        assert!(q.stats().bytes <= 400);
        assert_eq!(q.stats().rejected, 1);
        assert_eq!(q.peek("upstream/A", 0, 1000).await.unwrap().len(), stored);
        // Delivering frees space.
        let first = q.peek("upstream/A", 0, 1).await.unwrap()[0].seq;
        q.remove("upstream/A", vec![first]).await.unwrap();
        q.enqueue(vec![entry("upstream/A", "0123456789", HOUR)])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn expired_rows_are_not_delivered_and_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        q.enqueue(vec![entry("upstream/A", "short", Duration::from_millis(1))])
            .await
            .unwrap();
        q.enqueue(vec![entry("upstream/A", "long", HOUR)])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rows = q.peek("upstream/A", 0, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].msg.body, b"long");
        // The purge runs at most once a second, with the next batch.
        tokio::time::sleep(PURGE_INTERVAL).await;
        q.peek("upstream/A", 0, 10).await.unwrap();
        let s = q.stats();
        assert_eq!((s.messages, s.expired), (1, 1));
    }
}

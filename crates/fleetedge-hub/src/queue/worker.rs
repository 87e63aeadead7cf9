//! The worker thread: groups waiting requests into one transaction (group commit).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot, watch};

use super::sql::{endpoints, enqueue, peek, purge_expired, remove};
use super::{Cmd, Counters, MAX_BATCH, PURGE_INTERVAL, QueueError};

type Reply = Box<dyn FnOnce(Option<&QueueError>) + Send>;

pub(super) struct Worker {
    pub(super) conn: Connection,
    pub(super) max_bytes: u64,
    pub(super) counters: Arc<Counters>,
    pub(super) changes: watch::Sender<u64>,
    pub(super) last_purge: Instant,
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
    pub(super) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
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

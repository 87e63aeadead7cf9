//! Group commit of telemetry appends: concurrent `append_telemetry` calls of one node queue
//! here, and one task writes what has queued in one transaction with one multi-row insert
//! (`UNNEST` of arrays), so the commit (and its WAL flush) is shared by the whole batch. Each
//! caller is answered once the batch is committed. A failing batch fails every call in it
//! (nothing of it is stored).
//!
//! Numbering: the transaction first takes the `telemetry_log` row lock (held to its commit) and
//! reserves a range of global sequence numbers, then reserves per-partition ranges on the
//! `telemetry_partitions` rows. Appenders on every node wait on that one row, so numbers are
//! gapless and committed in order: a reader never sees a number before a smaller one.

use crate::cached::Cached;
use crate::docs::encode;
use crate::partitions;
use crate::{Result, db};
use deadpool_postgres::{GenericClient, Pool};
use fleethub_storage::{
    DEFAULT_PARTITION_COUNT, SenderAuth, StoreError, TelemetryMessage, partition_of,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Most messages one transaction takes.
const MAX_BATCH_MESSAGES: usize = 2000;
const QUEUE: usize = 4096;

struct Job {
    messages: Vec<TelemetryMessage>,
    done: oneshot::Sender<Result<Vec<TelemetryMessage>>>,
}

pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    pub(crate) fn start(pool: Pool, partition_count: Arc<AtomicU32>) -> Writer {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, partition_count, rx));
        Writer { queue }
    }

    /// Appends `messages` (numbered in this order); returns once they are committed.
    pub(crate) async fn append(
        &self,
        messages: Vec<TelemetryMessage>,
    ) -> Result<Vec<TelemetryMessage>> {
        let (done, rx) = oneshot::channel();
        self.queue
            .send(Job { messages, done })
            .await
            .map_err(|_| StoreError::Backend("telemetry writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("telemetry writer dropped an append".into()))?
    }
}

async fn run(pool: Pool, partition_count: Arc<AtomicU32>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut n = jobs[0].messages.len();
        while n < MAX_BATCH_MESSAGES {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.messages.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = jobs.iter().map(|j| j.messages.len()).collect();
        let (messages, senders): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.messages, j.done)).unzip();
        let all: Vec<TelemetryMessage> = messages.into_iter().flatten().collect();
        let known = partition_count.load(Ordering::Relaxed);
        match write_batch(&pool, all, known).await {
            Ok((stored, count)) => {
                partition_count.store(count, Ordering::Relaxed);
                let mut stored = stored.into_iter();
                for (size, done) in sizes.into_iter().zip(senders) {
                    let _ = done.send(Ok(stored.by_ref().take(size).collect()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, messages = n, "telemetry append failed");
                for done in senders {
                    let _ = done.send(Err(match &e {
                        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                        other => StoreError::Backend(other.to_string()),
                    }));
                }
            }
        }
    }
}

async fn write_batch(
    pool: &Pool,
    messages: Vec<TelemetryMessage>,
    known_count: u32,
) -> Result<(Vec<TelemetryMessage>, u32)> {
    let mut conn = pool.get().await.map_err(db)?;
    let tx = conn.transaction().await.map_err(db)?;
    let out = append(&tx, messages, known_count).await;
    crate::connect::finish(tx, out).await
}

/// Appends in the caller's transaction; returns the stored messages and the partition count.
async fn append(
    c: &impl GenericClient,
    mut messages: Vec<TelemetryMessage>,
    known_count: u32,
) -> Result<(Vec<TelemetryMessage>, u32)> {
    if messages.is_empty() {
        return Ok((messages, known_count));
    }
    let count = match known_count {
        0 => partitions::ensure(c, DEFAULT_PARTITION_COUNT).await?,
        n => n,
    };
    let n = messages.len() as i64;
    let first: i64 = c
        .query_one_c(
            "UPDATE telemetry_log SET next_seq = next_seq + $1 WHERE id = 1
             RETURNING next_seq - $1",
            &[&n],
        )
        .await
        .map_err(db)?
        .get(0);
    // Per partition: how many messages, the newest one's offset and enqueued time.
    let mut touched: BTreeMap<i32, (i64, i64, i64)> = BTreeMap::new();
    let mut enqueued_ms = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter_mut().enumerate() {
        m.sequence_number = (first + i as i64) as u64;
        m.partition = partition_of(&m.device_id, count);
        let ms = fleethub_api::time::parse_utc_ms(&m.enqueued_time_utc).unwrap_or(0);
        enqueued_ms.push(ms);
        let e = touched.entry(m.partition as i32).or_insert((0, 0, 0));
        *e = (e.0 + 1, first + i as i64, ms);
    }
    let pids: Vec<i32> = touched.keys().copied().collect();
    let counts: Vec<i64> = touched.values().map(|v| v.0).collect();
    let offsets: Vec<i64> = touched.values().map(|v| v.1).collect();
    let times: Vec<i64> = touched.values().map(|v| v.2).collect();
    let rows = c
        .query_c(
            "UPDATE telemetry_partitions p
             SET next_seq = p.next_seq + u.n, last_offset = u.o, last_enqueued_ms = u.ms
             FROM UNNEST($1::int[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u(pid, n, o, ms)
             WHERE p.partition_id = u.pid
             RETURNING p.partition_id, p.next_seq - u.n",
            &[&pids, &counts, &offsets, &times],
        )
        .await
        .map_err(db)?;
    let mut next: BTreeMap<i32, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let len = messages.len();
    let (mut seqs, mut devices, mut modules, mut utcs) = (
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
    );
    let (mut sys, mut props, mut bodies, mut parts, mut pseqs, mut senders) = (
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
    );
    for m in &mut messages {
        let p = m.partition as i32;
        let slot = next.get_mut(&p).ok_or_else(|| {
            StoreError::Backend(format!("telemetry partition {p} is missing from the store"))
        })?;
        m.partition_sequence_number = *slot;
        *slot += 1;
        seqs.push(m.sequence_number as i64);
        devices.push(m.device_id.as_str());
        modules.push(m.module_id.as_deref());
        utcs.push(m.enqueued_time_utc.as_str());
        sys.push(encode(&m.system_properties)?);
        senders.push(m.sender.map(SenderAuth::code));
        props.push(encode(&m.properties)?);
        bodies.push(m.body.as_slice());
        parts.push(p);
        pseqs.push(m.partition_sequence_number);
    }
    c.execute_c(
        "INSERT INTO telemetry (seq, device_id, module_id, enqueued_utc, enqueued_ms,
            system_properties, properties, body, partition_id, partition_seq, sender)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[],
            $6::text[], $7::text[], $8::bytea[], $9::int[], $10::bigint[], $11::smallint[])",
        &[
            &seqs,
            &devices,
            &modules,
            &utcs,
            &enqueued_ms,
            &sys,
            &props,
            &bodies,
            &parts,
            &pseqs,
            &senders,
        ],
    )
    .await
    .map_err(db)?;
    Ok((messages, count))
}

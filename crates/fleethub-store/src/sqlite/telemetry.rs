//! The built-in telemetry endpoint: an append-only log, partitioned by device id, with
//! consumer groups and their checkpoints. The partition bookkeeping is in `partitions`, the
//! consumer groups in `consumer_groups`.

use super::{
    OptionalExtension, Result, SqliteStore, TelemetryMessage, async_trait, consumer_groups, encode,
    now_utc, params, partitions, retention,
};
use crate::{
    ConsumerGroupRecord, DEFAULT_PARTITION_COUNT, PartitionSummary, TelemetryStore, partition_of,
};
use crate::{SenderAuth, StoreError, fill_sender_properties};
use rusqlite::{Connection, Row, Statement};
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;

/// Most rows one read returns.
const MAX_ROWS: usize = 10_000;

/// The columns `row_to_message` reads, in order.
pub(super) const COLUMNS: &str = "seq, device_id, module_id, enqueued_utc, system_properties, \
     properties, body, COALESCE(partition_id, 0), COALESCE(partition_seq, 0), sender";

/// A stored row as a message, the sender's connection properties (kept as a number since
/// migration 15) back in its system properties.
pub(super) fn row_to_message(r: &Row<'_>) -> Result<TelemetryMessage> {
    let seq: i64 = r.get(0)?;
    let sender = SenderAuth::from_column(seq, r.get::<_, Option<i16>>(9)?)?;
    let mut m = TelemetryMessage {
        sequence_number: seq as u64,
        partition: r.get::<_, i64>(7)? as u32,
        partition_sequence_number: r.get(8)?,
        device_id: r.get(1)?,
        module_id: r.get(2)?,
        enqueued_time_utc: r.get(3)?,
        system_properties: decode_column(r, 4, seq)?,
        properties: decode_column(r, 5, seq)?,
        body: r.get(6)?,
        sender,
    };
    fill_sender_properties(&mut m);
    Ok(m)
}

/// The JSON text of column `i` as a property bag, read in place (the row's id is formatted
/// only for the error).
fn decode_column(r: &Row<'_>, i: usize, seq: i64) -> Result<BTreeMap<String, String>> {
    let text = r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?;
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        kind: "telemetry",
        id: seq.to_string(),
        reason: e.to_string(),
    })
}

/// Most rows one INSERT statement carries (10 parameters each). One statement for several rows
/// runs the statement machinery, and updates the AUTOINCREMENT counter, once for all of them.
const ROWS_PER_INSERT: usize = 32;

/// `INSERT OR FAIL INTO telemetry ... VALUES (..), (..)` for 1 to [`ROWS_PER_INSERT`] rows
/// (index: rows - 1), each statement kept prepared by the connection's cache.
///
/// `OR FAIL`, not the default `ABORT`: a statement that may abort halfway after changing rows
/// undoes its own changes, so SQLite gives it a statement journal, a copy of every page it
/// changes, for every multi-row INSERT inside a transaction. An append never needs that undo:
/// when a row fails, the whole append fails and the writer rolls back the transaction or the
/// savepoint holding it (`writer`), rows of the failed statement included
/// (`a_row_failing_mid_statement_leaves_nothing_of_its_append`).
static INSERT_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    (1..=ROWS_PER_INSERT)
        .map(|rows| {
            let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
            format!(
                "INSERT OR FAIL INTO telemetry (device_id, module_id, enqueued_utc, system_properties, \
                 properties, body, partition_id, partition_seq, enqueued_ms, sender) VALUES {}",
                vec![row; rows].join(", ")
            )
        })
        .collect()
});

/// The writer's INSERT statements, one per row count, prepared on first use and kept for the
/// writer's life. rusqlite's statement cache would look each up by hashing its SQL text (over
/// a kilobyte for 32 rows) and clear all its bindings when it is handed back: 1.5k
/// instructions per message at one publish in flight (docs/benchmarks.md, "Issue 11, fourth
/// pass"). Every execution binds every parameter anew, so nothing needs clearing.
pub(super) struct Inserts<'c> {
    conn: &'c Connection,
    by_rows: Vec<Option<Statement<'c>>>,
}

impl<'c> Inserts<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Inserts {
            conn,
            by_rows: (0..ROWS_PER_INSERT).map(|_| None).collect(),
        }
    }

    /// The statement inserting `rows` rows (1 to [`ROWS_PER_INSERT`]).
    fn for_rows(&mut self, rows: usize) -> Result<&mut Statement<'c>> {
        let slot = &mut self.by_rows[rows - 1];
        if slot.is_none() {
            *slot = Some(self.conn.prepare(&INSERT_SQL[rows - 1])?);
        }
        Ok(slot.as_mut().expect("prepared above"))
    }
}

/// Numbers and inserts `messages` in order (inside the caller's transaction); returns the
/// partition count. On failure the caller rolls back; the messages are left whole (their
/// numbers are assigned again by the next attempt). The messages are borrowed where they lie
/// (the writer appends several callers' batches in one go without moving them).
pub(super) fn append(
    inserts: &mut Inserts<'_>,
    messages: &mut [&mut TelemetryMessage],
    known_count: u32,
) -> Result<u32> {
    let c = inserts.conn;
    let count = match known_count {
        0 => partitions::ensure(c, DEFAULT_PARTITION_COUNT)?,
        n => n,
    };
    let mut next: Vec<Option<i64>> = vec![None; count as usize];
    // Messages stored together often share their enqueued time: parse it once per value.
    let mut enqueued = String::new();
    let mut enqueued_ms = 0;
    for chunk in messages.chunks_mut(ROWS_PER_INSERT) {
        let insert = inserts.for_rows(chunk.len())?;
        for (i, m) in chunk.iter_mut().enumerate() {
            let partition = partition_of(&m.device_id, count);
            let slot = &mut next[partition as usize];
            let partition_seq = match *slot {
                Some(n) => n,
                None => partitions::next_seq(c, partition)?,
            };
            *slot = Some(partition_seq + 1);
            m.partition = partition;
            m.partition_sequence_number = partition_seq;
            if enqueued.is_empty() || enqueued != m.enqueued_time_utc {
                enqueued_ms = fleethub_api::time::parse_utc_ms(&m.enqueued_time_utc).unwrap_or(0);
                enqueued.clear();
                enqueued.push_str(&m.enqueued_time_utc);
            }
            let at = i * 10;
            insert.raw_bind_parameter(at + 1, &m.device_id)?;
            insert.raw_bind_parameter(at + 2, &m.module_id)?;
            insert.raw_bind_parameter(at + 3, &m.enqueued_time_utc)?;
            bind_bag(insert, at + 4, &m.system_properties)?;
            bind_bag(insert, at + 5, &m.properties)?;
            insert.raw_bind_parameter(at + 6, &m.body)?;
            insert.raw_bind_parameter(at + 7, i64::from(partition))?;
            insert.raw_bind_parameter(at + 8, partition_seq)?;
            insert.raw_bind_parameter(at + 9, enqueued_ms)?;
            insert.raw_bind_parameter(at + 10, m.sender.map(SenderAuth::code))?;
        }
        let inserted = insert.raw_execute()?;
        if inserted != chunk.len() {
            return Err(StoreError::Backend(format!(
                "telemetry insert stored {inserted} of {} rows",
                chunk.len()
            )));
        }
        // One statement numbers its rows one after the other (AUTOINCREMENT, one writer).
        let last = c.last_insert_rowid() as u64;
        let first = last + 1 - chunk.len() as u64;
        for (k, m) in chunk.iter_mut().enumerate() {
            m.sequence_number = first + k as u64;
        }
    }
    Ok(count)
}

/// Binds a property bag as its JSON text; an empty one (most messages' system properties
/// since the sender's went into their own column) without building the text.
fn bind_bag(insert: &mut Statement<'_>, at: usize, bag: &BTreeMap<String, String>) -> Result<()> {
    if bag.is_empty() {
        insert.raw_bind_parameter(at, "{}")?;
    } else {
        insert.raw_bind_parameter(at, encode(bag)?)?;
    }
    Ok(())
}

fn read_after(c: &Connection, after: u64, limit: usize) -> Result<Vec<TelemetryMessage>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM telemetry WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let mut rows = stmt.query(params![after as i64, limit.min(MAX_ROWS) as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row_to_message(r)?);
    }
    Ok(out)
}

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn append_telemetry(
        &self,
        messages: Vec<TelemetryMessage>,
    ) -> Result<Vec<TelemetryMessage>> {
        let known = self.partition_count.load(Ordering::Relaxed);
        let (stored, count) = self.pool.append_telemetry(messages, known).await?;
        // Committed: the count can no longer change.
        self.partition_count.store(count, Ordering::Relaxed);
        Ok(stored)
    }

    async fn init_partitions(&self, requested: u32) -> Result<u32> {
        let count = self
            .pool
            .write(move |c| partitions::ensure(c, requested))
            .await?;
        self.partition_count.store(count, Ordering::Relaxed);
        Ok(count)
    }

    async fn read_partition(
        &self,
        partition: u32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<TelemetryMessage>> {
        self.pool
            .read(move |c| partitions::read(c, partition, from, limit.min(MAX_ROWS)))
            .await
    }

    async fn partition_summary(&self, partition: u32) -> Result<PartitionSummary> {
        self.pool
            .read(move |c| partitions::summary(c, partition))
            .await
    }

    async fn partition_seq_at_offset(&self, partition: u32, min_offset: u64) -> Result<i64> {
        self.pool
            .read(move |c| partitions::first_seq_where(c, partition, "seq", min_offset as i64))
            .await
    }

    async fn partition_seq_at_time(&self, partition: u32, min_utc_ms: i64) -> Result<i64> {
        self.pool
            .read(move |c| partitions::first_seq_where(c, partition, "enqueued_ms", min_utc_ms))
            .await
    }

    async fn read_telemetry(&self, after: u64, limit: usize) -> Result<Vec<TelemetryMessage>> {
        self.pool.read(move |c| read_after(c, after, limit)).await
    }

    async fn prune_telemetry(&self, before_utc: &str) -> Result<u64> {
        let before = before_utc.to_string();
        self.pool
            .write(move |c| {
                partitions::raise_floors(c)?;
                retention::prune(c, &before)
            })
            .await
    }

    async fn get_checkpoint(&self, group: &str) -> Result<u64> {
        let g = group.to_string();
        self.pool
            .read(move |c| {
                let v: Option<i64> = c
                    .query_row(
                        "SELECT offset_seq FROM consumer_groups WHERE name = ?1",
                        params![g],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(v.unwrap_or(0) as u64)
            })
            .await
    }

    async fn set_checkpoint(&self, group: &str, sequence_number: u64) -> Result<()> {
        let g = group.to_string();
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO consumer_groups (name, offset_seq, updated_utc) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET offset_seq = excluded.offset_seq, updated_utc = excluded.updated_utc",
                    params![g, sequence_number as i64, now_utc()],
                )?;
                Ok(())
            })
            .await
    }

    async fn list_consumer_groups(&self) -> Result<Vec<ConsumerGroupRecord>> {
        self.pool.read(consumer_groups::list).await
    }

    async fn get_consumer_group(&self, name: &str) -> Result<Option<ConsumerGroupRecord>> {
        let name = name.to_string();
        self.pool
            .read(move |c| consumer_groups::get(c, &name))
            .await
    }

    async fn create_consumer_group(
        &self,
        group: ConsumerGroupRecord,
        max: usize,
    ) -> Result<ConsumerGroupRecord> {
        self.pool
            .write(move |c| consumer_groups::create(c, group, max))
            .await
    }

    async fn delete_consumer_group(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.pool
            .write(move |c| consumer_groups::delete(c, &name))
            .await
    }
}

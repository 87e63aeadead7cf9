//! Partition bookkeeping of the telemetry log: the `telemetry_partitions` table holds each
//! partition's next sequence number, last offset and last enqueued time (kept when retention
//! deletes the rows), so numbering continues without gaps or reuse.

use super::telemetry::{COLUMNS, row_to_message};
use super::{OptionalExtension, Result, params};
use crate::{MAX_PARTITION_COUNT, PartitionSummary, StoreError, TelemetryMessage, partition_of};
use rusqlite::Connection;

/// The partitions' counters, loaded inside a write transaction, advanced by appends and
/// written back before the transaction ends.
pub(super) struct Appender {
    next: Vec<i64>,
    /// Per partition: the last (offset, enqueued ms) appended by this transaction.
    last: Vec<Option<(u64, i64)>>,
}

impl Appender {
    /// Loads the counters; on a store without partitions creates `count` of them first and
    /// numbers the messages stored before the log was partitioned.
    pub(super) fn load(c: &Connection, count: u32) -> Result<Appender> {
        let mut next = load_counters(c)?;
        if next.is_empty() {
            if count == 0 || count > MAX_PARTITION_COUNT {
                return Err(StoreError::InvalidArgument(format!(
                    "partition_count must be 1 to {MAX_PARTITION_COUNT}, not {count}"
                )));
            }
            create(c, count)?;
            next = load_counters(c)?;
        }
        let n = next.len();
        Ok(Appender {
            next,
            last: vec![None; n],
        })
    }

    pub(super) fn count(&self) -> u32 {
        self.next.len() as u32
    }

    /// The partition and per-partition sequence number of a device's next message.
    pub(super) fn next(&mut self, device_id: &str) -> (u32, i64) {
        let p = partition_of(device_id, self.count());
        let seq = self.next[p as usize];
        self.next[p as usize] += 1;
        (p, seq)
    }

    pub(super) fn appended(&mut self, partition: u32, offset: u64, enqueued_ms: i64) {
        self.last[partition as usize] = Some((offset, enqueued_ms));
    }

    /// Writes back the counters of the partitions this transaction appended to.
    pub(super) fn save(&self, c: &Connection) -> Result<()> {
        let mut stmt = c.prepare_cached(
            "UPDATE telemetry_partitions SET next_seq = ?2, last_offset = ?3, last_enqueued_ms = ?4
             WHERE partition_id = ?1",
        )?;
        for (p, last) in self.last.iter().enumerate() {
            if let Some((offset, ms)) = last {
                stmt.execute(params![p as i64, self.next[p], *offset as i64, ms])?;
            }
        }
        Ok(())
    }
}

fn load_counters(c: &Connection) -> Result<Vec<i64>> {
    let mut stmt =
        c.prepare_cached("SELECT next_seq FROM telemetry_partitions ORDER BY partition_id")?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Creates `count` partitions and assigns the rows stored before partitioning (in global
/// order, so per-partition numbering follows the log).
fn create(c: &Connection, count: u32) -> Result<()> {
    /// Rows numbered per round (bounds the memory a large old log needs).
    const CHUNK: i64 = 10_000;
    let mut next = vec![0_i64; count as usize];
    let mut last = vec![(0_i64, 0_i64); count as usize];
    let mut select = c.prepare(
        "SELECT seq, device_id, enqueued_utc FROM telemetry
         WHERE partition_id IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut update = c.prepare(
        "UPDATE telemetry SET partition_id = ?2, partition_seq = ?3, enqueued_ms = ?4 WHERE seq = ?1",
    )?;
    let (mut after, mut numbered) = (0_i64, 0_u64);
    loop {
        let rows: Vec<(i64, String, String)> = select
            .query_map(params![after, CHUNK], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let Some((last_seq, _, _)) = rows.last() else {
            break;
        };
        after = *last_seq;
        for (seq, device_id, enqueued) in &rows {
            let p = partition_of(device_id, count) as usize;
            let ms = fleethub_api::time::parse_utc_ms(enqueued).unwrap_or(0);
            update.execute(params![seq, p as i64, next[p], ms])?;
            next[p] += 1;
            last[p] = (*seq, ms);
        }
        numbered += rows.len() as u64;
    }
    let mut insert = c.prepare(
        "INSERT INTO telemetry_partitions (partition_id, next_seq, last_offset, last_enqueued_ms)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for p in 0..count as usize {
        insert.execute(params![p as i64, next[p], last[p].0, last[p].1])?;
    }
    if numbered > 0 {
        tracing::info!(
            messages = numbered,
            partitions = count,
            "telemetry log partitioned"
        );
    }
    Ok(())
}

pub(super) fn read(
    c: &Connection,
    partition: u32,
    from: i64,
    limit: usize,
) -> Result<Vec<TelemetryMessage>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM telemetry WHERE partition_id = ?1 AND partition_seq >= ?2
         ORDER BY partition_seq LIMIT ?3"
    ))?;
    let mut rows = stmt.query(params![i64::from(partition), from, limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row_to_message(r)?);
    }
    Ok(out)
}

pub(super) fn summary(c: &Connection, partition: u32) -> Result<PartitionSummary> {
    let counters: Option<(i64, i64, i64)> = c
        .query_row(
            "SELECT next_seq, last_offset, last_enqueued_ms FROM telemetry_partitions
             WHERE partition_id = ?1",
            params![i64::from(partition)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((next, last_offset, last_ms)) = counters else {
        return Err(StoreError::NotFound {
            kind: "partition",
            id: partition.to_string(),
        });
    };
    let begin: Option<i64> = c.query_row(
        "SELECT MIN(partition_seq) FROM telemetry WHERE partition_id = ?1",
        params![i64::from(partition)],
        |r| r.get(0),
    )?;
    Ok(PartitionSummary {
        partition,
        begin_sequence_number: match begin {
            Some(b) => b,
            None if next == 0 => -1,
            None => next,
        },
        last_sequence_number: next - 1,
        last_offset: last_offset as u64,
        last_enqueued_utc_ms: last_ms,
        is_empty: begin.is_none(),
    })
}

/// The first per-partition sequence number whose `column` is `>= min`; the next number to be
/// assigned if none is. A binary search over the partition's index: O(log n) indexed lookups.
/// `seq` increases along a partition, so the answer is exact. `enqueued_ms` is taken before
/// the write, so concurrent writers can interleave their times by a few milliseconds: the
/// answer is then a position inside that window.
pub(super) fn first_seq_where(
    c: &Connection,
    partition: u32,
    column: &'static str,
    min: i64,
) -> Result<i64> {
    let s = summary(c, partition)?;
    let end = s.last_sequence_number + 1;
    if s.is_empty {
        return Ok(end);
    }
    // The value of `column` of the first stored row at or after per-partition seq `at`.
    let mut probe = c.prepare_cached(&format!(
        "SELECT {column} FROM telemetry WHERE partition_id = ?1 AND partition_seq >= ?2
         ORDER BY partition_seq LIMIT 1"
    ))?;
    let mut value_at = |at: i64| -> Result<Option<i64>> {
        Ok(probe
            .query_row(params![i64::from(partition), at], |r| r.get(0))
            .optional()?)
    };
    let (mut lo, mut hi) = (s.begin_sequence_number, end);
    // Invariant: every stored row below `lo` has value < min; the answer is in [lo, hi].
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match value_at(mid)? {
            Some(v) if v >= min => hi = mid,
            Some(_) => lo = mid + 1,
            None => hi = mid,
        }
    }
    Ok(lo)
}

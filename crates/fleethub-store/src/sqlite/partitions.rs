//! Partition bookkeeping of the telemetry log. A partition's newest stored row carries its
//! last sequence number, offset and enqueued time (found through the
//! `(partition_id, partition_seq)` index); the `telemetry_partitions` table keeps a **floor**
//! per partition (the next sequence number, last offset and last enqueued time as they were
//! when retention last deleted rows), so numbering continues without gaps or reuse when
//! retention empties a partition. An append looks up the next sequence number once per
//! partition it touches (an index seek) and then inserts with explicit numbers.

use super::telemetry::{COLUMNS, row_to_message};
use super::{OptionalExtension, Result, params};
use crate::{MAX_PARTITION_COUNT, PartitionSummary, StoreError, TelemetryMessage, partition_of};
use rusqlite::Connection;

/// The partition count, creating `count` partitions (and numbering the rows stored before
/// the log was partitioned) on a store that has none yet.
pub(super) fn ensure(c: &Connection, count: u32) -> Result<u32> {
    let stored: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM telemetry_partitions")?
        .query_row([], |r| r.get(0))?;
    if stored > 0 {
        return Ok(stored as u32);
    }
    if count == 0 || count > MAX_PARTITION_COUNT {
        return Err(StoreError::InvalidArgument(format!(
            "partition_count must be 1 to {MAX_PARTITION_COUNT}, not {count}"
        )));
    }
    create(c, count)?;
    Ok(count)
}

/// The next per-partition sequence number of `partition`: one past its newest row (an
/// index seek), or its floor when retention emptied it.
pub(super) fn next_seq(c: &Connection, partition: u32) -> Result<i64> {
    Ok(c.prepare_cached(
        "SELECT MAX(
             COALESCE((SELECT partition_seq FROM telemetry WHERE partition_id = ?1
                       ORDER BY partition_seq DESC LIMIT 1) + 1, 0),
             COALESCE((SELECT next_seq FROM telemetry_partitions WHERE partition_id = ?1), 0))",
    )?
    .query_row(params![i64::from(partition)], |r| r.get(0))?)
}

/// Before retention deletes rows: raises every partition's floor to its newest row (one
/// indexed lookup per partition), so the numbering and the last-enqueued values survive a
/// partition becoming empty.
pub(super) fn raise_floors(c: &Connection) -> Result<()> {
    let count: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM telemetry_partitions")?
        .query_row([], |r| r.get(0))?;
    let mut newest = c.prepare_cached(
        "SELECT partition_seq, seq, enqueued_ms FROM telemetry WHERE partition_id = ?1
         ORDER BY partition_seq DESC LIMIT 1",
    )?;
    let mut raise = c.prepare_cached(
        "UPDATE telemetry_partitions SET next_seq = ?2, last_offset = ?3, last_enqueued_ms = ?4
         WHERE partition_id = ?1 AND next_seq <= ?2 - 1",
    )?;
    for p in 0..count {
        let row: Option<(i64, i64, i64)> = newest
            .query_row(params![p], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        if let Some((seq, offset, ms)) = row {
            raise.execute(params![p, seq + 1, offset, ms])?;
        }
    }
    Ok(())
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
    let floor: Option<(i64, i64, i64)> = c
        .prepare_cached(
            "SELECT next_seq, last_offset, last_enqueued_ms FROM telemetry_partitions
             WHERE partition_id = ?1",
        )?
        .query_row(params![i64::from(partition)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((floor_next, floor_offset, floor_ms)) = floor else {
        return Err(StoreError::NotFound {
            kind: "partition",
            id: partition.to_string(),
        });
    };
    let newest: Option<(i64, i64, i64)> = c
        .prepare_cached(
            "SELECT partition_seq, seq, enqueued_ms FROM telemetry WHERE partition_id = ?1
             ORDER BY partition_seq DESC LIMIT 1",
        )?
        .query_row(params![i64::from(partition)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let oldest: Option<i64> = c
        .prepare_cached(
            "SELECT partition_seq FROM telemetry WHERE partition_id = ?1
             ORDER BY partition_seq LIMIT 1",
        )?
        .query_row(params![i64::from(partition)], |r| r.get(0))
        .optional()?;
    let (last, last_offset, last_ms) = match newest {
        Some((seq, offset, ms)) => (seq, offset, ms),
        None => (floor_next - 1, floor_offset, floor_ms),
    };
    Ok(PartitionSummary {
        partition,
        begin_sequence_number: match oldest {
            Some(b) => b,
            None if last < 0 => -1,
            None => last + 1,
        },
        last_sequence_number: last,
        last_offset: last_offset as u64,
        last_enqueued_utc_ms: last_ms,
        is_empty: oldest.is_none(),
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

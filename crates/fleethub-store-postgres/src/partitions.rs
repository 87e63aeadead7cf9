//! Partition bookkeeping of the telemetry log: one `telemetry_partitions` row per partition
//! holds the next per-partition sequence number and the newest message's offset and enqueued
//! time (kept when retention deletes messages, so numbering never restarts), and the queries
//! that find positions in a partition.

use crate::cached::Cached;
use crate::telemetry::{COLUMNS, row_to_message};
use crate::{Result, db};
use deadpool_postgres::GenericClient;
use fleethub_storage::{MAX_PARTITION_COUNT, PartitionSummary, StoreError, TelemetryMessage};

/// Key of the advisory lock under which the partition count is fixed.
const PARTITIONS_LOCK: i64 = 0x666c_6565_7470_6172;

/// The partition count, creating `count` partitions on a store that has none yet. Two nodes
/// asking at once: the first one's count is kept.
pub(crate) async fn ensure(c: &impl GenericClient, count: u32) -> Result<u32> {
    let stored = || async {
        let n: i64 = c
            .query_one_c("SELECT COUNT(*) FROM telemetry_partitions", &[])
            .await
            .map_err(db)?
            .get(0);
        Ok::<_, StoreError>(n as u32)
    };
    let n = stored().await?;
    if n > 0 {
        return Ok(n);
    }
    c.execute_c("SELECT pg_advisory_xact_lock($1)", &[&PARTITIONS_LOCK])
        .await
        .map_err(db)?;
    let n = stored().await?;
    if n > 0 {
        return Ok(n);
    }
    if count == 0 || count > MAX_PARTITION_COUNT {
        return Err(StoreError::InvalidArgument(format!(
            "partition_count must be 1 to {MAX_PARTITION_COUNT}, not {count}"
        )));
    }
    c.execute_c(
        "INSERT INTO telemetry_partitions (partition_id, next_seq, last_offset, last_enqueued_ms)
         SELECT g, 0, 0, 0 FROM generate_series(0, $1 - 1) AS g",
        &[&(count as i32)],
    )
    .await
    .map_err(db)?;
    Ok(count)
}

pub(crate) async fn read(
    c: &impl GenericClient,
    partition: u32,
    from: i64,
    limit: usize,
) -> Result<Vec<TelemetryMessage>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM telemetry WHERE partition_id = $1 AND partition_seq >= $2
             ORDER BY partition_seq LIMIT $3"
        ))
        .await
        .map_err(db)?;
    let rows = c
        .query(&stmt, &[&(partition as i32), &from, &(limit as i64)])
        .await
        .map_err(db)?;
    rows.iter().map(row_to_message).collect()
}

/// One statement (one snapshot): the partition's row and its oldest stored message.
pub(crate) async fn summary(c: &impl GenericClient, partition: u32) -> Result<PartitionSummary> {
    let stmt = c
        .prepare_cached(
            "SELECT p.next_seq, p.last_offset, p.last_enqueued_ms,
                (SELECT t.partition_seq FROM telemetry t WHERE t.partition_id = p.partition_id
                 ORDER BY t.partition_seq LIMIT 1)
             FROM telemetry_partitions p WHERE p.partition_id = $1",
        )
        .await
        .map_err(db)?;
    let Some(row) = c
        .query_opt(&stmt, &[&(partition as i32)])
        .await
        .map_err(db)?
    else {
        return Err(StoreError::NotFound {
            kind: "partition",
            id: partition.to_string(),
        });
    };
    let next: i64 = row.get(0);
    let oldest: Option<i64> = row.get(3);
    let last = next - 1;
    Ok(PartitionSummary {
        partition,
        begin_sequence_number: match oldest {
            Some(b) => b,
            None if last < 0 => -1,
            None => last + 1,
        },
        last_sequence_number: last,
        last_offset: row.get::<_, i64>(1) as u64,
        last_enqueued_utc_ms: row.get(2),
        is_empty: oldest.is_none(),
    })
}

/// The per-partition sequence number of the first stored message of `partition` whose
/// `column` (`seq` or `enqueued_ms`, each indexed with the partition) is `>= min`; the next one
/// to be assigned if none is.
pub(crate) async fn first_seq_where(
    c: &impl GenericClient,
    partition: u32,
    column: &'static str,
    min: i64,
) -> Result<i64> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT partition_seq FROM telemetry WHERE partition_id = $1 AND {column} >= $2
             ORDER BY {column}, partition_seq LIMIT 1"
        ))
        .await
        .map_err(db)?;
    match c
        .query_opt(&stmt, &[&(partition as i32), &min])
        .await
        .map_err(db)?
    {
        Some(r) => Ok(r.get(0)),
        None => Ok(summary(c, partition).await?.last_sequence_number + 1),
    }
}

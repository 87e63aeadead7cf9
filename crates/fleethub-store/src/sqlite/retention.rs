//! Telemetry retention without a time index: the log's global numbering (`seq`, the rowid)
//! follows the order of the appends, and every row carries its enqueued time in milliseconds
//! (`enqueued_ms`), so the first row at or after a time is found by a binary search over the
//! rowid (O(log n) rowid seeks) and the older rows are deleted as one rowid range. Appends do
//! not pay for an index on the time (schema migration 14 dropped `telemetry_by_time`).

use super::{OptionalExtension, Result, params};
use crate::StoreError;
use rusqlite::Connection;

/// Deletes the rows enqueued before `before_utc` (RFC 3339); returns how many.
///
/// The enqueued time is taken before an append reaches the writer, so appends running at the
/// same moment may interleave their times by a few milliseconds along `seq`. The search then
/// lands inside that window, and the delete only takes rows older than the cut-off
/// (`enqueued_ms < cut-off`): no row is deleted before its time; a row of the window may
/// stay until the next pass. Times compare at millisecond precision (a row may stay up to
/// 1 ms longer than its 100 ns timestamp says). Rows stored before the log had
/// `enqueued_ms` (older stores, before `init_partitions`) compare by their text time.
pub(super) fn prune(c: &Connection, before_utc: &str) -> Result<u64> {
    let before_ms = fleethub_api::time::parse_utc_ms(before_utc).ok_or_else(|| {
        StoreError::InvalidArgument(format!("'{before_utc}' is not an RFC 3339 time"))
    })?;
    let cut = first_seq_at_or_after(c, before_ms)?;
    let deleted = c
        .prepare_cached(
            "DELETE FROM telemetry WHERE seq < ?1
             AND (enqueued_ms < ?2 OR (enqueued_ms IS NULL AND enqueued_utc < ?3))",
        )?
        .execute(params![cut, before_ms, before_utc])?;
    Ok(deleted as u64)
}

/// The first `seq` whose row has `enqueued_ms >= min` (rows without one count as older);
/// one past the newest row if none has.
fn first_seq_at_or_after(c: &Connection, min: i64) -> Result<i64> {
    let bounds: Option<(i64, i64)> = c
        .prepare_cached("SELECT MIN(seq), MAX(seq) FROM telemetry")?
        .query_row([], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .map(|(lo, hi)| lo.zip(hi))?;
    let Some((first, last)) = bounds else {
        return Ok(0);
    };
    // The time of the first stored row at or after `at` (rows may be missing below the newest).
    let mut probe = c.prepare_cached(
        "SELECT COALESCE(enqueued_ms, -1) FROM telemetry WHERE seq >= ?1 ORDER BY seq LIMIT 1",
    )?;
    let (mut lo, mut hi) = (first, last + 1);
    // Invariant (for times that grow along `seq`): every row below `lo` is older than `min`;
    // the answer is in [lo, hi].
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at: Option<i64> = probe.query_row(params![mid], |r| r.get(0)).optional()?;
        match at {
            Some(ms) if ms >= min => hi = mid,
            Some(_) => lo = mid + 1,
            None => hi = mid,
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use crate::TelemetryStore;
    use crate::sqlite::SqliteStore;
    use crate::suite::telemetry;

    /// The seconds (of `suite::telemetry`) of the rows left, in log order.
    async fn left(s: &SqliteStore) -> Vec<String> {
        let rows = s.read_telemetry(0, 100).await.unwrap();
        rows.iter()
            .map(|m| String::from_utf8(m.body.clone()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn retention_deletes_only_older_rows_when_times_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let s = SqliteStore::open(&path).unwrap();
        // Appends whose times interleave along the log (taken before they reached the writer).
        for sec in [1, 2, 3, 5, 4, 6, 7] {
            s.append_telemetry(vec![telemetry("d", sec)]).await.unwrap();
        }
        // 4.5 s: 1, 2 and 3 go; 5 and newer stay; 4 (stored after 5) may stay until a later pass.
        let n = s
            .prune_telemetry("2024-01-01T00:00:04.5000000Z")
            .await
            .unwrap();
        let rest = left(&s).await;
        assert_eq!(n as usize, 7 - rest.len());
        assert!(rest.starts_with(&["d@5".to_string()]) || rest.starts_with(&["d@4".into()]));
        for kept in ["d@5", "d@6", "d@7"] {
            assert!(
                rest.iter().any(|r| r == kept),
                "{kept} was deleted: {rest:?}"
            );
        }
        assert!(
            !rest
                .iter()
                .any(|r| ["d@1", "d@2", "d@3"].contains(&r.as_str()))
        );
        // A later cut-off takes the rest; the log's end stays numbered.
        assert_eq!(
            s.prune_telemetry("2024-01-01T00:00:06.5000000Z")
                .await
                .unwrap() as usize,
            rest.len() - 1
        );
        assert_eq!(left(&s).await, ["d@7"]);
        assert_eq!(s.prune_telemetry("2024-01-01T00:01:00Z").await.unwrap(), 1);
        assert!(left(&s).await.is_empty());
        assert_eq!(s.prune_telemetry("2024-01-01T00:01:00Z").await.unwrap(), 0);
        assert!(s.prune_telemetry("yesterday").await.is_err());
        // Appends insert into no time index (migration 14 dropped it).
        let conn = rusqlite::Connection::open(&path).unwrap();
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'telemetry'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(indexes, ["telemetry_by_partition"]);
    }
}

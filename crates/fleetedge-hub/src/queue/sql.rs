//! The SQL of each queue operation, run inside the worker's transaction.

use std::sync::atomic::Ordering;

use rusqlite::{OptionalExtension, params};

use super::{Counters, Entry, QueueError, Stored, now_ms};
use crate::message::EdgeMessage;

pub(super) fn enqueue(
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

pub(super) fn peek(
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

pub(super) fn remove(
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

pub(super) fn endpoints(tx: &rusqlite::Transaction<'_>) -> Result<Vec<String>, QueueError> {
    let mut stmt = tx.prepare_cached("SELECT DISTINCT endpoint FROM messages ORDER BY endpoint")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn purge_expired(
    tx: &rusqlite::Transaction<'_>,
    counters: &Counters,
) -> Result<(), QueueError> {
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

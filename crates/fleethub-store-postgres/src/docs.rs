//! Helpers for tables of JSON documents keyed by a (lower-cased) id with an etag: encoding,
//! precondition checks, the generic row operations and paging. The checks and the paging
//! tokens behave as the SQLite backend's.

use crate::cached::Cached;
use crate::{Result, db};
use deadpool_postgres::GenericClient;
use fleethub_storage::{Page, PageRequest, Precondition, StoreError};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Write as _;

pub(crate) const DEFAULT_PAGE: usize = 100;
pub(crate) const MAX_PAGE: usize = 1000;

pub(crate) fn new_etag() -> String {
    format!("\"{}\"", uuid::Uuid::new_v4())
}

pub(crate) fn decode<T: DeserializeOwned>(kind: &'static str, id: &str, doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt {
        kind,
        id: id.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

pub(crate) fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

pub(crate) use fleethub_storage::{check_delete, check_write as check};

/// (etag, doc) of a row, locked for the rest of the transaction (`FOR UPDATE`): a concurrent
/// writer on any node waits until this transaction ends, then sees its result.
pub(crate) async fn lock_row(
    c: &impl GenericClient,
    table: &str,
    key: &str,
) -> Result<Option<(String, String)>> {
    let sql = format!("SELECT etag, doc FROM {table} WHERE id_lower = $1 FOR UPDATE");
    let row = c.query_opt_c(&sql, &[&key]).await.map_err(db)?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

pub(crate) async fn get_doc<T: DeserializeOwned>(
    c: &impl GenericClient,
    table: &str,
    kind: &'static str,
    key: &str,
) -> Result<Option<T>> {
    let sql = format!("SELECT doc FROM {table} WHERE id_lower = $1");
    let stmt = c.prepare_cached(&sql).await.map_err(db)?;
    match c.query_opt(&stmt, &[&key]).await.map_err(db)? {
        Some(r) => Ok(Some(decode(kind, key, r.get(0))?)),
        None => Ok(None),
    }
}

/// Writes a document row after [`check`]. A row that did not exist when it was locked is
/// inserted with `ON CONFLICT DO NOTHING` under `MustNotExist`, so that of two nodes creating
/// the same id at once, one gets `AlreadyExists` instead of overwriting the other.
pub(crate) async fn write(
    c: &impl GenericClient,
    table: &str,
    kind: &'static str,
    id: &str,
    key: &str,
    cond: &Precondition,
    etag: &str,
    doc: &str,
) -> Result<()> {
    if *cond == Precondition::MustNotExist {
        let sql = format!(
            "INSERT INTO {table} (id_lower, etag, doc) VALUES ($1, $2, $3) ON CONFLICT (id_lower) DO NOTHING"
        );
        if c.execute_c(&sql, &[&key, &etag, &doc]).await.map_err(db)? == 0 {
            return Err(StoreError::AlreadyExists {
                kind,
                id: id.to_string(),
            });
        }
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO {table} (id_lower, etag, doc) VALUES ($1, $2, $3)
         ON CONFLICT (id_lower) DO UPDATE SET etag = excluded.etag, doc = excluded.doc"
    );
    c.execute_c(&sql, &[&key, &etag, &doc]).await.map_err(db)?;
    Ok(())
}

pub(crate) async fn delete(
    c: &impl GenericClient,
    table: &str,
    kind: &'static str,
    key: &str,
    cond: &Precondition,
) -> Result<()> {
    let current = lock_row(c, table, key).await?;
    check_delete(cond, kind, key, current.as_ref().map(|(e, _)| e.as_str()))?;
    c.execute_c(&format!("DELETE FROM {table} WHERE id_lower = $1"), &[&key])
        .await
        .map_err(db)?;
    Ok(())
}

/// Continuation tokens are the hex of the last key returned.
pub(crate) fn decode_continuation(c: Option<&str>) -> Result<String> {
    let Some(c) = c.filter(|c| !c.is_empty()) else {
        return Ok(String::new());
    };
    let bytes: std::result::Result<Vec<u8>, _> = (0..c.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(c.get(i..i + 2).unwrap_or("zz"), 16))
        .collect();
    bytes
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            StoreError::InvalidArgument(format!(
                "invalid continuation token '{c}': send back the x-ms-continuation of the previous page"
            ))
        })
}

pub(crate) fn encode_continuation(key: &str) -> String {
    key.bytes()
        .fold(String::with_capacity(key.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

pub(crate) fn page_limit(p: &PageRequest) -> usize {
    match p.max_items {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// Keys after the continuation, in key order (the key columns are `COLLATE "C"`: byte order, as in SQLite),
/// one more than the page holds to tell whether another page follows.
pub(crate) async fn page_keys(
    c: &impl GenericClient,
    sql_without_limit: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    page: &PageRequest,
) -> Result<(Vec<tokio_postgres::Row>, usize)> {
    let limit = page_limit(page);
    let sql = format!("{sql_without_limit} LIMIT {}", limit + 1);
    let stmt = c.prepare_cached(&sql).await.map_err(db)?;
    Ok((c.query(&stmt, params).await.map_err(db)?, limit))
}

/// Lists documents of `table` (columns `id_lower`, `doc`) in key order after the
/// continuation, optionally only rows whose `filter.0` column equals `filter.1`.
pub(crate) async fn list<T: DeserializeOwned>(
    c: &impl GenericClient,
    table: &str,
    kind: &'static str,
    filter: Option<(&str, &str)>,
    page: &PageRequest,
) -> Result<Page<T>> {
    let after = decode_continuation(page.continuation.as_deref())?;
    let (rows, limit) = if let Some((col, v)) = filter {
        let sql = format!(
            "SELECT id_lower, doc FROM {table} WHERE id_lower > $1 AND {col} = $2
             ORDER BY id_lower"
        );
        page_keys(c, &sql, &[&after, &v], page).await?
    } else {
        let sql =
            format!("SELECT id_lower, doc FROM {table} WHERE id_lower > $1 ORDER BY id_lower");
        page_keys(c, &sql, &[&after], page).await?
    };
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut last = None;
    for r in rows.iter().take(limit) {
        let key: String = r.get(0);
        items.push(decode(kind, &key, r.get(1))?);
        last = Some(key);
    }
    Ok(Page {
        items,
        continuation: if more {
            last.map(|k| encode_continuation(&k))
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_round_trip() {
        let c = encode_continuation("dev-01:x");
        assert_eq!(decode_continuation(Some(&c)).unwrap(), "dev-01:x");
        assert!(decode_continuation(Some("zz")).is_err());
        assert_eq!(decode_continuation(None).unwrap(), "");
    }
}

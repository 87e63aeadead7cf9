//! Generic helpers for tables of JSON documents keyed by a (lower-cased) id with an etag.

use super::cached::CachedStatements;
use std::fmt::Write as _;

use crate::{Page, PageRequest, Precondition, Result, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Serialize, de::DeserializeOwned};

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

/// (etag, doc) of a row.
pub(crate) fn get_row(
    conn: &Connection,
    table: &str,
    key_col: &str,
    key: &str,
) -> Result<Option<(String, String)>> {
    let sql = format!("SELECT etag, doc FROM {table} WHERE {key_col} = ?1");
    Ok(conn
        .query_row_cached(&sql, params![key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub(crate) fn get_doc<T: DeserializeOwned>(
    conn: &Connection,
    table: &str,
    kind: &'static str,
    key: &str,
) -> Result<Option<T>> {
    match get_row(conn, table, "id_lower", key)? {
        Some((_, doc)) => Ok(Some(decode(kind, key, &doc)?)),
        None => Ok(None),
    }
}

pub(crate) use fleethub_storage::{check_delete, check_write as check};

pub(crate) fn upsert(
    conn: &Connection,
    table: &str,
    key: &str,
    etag: &str,
    doc: &str,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {table} (id_lower, etag, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT(id_lower) DO UPDATE SET etag = excluded.etag, doc = excluded.doc"
    );
    conn.execute_cached(&sql, params![key, etag, doc])?;
    Ok(())
}

pub(crate) fn delete(
    conn: &Connection,
    table: &str,
    kind: &'static str,
    key: &str,
    cond: &Precondition,
) -> Result<()> {
    let current = get_row(conn, table, "id_lower", key)?;
    check_delete(
        cond,
        kind,
        key,
        current.as_ref().map(|(etag, _)| etag.as_str()),
    )?;
    conn.execute_cached(
        &format!("DELETE FROM {table} WHERE id_lower = ?1"),
        params![key],
    )?;
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

/// Lists documents of `table` in key order after the continuation, optionally filtered by an
/// extra `WHERE` clause with one parameter.
pub(crate) fn list<T: DeserializeOwned>(
    conn: &Connection,
    table: &str,
    key_col: &str,
    kind: &'static str,
    filter: Option<(&str, &str)>,
    page: &PageRequest,
) -> Result<Page<T>> {
    let after = decode_continuation(page.continuation.as_deref())?;
    let limit = page_limit(page);
    let (extra, fval) = match filter {
        Some((clause, v)) => (format!(" AND {clause} = ?3"), Some(v)),
        None => (String::new(), None),
    };
    let sql = format!(
        "SELECT {key_col}, doc FROM {table} WHERE {key_col} > ?1{extra} ORDER BY {key_col} LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = match fval {
        Some(v) => stmt.query(params![after, (limit + 1) as i64, v])?,
        None => stmt.query(params![after, (limit + 1) as i64])?,
    };
    let mut items = Vec::new();
    let mut keys = Vec::new();
    while let Some(row) = rows.next()? {
        let key: String = row.get(0)?;
        let doc: String = row.get(1)?;
        if items.len() == limit {
            return Ok(Page {
                items,
                continuation: keys.last().map(|k: &String| encode_continuation(k)),
            });
        }
        items.push(decode(kind, &key, &doc)?);
        keys.push(key);
    }
    Ok(Page {
        items,
        continuation: None,
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

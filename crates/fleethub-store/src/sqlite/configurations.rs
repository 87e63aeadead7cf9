//! Configurations (IoT Edge deployments at scale) and per-device manual edge content.

use super::SqliteStore;
use super::cached::CachedStatements;
use super::docs::{check, check_delete, decode, encode};
use crate::{ConfigurationStore, Precondition, Result, StoreError};
use async_trait::async_trait;
use base64::Engine;
use fleethub_api::{Configuration, ConfigurationContent, time::now_utc};
use rusqlite::{Connection, OptionalExtension, params};

/// Configuration etags are Azure-style: base64 of the revision number (`MQ==` for 1).
fn etag_of(revision: i64) -> String {
    base64::engine::general_purpose::STANDARD.encode(revision.to_string())
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<Configuration>> {
    let doc: Option<String> = conn
        .query_row_cached(
            "SELECT doc FROM configurations WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()?;
    doc.map(|d| decode("configuration", id, &d)).transpose()
}

/// Creates or replaces; keeps `createdTimeUtc`, sets `lastUpdatedTimeUtc` and a new etag.
pub(super) fn put(
    conn: &Connection,
    mut cfg: Configuration,
    cond: &Precondition,
) -> Result<Configuration> {
    let id = cfg.id.clone();
    let current: Option<(String, i64, String)> = conn
        .query_row_cached(
            "SELECT etag, revision, created_utc FROM configurations WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    check(
        cond,
        "configuration",
        &id,
        current.as_ref().map(|c| c.0.as_str()),
    )?;
    let now = now_utc();
    let (revision, created) = match current {
        Some((_, rev, created)) => (rev + 1, created),
        None => (1, now.clone()),
    };
    cfg.etag = Some(etag_of(revision));
    cfg.created_time_utc = Some(created.clone());
    cfg.last_updated_time_utc = Some(now);
    conn.execute_cached(
        "INSERT INTO configurations (id, etag, revision, priority, created_utc, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(id) DO UPDATE SET etag = excluded.etag, revision = excluded.revision,
            priority = excluded.priority, doc = excluded.doc",
        params![
            id,
            cfg.etag.as_deref().unwrap_or(""),
            revision,
            cfg.priority,
            created,
            encode(&cfg)?
        ],
    )?;
    Ok(cfg)
}

pub(super) fn delete(conn: &Connection, id: &str, cond: &Precondition) -> Result<()> {
    let etag: Option<String> = conn
        .query_row_cached(
            "SELECT etag FROM configurations WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()?;
    check_delete(cond, "configuration", id, etag.as_deref())?;
    conn.execute_cached("DELETE FROM configurations WHERE id = ?1", params![id])?;
    Ok(())
}

/// Up to `max` configurations in id order (0 = all).
pub(super) fn list(conn: &Connection, max: usize) -> Result<Vec<Configuration>> {
    let limit = if max == 0 { -1 } else { max as i64 };
    let mut stmt =
        conn.prepare_cached("SELECT id, doc FROM configurations ORDER BY id LIMIT ?1")?;
    let rows: Vec<(String, String)> = stmt
        .query_map(params![limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    rows.iter()
        .map(|(id, doc)| decode("configuration", id, doc))
        .collect()
}

pub(super) fn get_manual(
    conn: &Connection,
    device_id: &str,
) -> Result<Option<ConfigurationContent>> {
    let doc: Option<String> = conn
        .query_row_cached(
            "SELECT doc FROM device_manual_content WHERE device_id = ?1",
            params![device_id],
            |r| r.get(0),
        )
        .optional()?;
    doc.map(|d| decode("manual edge content", device_id, &d))
        .transpose()
}

pub(super) fn put_manual(
    conn: &Connection,
    device_id: &str,
    content: &ConfigurationContent,
) -> Result<()> {
    let exists: Option<i64> = conn
        .query_row_cached(
            "SELECT 1 FROM devices WHERE device_id = ?1",
            params![device_id],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::NotFound {
            kind: "device",
            id: device_id.to_string(),
        });
    }
    conn.execute_cached(
        "INSERT INTO device_manual_content (device_id, doc, updated_utc) VALUES (?1, ?2, ?3)
         ON CONFLICT(device_id) DO UPDATE SET doc = excluded.doc, updated_utc = excluded.updated_utc",
        params![device_id, encode(content)?, now_utc()],
    )?;
    Ok(())
}

#[async_trait]
impl ConfigurationStore for SqliteStore {
    async fn get_configuration(&self, id: &str) -> Result<Option<Configuration>> {
        let id = id.to_string();
        self.pool.read(move |c| get(c, &id)).await
    }

    async fn put_configuration(
        &self,
        cfg: Configuration,
        cond: Precondition,
    ) -> Result<Configuration> {
        self.pool.write(move |c| put(c, cfg, &cond)).await
    }

    async fn delete_configuration(&self, id: &str, cond: Precondition) -> Result<()> {
        let id = id.to_string();
        self.pool.write(move |c| delete(c, &id, &cond)).await
    }

    async fn list_configurations(&self, max: usize) -> Result<Vec<Configuration>> {
        self.pool.read(move |c| list(c, max)).await
    }

    async fn get_manual_content(&self, device_id: &str) -> Result<Option<ConfigurationContent>> {
        let id = device_id.to_string();
        self.pool.read(move |c| get_manual(c, &id)).await
    }

    async fn put_manual_content(
        &self,
        device_id: &str,
        content: ConfigurationContent,
    ) -> Result<()> {
        let id = device_id.to_string();
        self.pool.write(move |c| put_manual(c, &id, &content)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_look_like_azure() {
        assert_eq!(etag_of(1), "MQ==");
        assert_eq!(etag_of(12), "MTI=");
    }
}

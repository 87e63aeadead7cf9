//! Configurations (IoT Edge deployments at scale) and per-device manual edge content.

use crate::cached::Cached;
use crate::connect::in_tx;
use crate::docs::{check, check_delete, decode, encode};
use crate::{PgStore, Result, db};
use async_trait::async_trait;
use base64::Engine;
use deadpool_postgres::GenericClient;
use fleethub_api::{Configuration, ConfigurationContent, time::now_utc};
use fleethub_storage::{ConfigurationStore, Precondition, StoreError};

/// Configuration etags are Azure-style: base64 of the revision number (`MQ==` for 1).
fn etag_of(revision: i64) -> String {
    base64::engine::general_purpose::STANDARD.encode(revision.to_string())
}

/// Creates or replaces; keeps `createdTimeUtc`, sets `lastUpdatedTimeUtc` and a new etag.
async fn put(
    c: &impl GenericClient,
    mut cfg: Configuration,
    cond: &Precondition,
) -> Result<Configuration> {
    let id = cfg.id.clone();
    let current: Option<(String, i64, String)> = c
        .query_opt_c(
            "SELECT etag, revision, created_utc FROM configurations WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(db)?
        .map(|r| (r.get(0), r.get(1), r.get(2)));
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
    let etag = etag_of(revision);
    let doc = encode(&cfg)?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&id, &etag, &revision, &cfg.priority, &created, &doc];
    // A row created concurrently after the lock found none: a create that must not overwrite
    // reports it; any other write replaces it.
    let on_conflict = if *cond == Precondition::MustNotExist {
        "DO NOTHING"
    } else {
        "DO UPDATE SET etag = excluded.etag, revision = excluded.revision,
            priority = excluded.priority, doc = excluded.doc"
    };
    let n = c
        .execute_c(
            &format!(
                "INSERT INTO configurations (id, etag, revision, priority, created_utc, doc)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) {on_conflict}"
            ),
            &params,
        )
        .await
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::AlreadyExists {
            kind: "configuration",
            id,
        });
    }
    Ok(cfg)
}

async fn delete(c: &impl GenericClient, id: &str, cond: &Precondition) -> Result<()> {
    let etag: Option<String> = c
        .query_opt_c(
            "SELECT etag FROM configurations WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(db)?
        .map(|r| r.get(0));
    check_delete(cond, "configuration", id, etag.as_deref())?;
    c.execute_c("DELETE FROM configurations WHERE id = $1", &[&id])
        .await
        .map_err(db)?;
    Ok(())
}

async fn put_manual(
    c: &impl GenericClient,
    device_id: &str,
    content: &ConfigurationContent,
) -> Result<()> {
    // FOR SHARE: the device cannot be deleted before this commits.
    let exists = c
        .query_opt_c(
            "SELECT 1 FROM devices WHERE device_id = $1 FOR SHARE",
            &[&device_id],
        )
        .await
        .map_err(db)?;
    if exists.is_none() {
        return Err(StoreError::NotFound {
            kind: "device",
            id: device_id.to_string(),
        });
    }
    c.execute_c(
        "INSERT INTO device_manual_content (device_id, doc, updated_utc) VALUES ($1, $2, $3)
         ON CONFLICT (device_id) DO UPDATE SET doc = excluded.doc, updated_utc = excluded.updated_utc",
        &[&device_id, &encode(content)?, &now_utc()],
    )
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl ConfigurationStore for PgStore {
    async fn get_configuration(&self, id: &str) -> Result<Option<Configuration>> {
        let c = self.conn().await?;
        let row = c
            .query_opt_c("SELECT doc FROM configurations WHERE id = $1", &[&id])
            .await
            .map_err(db)?;
        row.map(|r| decode("configuration", id, r.get(0)))
            .transpose()
    }

    async fn put_configuration(
        &self,
        cfg: Configuration,
        cond: Precondition,
    ) -> Result<Configuration> {
        in_tx!(self, |tx| put(&tx, cfg, &cond))
    }

    async fn delete_configuration(&self, id: &str, cond: Precondition) -> Result<()> {
        in_tx!(self, |tx| delete(&tx, id, &cond))
    }

    async fn list_configurations(&self, max: usize) -> Result<Vec<Configuration>> {
        let limit = if max == 0 {
            i64::MAX
        } else {
            i64::try_from(max).unwrap_or(i64::MAX)
        };
        let c = self.conn().await?;
        let rows = c
            .query_c(
                "SELECT id, doc FROM configurations ORDER BY id LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| decode("configuration", r.get(0), r.get(1)))
            .collect()
    }

    async fn get_manual_content(&self, device_id: &str) -> Result<Option<ConfigurationContent>> {
        let c = self.conn().await?;
        let row = c
            .query_opt_c(
                "SELECT doc FROM device_manual_content WHERE device_id = $1",
                &[&device_id],
            )
            .await
            .map_err(db)?;
        row.map(|r| decode("manual edge content", device_id, r.get(0)))
            .transpose()
    }

    async fn put_manual_content(
        &self,
        device_id: &str,
        content: ConfigurationContent,
    ) -> Result<()> {
        in_tx!(self, |tx| put_manual(&tx, device_id, &content))
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

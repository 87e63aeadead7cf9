//! Which node holds each identity's live connection (nodes in a cluster write it).

use super::cached::CachedStatements;
use super::{OptionalExtension, Result, SqliteStore, async_trait, params};
use crate::{PresenceRecord, PresenceStore};

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn claim_presence(
        &self,
        identity: &str,
        node: &str,
        at_ms: i64,
    ) -> Result<Option<String>> {
        let (id, node) = (identity.to_string(), node.to_string());
        self.pool
            .write(move |c| {
                let before: Option<Option<String>> = c
                    .query_row(
                        "SELECT node FROM presence WHERE identity = ?1",
                        params![id],
                        |r| r.get(0),
                    )
                    .optional()?;
                c.execute_cached(
                    "INSERT INTO presence (identity, node, state_updated_ms, last_activity_ms)
                     VALUES (?1, ?2, ?3, ?3)
                     ON CONFLICT(identity) DO UPDATE SET node = excluded.node,
                        state_updated_ms = excluded.state_updated_ms,
                        last_activity_ms = max(last_activity_ms, excluded.last_activity_ms)",
                    params![id, node, at_ms],
                )?;
                Ok(before.flatten().filter(|b| *b != node))
            })
            .await
    }

    async fn release_presence(&self, identity: &str, node: &str, at_ms: i64) -> Result<bool> {
        let (id, node) = (identity.to_string(), node.to_string());
        self.pool
            .write(move |c| {
                Ok(c.execute_cached(
                    "UPDATE presence SET node = NULL, state_updated_ms = ?3
                     WHERE identity = ?1 AND node = ?2",
                    params![id, node, at_ms],
                )? > 0)
            })
            .await
    }

    async fn get_presence(&self, identity: &str) -> Result<Option<PresenceRecord>> {
        let id = identity.to_string();
        self.pool
            .read(move |c| {
                Ok(c.query_row_cached(
                    "SELECT node, state_updated_ms, last_activity_ms FROM presence WHERE identity = ?1",
                    params![id],
                    |r| {
                        Ok(PresenceRecord {
                            node: r.get(0)?,
                            state_updated_ms: r.get(1)?,
                            last_activity_ms: r.get(2)?,
                        })
                    },
                )
                .optional()?)
            })
            .await
    }

    async fn get_presences(&self, identities: &[String]) -> Result<Vec<(String, PresenceRecord)>> {
        let ids = identities.to_vec();
        self.pool
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT node, state_updated_ms, last_activity_ms FROM presence WHERE identity = ?1",
                )?;
                let mut out = Vec::new();
                for id in ids {
                    let rec = stmt
                        .query_row(params![id], |r| {
                            Ok(PresenceRecord {
                                node: r.get(0)?,
                                state_updated_ms: r.get(1)?,
                                last_activity_ms: r.get(2)?,
                            })
                        })
                        .optional()?;
                    if let Some(rec) = rec {
                        out.push((id, rec));
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn touch_presence(&self, entries: Vec<(String, i64)>) -> Result<()> {
        self.pool
            .write(move |c| {
                let mut stmt = c.prepare_cached(
                    "UPDATE presence SET last_activity_ms = max(last_activity_ms, ?2) WHERE identity = ?1",
                )?;
                for (id, at) in &entries {
                    stmt.execute(params![id, at])?;
                }
                Ok(())
            })
            .await
    }

    async fn count_presence_by_node(&self) -> Result<Vec<(String, u64)>> {
        self.pool
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT node, count(*) FROM presence WHERE node IS NOT NULL GROUP BY node",
                )?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                let mut out = Vec::new();
                for row in rows {
                    let (node, n) = row?;
                    out.push((node, n as u64));
                }
                Ok(out)
            })
            .await
    }

    async fn release_node_presence(&self, node: &str, at_ms: i64) -> Result<u64> {
        let node = node.to_string();
        self.pool
            .write(move |c| {
                Ok(c.execute_cached(
                    "UPDATE presence SET node = NULL, state_updated_ms = ?2 WHERE node = ?1",
                    params![node, at_ms],
                )? as u64)
            })
            .await
    }

    async fn forget_presence(&self, identity: &str) -> Result<()> {
        let id = identity.to_string();
        self.pool
            .write(move |c| {
                c.execute_cached("DELETE FROM presence WHERE identity = ?1", params![id])?;
                Ok(())
            })
            .await
    }
}

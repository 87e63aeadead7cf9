//! Which node holds each identity's live connection (nodes in a cluster write it).

use crate::cached::Cached;
use crate::{PgStore, Result, db};
use async_trait::async_trait;
use fleethub_storage::{PresenceRecord, PresenceStore};

#[async_trait]
impl PresenceStore for PgStore {
    async fn claim_presence(
        &self,
        identity: &str,
        node: &str,
        at_ms: i64,
    ) -> Result<Option<String>> {
        let c = self.conn().await?;
        // `old` reads the row as it was before this statement's upsert.
        let row = c
            .query_opt_c(
                "WITH old AS (SELECT node FROM presence WHERE identity = $1)
                 INSERT INTO presence (identity, node, state_updated_ms, last_activity_ms)
                 VALUES ($1, $2, $3, $3)
                 ON CONFLICT (identity) DO UPDATE SET node = excluded.node,
                    state_updated_ms = excluded.state_updated_ms,
                    last_activity_ms = GREATEST(presence.last_activity_ms, excluded.last_activity_ms)
                 RETURNING (SELECT node FROM old)",
                &[&identity, &node, &at_ms],
            )
            .await
            .map_err(db)?;
        let before: Option<String> = row.and_then(|r| r.get(0));
        Ok(before.filter(|b| b != node))
    }

    async fn release_presence(&self, identity: &str, node: &str, at_ms: i64) -> Result<bool> {
        let c = self.conn().await?;
        let n = c
            .execute_c(
                "UPDATE presence SET node = NULL, state_updated_ms = $3
                 WHERE identity = $1 AND node = $2",
                &[&identity, &node, &at_ms],
            )
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn get_presence(&self, identity: &str) -> Result<Option<PresenceRecord>> {
        let c = self.conn().await?;
        let row = c
            .query_opt_c(
                "SELECT node, state_updated_ms, last_activity_ms FROM presence WHERE identity = $1",
                &[&identity],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| PresenceRecord {
            node: r.get(0),
            state_updated_ms: r.get(1),
            last_activity_ms: r.get(2),
        }))
    }

    async fn touch_presence(&self, entries: Vec<(String, i64)>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let (ids, ats): (Vec<String>, Vec<i64>) = entries.into_iter().unzip();
        let c = self.conn().await?;
        c.execute_c(
            "UPDATE presence p SET last_activity_ms = GREATEST(p.last_activity_ms, t.at)
             FROM unnest($1::text[], $2::bigint[]) AS t(identity, at)
             WHERE p.identity = t.identity",
            &[&ids, &ats],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn release_node_presence(&self, node: &str, at_ms: i64) -> Result<u64> {
        let c = self.conn().await?;
        c.execute_c(
            "UPDATE presence SET node = NULL, state_updated_ms = $2 WHERE node = $1",
            &[&node, &at_ms],
        )
        .await
        .map_err(db)
    }

    async fn forget_presence(&self, identity: &str) -> Result<()> {
        let c = self.conn().await?;
        c.execute_c("DELETE FROM presence WHERE identity = $1", &[&identity])
            .await
            .map_err(db)?;
        Ok(())
    }
}

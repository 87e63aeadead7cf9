//! The hubs linked to the DPS instance.

use crate::cached::Cached;
use crate::docs::{decode, encode};
use crate::{PgStore, Result, db};
use async_trait::async_trait;
use fleethub_api::LinkedHub;
use fleethub_storage::{LinkedHubStore, StoreError};

#[async_trait]
impl LinkedHubStore for PgStore {
    async fn list_linked_hubs(&self) -> Result<Vec<LinkedHub>> {
        let c = self.conn().await?;
        let rows = c
            .query_c(
                "SELECT name_lower, doc FROM linked_hubs ORDER BY name_lower",
                &[],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| decode("linked hub", r.get(0), r.get(1)))
            .collect()
    }

    async fn put_linked_hub(&self, hub: LinkedHub) -> Result<LinkedHub> {
        let doc = encode(&hub)?;
        let key = hub.name.to_ascii_lowercase();
        let c = self.conn().await?;
        c.execute_c(
            "INSERT INTO linked_hubs (name_lower, doc) VALUES ($1, $2)
             ON CONFLICT (name_lower) DO UPDATE SET doc = excluded.doc",
            &[&key, &doc],
        )
        .await
        .map_err(db)?;
        Ok(hub)
    }

    async fn delete_linked_hub(&self, name: &str) -> Result<()> {
        let key = name.to_ascii_lowercase();
        let c = self.conn().await?;
        let n = c
            .execute_c("DELETE FROM linked_hubs WHERE name_lower = $1", &[&key])
            .await
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::NotFound {
                kind: "linked hub",
                id: name.to_string(),
            });
        }
        Ok(())
    }
}

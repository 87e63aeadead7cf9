//! The hubs linked to the DPS instance.

use super::cached::CachedStatements;
use super::docs::{decode, encode};
use super::{Result, SqliteStore, async_trait, params};
use crate::{LinkedHubStore, StoreError};
use fleethub_api::LinkedHub;

#[async_trait]
impl LinkedHubStore for SqliteStore {
    async fn list_linked_hubs(&self) -> Result<Vec<LinkedHub>> {
        self.pool
            .read(move |c| {
                let mut stmt =
                    c.prepare("SELECT name_lower, doc FROM linked_hubs ORDER BY name_lower")?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
                let mut hubs = Vec::new();
                for row in rows {
                    let (name, doc) = row?;
                    hubs.push(decode("linked hub", &name, &doc)?);
                }
                Ok(hubs)
            })
            .await
    }

    async fn put_linked_hub(&self, hub: LinkedHub) -> Result<LinkedHub> {
        let doc = encode(&hub)?;
        let key = hub.name.to_ascii_lowercase();
        self.pool
            .write(move |c| {
                c.execute_cached(
                    "INSERT INTO linked_hubs (name_lower, doc) VALUES (?1, ?2)
                     ON CONFLICT(name_lower) DO UPDATE SET doc = excluded.doc",
                    params![key, doc],
                )?;
                Ok(hub)
            })
            .await
    }

    async fn delete_linked_hub(&self, name: &str) -> Result<()> {
        let key = name.to_ascii_lowercase();
        let name = name.to_string();
        self.pool
            .write(move |c| {
                let n = c.execute_cached(
                    "DELETE FROM linked_hubs WHERE name_lower = ?1",
                    params![key],
                )?;
                if n == 0 {
                    return Err(StoreError::NotFound {
                        kind: "linked hub",
                        id: name,
                    });
                }
                Ok(())
            })
            .await
    }
}

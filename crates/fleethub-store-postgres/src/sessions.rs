//! Persistent MQTT sessions.

use crate::cached::Cached;
use crate::{PgStore, Result, db};
use async_trait::async_trait;
use fleethub_api::time::now_utc;
use fleethub_storage::SessionStore;

#[async_trait]
impl SessionStore for PgStore {
    async fn get_mqtt_session(&self, client_id: &str) -> Result<Option<String>> {
        let c = self.conn().await?;
        let row = c
            .query_opt_c(
                "SELECT doc FROM mqtt_sessions WHERE client_id = $1",
                &[&client_id],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn put_mqtt_session(&self, client_id: &str, doc: &str) -> Result<()> {
        let c = self.conn().await?;
        c.execute_c(
            "INSERT INTO mqtt_sessions (client_id, doc, updated_utc) VALUES ($1, $2, $3)
             ON CONFLICT (client_id) DO UPDATE SET doc = excluded.doc, updated_utc = excluded.updated_utc",
            &[&client_id, &doc, &now_utc()],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_mqtt_session(&self, client_id: &str) -> Result<()> {
        let c = self.conn().await?;
        c.execute_c(
            "DELETE FROM mqtt_sessions WHERE client_id = $1",
            &[&client_id],
        )
        .await
        .map_err(db)?;
        Ok(())
    }
}

//! Persistent MQTT sessions.

use super::cached::CachedStatements;
use super::{OptionalExtension, Result, SqliteStore, async_trait, now_utc, params};
use crate::SessionStore;

#[async_trait]
impl SessionStore for SqliteStore {
    async fn get_mqtt_session(&self, client_id: &str) -> Result<Option<String>> {
        let id = client_id.to_string();
        self.pool
            .read(move |c| {
                Ok(c.query_row_cached(
                    "SELECT doc FROM mqtt_sessions WHERE client_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?)
            })
            .await
    }

    async fn put_mqtt_session(&self, client_id: &str, doc: &str) -> Result<()> {
        let (id, doc) = (client_id.to_string(), doc.to_string());
        self.pool
            .write(move |c| {
                c.execute_cached(
                    "INSERT INTO mqtt_sessions (client_id, doc, updated_utc) VALUES (?1, ?2, ?3)
                     ON CONFLICT(client_id) DO UPDATE SET doc = excluded.doc, updated_utc = excluded.updated_utc",
                    params![id, doc, now_utc()],
                )?;
                Ok(())
            })
            .await
    }

    async fn delete_mqtt_session(&self, client_id: &str) -> Result<()> {
        let id = client_id.to_string();
        self.pool
            .write(move |c| {
                c.execute_cached(
                    "DELETE FROM mqtt_sessions WHERE client_id = ?1",
                    params![id],
                )?;
                Ok(())
            })
            .await
    }
}

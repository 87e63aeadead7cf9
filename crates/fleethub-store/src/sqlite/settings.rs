//! Server settings.

use super::cached::CachedStatements;
use super::{OptionalExtension, Result, SqliteStore, async_trait, params};
use crate::SettingsStore;

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.pool
            .read(move |c| {
                Ok(c.query_row_cached(
                    "SELECT value FROM settings WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )
                .optional()?)
            })
            .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_string(), value.to_string());
        self.pool
            .write(move |c| {
                c.execute_cached(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                    params![key, value],
                )?;
                Ok(c.query_row_cached(
                    "SELECT value FROM settings WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )?)
            })
            .await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.pool
            .write(move |c| {
                c.execute_cached(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![key, value],
                )?;
                Ok(())
            })
            .await
    }
}

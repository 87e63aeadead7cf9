//! Server settings.

use crate::cached::Cached;
use crate::connect::in_tx;
use crate::{PgStore, Result, db};
use async_trait::async_trait;
use fleethub_storage::SettingsStore;

#[async_trait]
impl SettingsStore for PgStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let c = self.conn().await?;
        let row = c
            .query_opt_c("SELECT value FROM settings WHERE key = $1", &[&key])
            .await
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        // Two nodes initialising at once: the first insert wins, both read it back.
        in_tx!(self, |tx| async {
            tx.execute_c(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )
            .await
            .map_err(db)?;
            let row = tx
                .query_one_c("SELECT value FROM settings WHERE key = $1", &[&key])
                .await
                .map_err(db)?;
            Ok(row.get(0))
        })
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let c = self.conn().await?;
        c.execute_c(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await
        .map_err(db)?;
        Ok(())
    }
}

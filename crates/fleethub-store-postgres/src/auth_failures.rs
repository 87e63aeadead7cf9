//! The recent authentication failures: a bounded window, pruned on every append.

use crate::cached::Cached;
use crate::connect::in_tx;
use crate::docs::{decode, encode};
use crate::{PgStore, Result, db};
use async_trait::async_trait;
use fleethub_storage::{AuthFailureRecord, AuthFailureStore};

#[async_trait]
impl AuthFailureStore for PgStore {
    async fn append_auth_failure(&self, entry: AuthFailureRecord, keep: usize) -> Result<()> {
        let doc = encode(&entry)?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        in_tx!(self, |tx| async {
            let seq: i64 = tx
                .query_one_c(
                    "INSERT INTO auth_failures (doc) VALUES ($1) RETURNING seq",
                    &[&doc],
                )
                .await
                .map_err(db)?
                .get(0);
            // seq only grows: everything below the newest `keep` goes
            tx.execute_c(
                "DELETE FROM auth_failures WHERE seq <= $1::bigint - $2::bigint",
                &[&seq, &keep],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    async fn recent_auth_failures(&self, limit: usize) -> Result<Vec<AuthFailureRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let c = self.conn().await?;
        let rows = c
            .query_c(
                "SELECT seq, doc FROM auth_failures ORDER BY seq DESC LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| decode("auth failure", &r.get::<_, i64>(0).to_string(), r.get(1)))
            .collect()
    }
}

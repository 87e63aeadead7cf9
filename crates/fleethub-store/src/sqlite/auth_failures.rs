//! The recent authentication failures: a bounded window, pruned on every append.

use super::cached::CachedStatements;
use super::{Result, SqliteStore, async_trait, decode, encode, params};
use crate::{AuthFailureRecord, AuthFailureStore};

#[async_trait]
impl AuthFailureStore for SqliteStore {
    async fn append_auth_failure(&self, entry: AuthFailureRecord, keep: usize) -> Result<()> {
        let doc = encode(&entry)?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.pool
            .write(move |c| {
                c.execute_cached("INSERT INTO auth_failures (doc) VALUES (?1)", params![doc])?;
                // seq only grows (AUTOINCREMENT): everything below the newest `keep` goes
                c.execute_cached(
                    "DELETE FROM auth_failures WHERE seq <= (SELECT MAX(seq) FROM auth_failures) - ?1",
                    params![keep],
                )?;
                Ok(())
            })
            .await
    }

    async fn recent_auth_failures(&self, limit: usize) -> Result<Vec<AuthFailureRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool
            .read(move |c| {
                let mut stmt =
                    c.prepare("SELECT seq, doc FROM auth_failures ORDER BY seq DESC LIMIT ?1")?;
                let rows = stmt.query_map(params![limit], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (seq, doc) = row?;
                    out.push(decode("auth failure", &seq.to_string(), &doc)?);
                }
                Ok(out)
            })
            .await
    }
}

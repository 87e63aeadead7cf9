//! Cloud-to-device queues and their HTTPS receive locks (columns `lock_token`,
//! `lock_until_ms`; each lock change is one statement on the writer).

use super::cached::CachedStatements;
use super::{
    C2dMessage, OptionalExtension, Result, SqliteStore, StoreError, async_trait, decode, encode,
    params,
};
use crate::{C2dLock, C2dLockRelease, C2dStore};

#[async_trait]
impl C2dStore for SqliteStore {
    async fn enqueue_c2d(&self, mut msg: C2dMessage, max_queued: usize) -> Result<C2dMessage> {
        self.pool
            .write(move |c| {
                let n: i64 = c.query_row_cached(
                    "SELECT COUNT(*) FROM c2d WHERE device_id = ?1",
                    params![msg.device_id],
                    |r| r.get(0),
                )?;
                if n as usize >= max_queued {
                    return Err(StoreError::QueueFull {
                        device_id: msg.device_id,
                        max: max_queued,
                    });
                }
                c.execute_cached(
                    "INSERT INTO c2d (device_id, doc) VALUES (?1, ?2)",
                    params![msg.device_id, encode(&msg)?],
                )?;
                msg.sequence_number = c.last_insert_rowid() as u64;
                Ok(msg)
            })
            .await
    }

    async fn list_c2d(&self, device_id: &str, limit: usize) -> Result<Vec<C2dMessage>> {
        let id = device_id.to_string();
        self.pool
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, doc FROM c2d WHERE device_id = ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![id, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (seq, doc) = row?;
                    let mut m: C2dMessage = decode("c2d message", &seq.to_string(), &doc)?;
                    m.sequence_number = seq as u64;
                    out.push(m);
                }
                Ok(out)
            })
            .await
    }

    async fn update_c2d(&self, msg: C2dMessage) -> Result<()> {
        self.pool
            .write(move |c| {
                let n = c.execute_cached(
                    "UPDATE c2d SET doc = ?2 WHERE seq = ?1",
                    params![msg.sequence_number as i64, encode(&msg)?],
                )?;
                if n == 0 {
                    return Err(StoreError::NotFound {
                        kind: "c2d message",
                        id: msg.sequence_number.to_string(),
                    });
                }
                Ok(())
            })
            .await
    }

    async fn delete_c2d(&self, sequence_number: u64) -> Result<()> {
        self.pool
            .write(move |c| {
                c.execute_cached(
                    "DELETE FROM c2d WHERE seq = ?1",
                    params![sequence_number as i64],
                )?;
                Ok(())
            })
            .await
    }

    async fn purge_c2d(&self, device_id: &str) -> Result<u64> {
        let id = device_id.to_string();
        self.pool
            .write(move |c| {
                Ok(c.execute_cached("DELETE FROM c2d WHERE device_id = ?1", params![id])? as u64)
            })
            .await
    }

    async fn lock_c2d(&self, msg: C2dMessage, lock: C2dLock) -> Result<bool> {
        self.pool
            .write(move |c| {
                let seq = msg.sequence_number as i64;
                let n = c.execute_cached(
                    "UPDATE c2d SET doc = ?3, lock_token = ?4, lock_until_ms = ?5
                     WHERE seq = ?1 AND device_id = ?2
                       AND (lock_until_ms IS NULL OR lock_until_ms <= ?6)",
                    params![
                        seq,
                        msg.device_id,
                        encode(&msg)?,
                        lock.token,
                        lock.until_ms,
                        lock.now_ms
                    ],
                )?;
                if n > 0 {
                    return Ok(true);
                }
                let exists = c
                    .query_row_cached(
                        "SELECT 1 FROM c2d WHERE seq = ?1 AND device_id = ?2",
                        params![seq, msg.device_id],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                if exists {
                    Ok(false)
                } else {
                    Err(StoreError::NotFound {
                        kind: "c2d message",
                        id: msg.sequence_number.to_string(),
                    })
                }
            })
            .await
    }

    async fn locked_c2d(&self, device_id: &str, now_ms: i64) -> Result<Vec<u64>> {
        let id = device_id.to_string();
        self.pool
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq FROM c2d WHERE device_id = ?1 AND lock_until_ms > ?2 ORDER BY seq",
                )?;
                let rows = stmt.query_map(params![id, now_ms], |r| r.get::<_, i64>(0))?;
                let mut out = Vec::new();
                for seq in rows {
                    out.push(seq? as u64);
                }
                Ok(out)
            })
            .await
    }

    async fn settle_c2d_lock(
        &self,
        device_id: &str,
        token: &str,
        now_ms: i64,
        how: C2dLockRelease,
    ) -> Result<Option<u64>> {
        let (id, token) = (device_id.to_string(), token.to_string());
        let sql = match how {
            C2dLockRelease::Remove => {
                "DELETE FROM c2d WHERE device_id = ?1 AND lock_token = ?2 AND lock_until_ms > ?3
                 RETURNING seq"
            }
            C2dLockRelease::Unlock => {
                "UPDATE c2d SET lock_token = NULL, lock_until_ms = NULL
                 WHERE device_id = ?1 AND lock_token = ?2 AND lock_until_ms > ?3 RETURNING seq"
            }
        };
        self.pool
            .write(move |c| {
                let seq = c
                    .query_row_cached(sql, params![id, token, now_ms], |r| r.get::<_, i64>(0))
                    .optional()?;
                Ok(seq.map(|s| s as u64))
            })
            .await
    }
}

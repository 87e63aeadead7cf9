//! Cloud-to-device queues. An enqueue takes a per-device advisory lock for its transaction, so
//! the queue bound holds when several nodes enqueue for one device at once. HTTPS receive locks
//! (columns `lock_token`, `lock_until_ms`) change in single conditional statements: of two nodes
//! locking or settling one message at once, the row lock lets one win and the other's condition
//! is checked again on the row it left.

use crate::cached::Cached;
use crate::connect::in_tx;
use crate::docs::{decode, encode};
use crate::{PgStore, Result, db};
use async_trait::async_trait;
use fleethub_storage::{C2dLock, C2dLockRelease, C2dMessage, C2dStore, StoreError};

#[async_trait]
impl C2dStore for PgStore {
    async fn enqueue_c2d(&self, mut msg: C2dMessage, max_queued: usize) -> Result<C2dMessage> {
        let doc = encode(&msg)?;
        in_tx!(self, |tx| async {
            tx.execute_c(
                "SELECT pg_advisory_xact_lock(hashtextextended('c2d:' || $1, 0))",
                &[&msg.device_id],
            )
            .await
            .map_err(db)?;
            let n: i64 = tx
                .query_one_c(
                    "SELECT COUNT(*) FROM c2d WHERE device_id = $1",
                    &[&msg.device_id],
                )
                .await
                .map_err(db)?
                .get(0);
            if n as usize >= max_queued {
                return Err(StoreError::QueueFull {
                    device_id: msg.device_id.clone(),
                    max: max_queued,
                });
            }
            let seq: i64 = tx
                .query_one_c(
                    "INSERT INTO c2d (device_id, doc) VALUES ($1, $2) RETURNING seq",
                    &[&msg.device_id, &doc],
                )
                .await
                .map_err(db)?
                .get(0);
            msg.sequence_number = seq as u64;
            Ok(msg)
        })
    }

    async fn list_c2d(&self, device_id: &str, limit: usize) -> Result<Vec<C2dMessage>> {
        let c = self.conn().await?;
        let rows = c
            .query_c(
                "SELECT seq, doc FROM c2d WHERE device_id = $1 ORDER BY seq LIMIT $2",
                &[&device_id, &(limit.min(i64::MAX as usize) as i64)],
            )
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let seq: i64 = r.get(0);
            let mut m: C2dMessage = decode("c2d message", &seq.to_string(), r.get(1))?;
            m.sequence_number = seq as u64;
            out.push(m);
        }
        Ok(out)
    }

    async fn update_c2d(&self, msg: C2dMessage) -> Result<()> {
        let doc = encode(&msg)?;
        let c = self.conn().await?;
        let n = c
            .execute_c(
                "UPDATE c2d SET doc = $2 WHERE seq = $1",
                &[&(msg.sequence_number as i64), &doc],
            )
            .await
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::NotFound {
                kind: "c2d message",
                id: msg.sequence_number.to_string(),
            });
        }
        Ok(())
    }

    async fn delete_c2d(&self, sequence_number: u64) -> Result<()> {
        let c = self.conn().await?;
        c.execute_c(
            "DELETE FROM c2d WHERE seq = $1",
            &[&(sequence_number as i64)],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn purge_c2d(&self, device_id: &str) -> Result<u64> {
        let c = self.conn().await?;
        c.execute_c("DELETE FROM c2d WHERE device_id = $1", &[&device_id])
            .await
            .map_err(db)
    }

    async fn lock_c2d(&self, msg: C2dMessage, lock: C2dLock) -> Result<bool> {
        let doc = encode(&msg)?;
        let seq = msg.sequence_number as i64;
        let c = self.conn().await?;
        let n = c
            .execute_c(
                "UPDATE c2d SET doc = $3, lock_token = $4, lock_until_ms = $5
                 WHERE seq = $1 AND device_id = $2
                   AND (lock_until_ms IS NULL OR lock_until_ms <= $6)",
                &[
                    &seq,
                    &msg.device_id,
                    &doc,
                    &lock.token,
                    &lock.until_ms,
                    &lock.now_ms,
                ],
            )
            .await
            .map_err(db)?;
        if n > 0 {
            return Ok(true);
        }
        let exists = c
            .query_opt_c(
                "SELECT 1 FROM c2d WHERE seq = $1 AND device_id = $2",
                &[&seq, &msg.device_id],
            )
            .await
            .map_err(db)?
            .is_some();
        if exists {
            Ok(false)
        } else {
            Err(StoreError::NotFound {
                kind: "c2d message",
                id: msg.sequence_number.to_string(),
            })
        }
    }

    async fn locked_c2d(&self, device_id: &str, now_ms: i64) -> Result<Vec<u64>> {
        let c = self.conn().await?;
        let rows = c
            .query_c(
                "SELECT seq FROM c2d WHERE device_id = $1 AND lock_until_ms > $2 ORDER BY seq",
                &[&device_id, &now_ms],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    async fn settle_c2d_lock(
        &self,
        device_id: &str,
        token: &str,
        now_ms: i64,
        how: C2dLockRelease,
    ) -> Result<Option<u64>> {
        let sql = match how {
            C2dLockRelease::Remove => {
                "DELETE FROM c2d WHERE device_id = $1 AND lock_token = $2 AND lock_until_ms > $3
                 RETURNING seq"
            }
            C2dLockRelease::Unlock => {
                "UPDATE c2d SET lock_token = NULL, lock_until_ms = NULL
                 WHERE device_id = $1 AND lock_token = $2 AND lock_until_ms > $3 RETURNING seq"
            }
        };
        let c = self.conn().await?;
        let row = c
            .query_opt_c(sql, &[&device_id, &token, &now_ms])
            .await
            .map_err(db)?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }
}

//! C2D feedback: the messages' requests (by queue sequence number) and the bounded queue of
//! feedback records (oldest = lowest id).

use super::{Result, SqliteStore, async_trait, decode, encode, params};
use crate::{C2dFeedbackRecord, C2dFeedbackRequest, C2dFeedbackStore, StoredC2dFeedback};

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl C2dFeedbackStore for SqliteStore {
    async fn put_feedback_request(&self, request: C2dFeedbackRequest) -> Result<()> {
        let doc = encode(&request)?;
        let seq = as_i64(request.sequence_number);
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO c2d_feedback_requests (seq, doc) VALUES (?1, ?2)
                     ON CONFLICT(seq) DO UPDATE SET doc = excluded.doc",
                    params![seq, doc],
                )?;
                Ok(())
            })
            .await
    }

    async fn list_feedback_requests(&self) -> Result<Vec<C2dFeedbackRequest>> {
        self.pool
            .read(|c| {
                let mut stmt =
                    c.prepare("SELECT seq, doc FROM c2d_feedback_requests ORDER BY seq")?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
                let mut out = Vec::new();
                for row in rows {
                    let (seq, doc) = row?;
                    out.push(decode("C2D feedback request", &seq.to_string(), &doc)?);
                }
                Ok(out)
            })
            .await
    }

    async fn take_feedback_requests(
        &self,
        sequence_numbers: Vec<u64>,
    ) -> Result<Vec<C2dFeedbackRequest>> {
        if sequence_numbers.is_empty() {
            return Ok(Vec::new());
        }
        self.pool
            .write(move |c| {
                let mut stmt = c.prepare_cached(
                    "DELETE FROM c2d_feedback_requests WHERE seq = ?1 RETURNING doc",
                )?;
                let mut out = Vec::new();
                for seq in sequence_numbers {
                    let mut rows = stmt.query(params![as_i64(seq)])?;
                    if let Some(row) = rows.next()? {
                        let doc: String = row.get(0)?;
                        out.push(decode("C2D feedback request", &seq.to_string(), &doc)?);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn append_feedback(&self, record: C2dFeedbackRecord, keep: usize) -> Result<u64> {
        let doc = encode(&record)?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.pool
            .write(move |c| {
                c.execute("INSERT INTO c2d_feedback (doc) VALUES (?1)", params![doc])?;
                let id = c.last_insert_rowid();
                // ids only grow (AUTOINCREMENT): everything below the newest `keep` goes
                c.execute(
                    "DELETE FROM c2d_feedback WHERE id <= ?1 - ?2",
                    params![id, keep],
                )?;
                Ok(u64::try_from(id).unwrap_or_default())
            })
            .await
    }

    async fn list_feedback(&self, limit: usize) -> Result<Vec<StoredC2dFeedback>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool
            .read(move |c| {
                let mut stmt =
                    c.prepare("SELECT id, doc FROM c2d_feedback ORDER BY id LIMIT ?1")?;
                let rows = stmt.query_map(params![limit], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, doc) = row?;
                    out.push(StoredC2dFeedback {
                        id: u64::try_from(id).unwrap_or_default(),
                        record: decode("C2D feedback record", &id.to_string(), &doc)?,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn delete_feedback(&self, ids: Vec<u64>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.pool
            .write(move |c| {
                let mut stmt = c.prepare_cached("DELETE FROM c2d_feedback WHERE id = ?1")?;
                for id in ids {
                    stmt.execute(params![as_i64(id)])?;
                }
                Ok(())
            })
            .await
    }
}

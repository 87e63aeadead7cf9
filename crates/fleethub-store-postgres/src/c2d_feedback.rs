//! C2D feedback: the messages' requests (by queue sequence number) and the bounded queue of
//! feedback records (oldest = lowest id).

use crate::cached::Cached;
use crate::connect::in_tx;
use crate::docs::{decode, encode};
use crate::{PgStore, Result, db};
use async_trait::async_trait;
use fleethub_storage::{
    C2dFeedbackRecord, C2dFeedbackRequest, C2dFeedbackStore, StoredC2dFeedback,
};

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl C2dFeedbackStore for PgStore {
    async fn put_feedback_request(&self, request: C2dFeedbackRequest) -> Result<()> {
        let doc = encode(&request)?;
        let seq = as_i64(request.sequence_number);
        let c = self.conn().await?;
        c.execute_c(
            "INSERT INTO c2d_feedback_requests (seq, doc) VALUES ($1, $2)
             ON CONFLICT (seq) DO UPDATE SET doc = EXCLUDED.doc",
            &[&seq, &doc],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn list_feedback_requests(&self) -> Result<Vec<C2dFeedbackRequest>> {
        let c = self.conn().await?;
        let rows = c
            .query_c(
                "SELECT seq, doc FROM c2d_feedback_requests ORDER BY seq",
                &[],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                decode(
                    "C2D feedback request",
                    &r.get::<_, i64>(0).to_string(),
                    r.get(1),
                )
            })
            .collect()
    }

    async fn take_feedback_requests(
        &self,
        sequence_numbers: Vec<u64>,
    ) -> Result<Vec<C2dFeedbackRequest>> {
        if sequence_numbers.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<i64> = sequence_numbers.into_iter().map(as_i64).collect();
        let c = self.conn().await?;
        let rows = c
            .query_c(
                "DELETE FROM c2d_feedback_requests WHERE seq = ANY($1) RETURNING seq, doc",
                &[&seqs],
            )
            .await
            .map_err(db)?;
        let mut out = rows
            .iter()
            .map(|r| {
                decode::<C2dFeedbackRequest>(
                    "C2D feedback request",
                    &r.get::<_, i64>(0).to_string(),
                    r.get(1),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|r| r.sequence_number);
        Ok(out)
    }

    async fn append_feedback(&self, record: C2dFeedbackRecord, keep: usize) -> Result<u64> {
        let doc = encode(&record)?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        in_tx!(self, |tx| async {
            let id: i64 = tx
                .query_one_c(
                    "INSERT INTO c2d_feedback (doc) VALUES ($1) RETURNING id",
                    &[&doc],
                )
                .await
                .map_err(db)?
                .get(0);
            // ids only grow: everything below the newest `keep` goes
            tx.execute_c(
                "DELETE FROM c2d_feedback WHERE id <= $1::bigint - $2::bigint",
                &[&id, &keep],
            )
            .await
            .map_err(db)?;
            Ok(u64::try_from(id).unwrap_or_default())
        })
    }

    async fn list_feedback(&self, limit: usize) -> Result<Vec<StoredC2dFeedback>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let c = self.conn().await?;
        let rows = c
            .query_c(
                "SELECT id, doc FROM c2d_feedback ORDER BY id LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.get(0);
                Ok(StoredC2dFeedback {
                    id: u64::try_from(id).unwrap_or_default(),
                    record: decode("C2D feedback record", &id.to_string(), r.get(1))?,
                })
            })
            .collect()
    }

    async fn delete_feedback(&self, ids: Vec<u64>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = ids.into_iter().map(as_i64).collect();
        let c = self.conn().await?;
        c.execute_c("DELETE FROM c2d_feedback WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(db)?;
        Ok(())
    }
}

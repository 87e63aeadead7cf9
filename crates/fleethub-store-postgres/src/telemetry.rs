//! The built-in telemetry endpoint: an append-only log, partitioned by device id, with
//! consumer groups and their checkpoints. Appends go through `telemetry_writer` (group
//! commit), the partition bookkeeping is in `partitions`, the groups in `consumer_groups`.

use crate::cached::Cached;
use crate::connect::in_tx;
use crate::docs::decode;
use crate::{PgStore, Result, consumer_groups, db, partitions};
use async_trait::async_trait;
use fleethub_api::time::now_utc;
use fleethub_storage::{
    ConsumerGroupRecord, PartitionSummary, SenderAuth, StoreError, TelemetryMessage,
    TelemetryStore, fill_sender_properties,
};
use std::sync::atomic::Ordering;
use tokio_postgres::Row;

/// Most rows one read returns.
const MAX_ROWS: usize = 10_000;

/// The columns `row_to_message` reads, in order.
pub(crate) const COLUMNS: &str = "seq, device_id, module_id, enqueued_utc, system_properties, \
     properties, body, partition_id, partition_seq, sender";

/// A stored row as a message, the sender's connection properties (kept as a number since
/// migration 5) back in its system properties.
pub(crate) fn row_to_message(r: &Row) -> Result<TelemetryMessage> {
    let seq: i64 = r.get(0);
    let id = seq.to_string();
    let sender = SenderAuth::from_column(seq, r.get::<_, Option<i16>>(9))?;
    let mut m = TelemetryMessage {
        sequence_number: seq as u64,
        partition: r.get::<_, i32>(7) as u32,
        partition_sequence_number: r.get(8),
        device_id: r.get(1),
        module_id: r.get(2),
        enqueued_time_utc: r.get(3),
        system_properties: decode("telemetry", &id, r.get(4))?,
        properties: decode("telemetry", &id, r.get(5))?,
        body: r.get(6),
        sender,
    };
    fill_sender_properties(&mut m);
    Ok(m)
}

#[async_trait]
impl TelemetryStore for PgStore {
    async fn append_telemetry(
        &self,
        messages: Vec<TelemetryMessage>,
    ) -> Result<Vec<TelemetryMessage>> {
        self.telemetry.append(messages).await
    }

    async fn init_partitions(&self, requested: u32) -> Result<u32> {
        let count = in_tx!(self, |tx| partitions::ensure(&tx, requested))?;
        self.partition_count.store(count, Ordering::Relaxed);
        Ok(count)
    }

    async fn read_partition(
        &self,
        partition: u32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<TelemetryMessage>> {
        let c = self.conn().await?;
        partitions::read(&c, partition, from, limit.min(MAX_ROWS)).await
    }

    async fn partition_summary(&self, partition: u32) -> Result<PartitionSummary> {
        let c = self.conn().await?;
        partitions::summary(&c, partition).await
    }

    async fn partition_seq_at_offset(&self, partition: u32, min_offset: u64) -> Result<i64> {
        let c = self.conn().await?;
        partitions::first_seq_where(&c, partition, "seq", min_offset as i64).await
    }

    async fn partition_seq_at_time(&self, partition: u32, min_utc_ms: i64) -> Result<i64> {
        let c = self.conn().await?;
        partitions::first_seq_where(&c, partition, "enqueued_ms", min_utc_ms).await
    }

    async fn read_telemetry(&self, after: u64, limit: usize) -> Result<Vec<TelemetryMessage>> {
        let c = self.conn().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM telemetry WHERE seq > $1 ORDER BY seq LIMIT $2"
            ))
            .await
            .map_err(db)?;
        let rows = c
            .query(&stmt, &[&(after as i64), &(limit.min(MAX_ROWS) as i64)])
            .await
            .map_err(db)?;
        rows.iter().map(row_to_message).collect()
    }

    async fn prune_telemetry(&self, before_utc: &str) -> Result<u64> {
        let before = fleethub_api::time::parse_utc_ms(before_utc).ok_or_else(|| {
            StoreError::InvalidArgument(format!("'{before_utc}' is not a UTC time"))
        })?;
        // Partition by partition, along the (partition_id, enqueued_ms) index.
        let c = self.conn().await?;
        let n = c
            .execute_c(
                "DELETE FROM telemetry t USING telemetry_partitions p
                 WHERE t.partition_id = p.partition_id AND t.enqueued_ms < $1",
                &[&before],
            )
            .await
            .map_err(db)?;
        Ok(n)
    }

    async fn get_checkpoint(&self, group: &str) -> Result<u64> {
        let c = self.conn().await?;
        let row = c
            .query_opt_c(
                "SELECT offset_seq FROM consumer_groups WHERE name = $1",
                &[&group],
            )
            .await
            .map_err(db)?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0)) as u64)
    }

    async fn set_checkpoint(&self, group: &str, sequence_number: u64) -> Result<()> {
        let c = self.conn().await?;
        c.execute_c(
            "INSERT INTO consumer_groups (name, offset_seq, updated_utc) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET offset_seq = excluded.offset_seq, updated_utc = excluded.updated_utc",
            &[&group, &(sequence_number as i64), &now_utc()],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn list_consumer_groups(&self) -> Result<Vec<ConsumerGroupRecord>> {
        let c = self.conn().await?;
        consumer_groups::list(&c).await
    }

    async fn get_consumer_group(&self, name: &str) -> Result<Option<ConsumerGroupRecord>> {
        let c = self.conn().await?;
        consumer_groups::get(&c, name).await
    }

    async fn create_consumer_group(
        &self,
        group: ConsumerGroupRecord,
        max: usize,
    ) -> Result<ConsumerGroupRecord> {
        in_tx!(self, |tx| consumer_groups::create(&tx, group, max))
    }

    async fn delete_consumer_group(&self, name: &str) -> Result<()> {
        in_tx!(self, |tx| consumer_groups::delete(&tx, name))
    }
}

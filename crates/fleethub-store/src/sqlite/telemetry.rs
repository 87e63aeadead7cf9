//! The built-in telemetry endpoint: an append-only log and consumer-group checkpoints.

use super::{
    OptionalExtension, Result, SqliteStore, TelemetryMessage, async_trait, decode, encode, now_utc,
    params,
};
use crate::TelemetryStore;

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn append_telemetry(
        &self,
        messages: Vec<TelemetryMessage>,
    ) -> Result<Vec<TelemetryMessage>> {
        self.pool
            .write(move |c| {
                let mut out = Vec::with_capacity(messages.len());
                let mut stmt = c.prepare_cached(
                    "INSERT INTO telemetry (device_id, module_id, enqueued_utc, system_properties, properties, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for mut m in messages {
                    stmt.execute(params![
                        m.device_id,
                        m.module_id,
                        m.enqueued_time_utc,
                        encode(&m.system_properties)?,
                        encode(&m.properties)?,
                        m.body,
                    ])?;
                    m.sequence_number = c.last_insert_rowid() as u64;
                    out.push(m);
                }
                Ok(out)
            })
            .await
    }

    async fn read_telemetry(&self, after: u64, limit: usize) -> Result<Vec<TelemetryMessage>> {
        self.pool
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, device_id, module_id, enqueued_utc, system_properties, properties, body
                     FROM telemetry WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after as i64, limit.min(10_000) as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Vec<u8>>(6)?,
                    ))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (seq, device_id, module_id, enq, sys, props, body) = row?;
                    out.push(TelemetryMessage {
                        sequence_number: seq as u64,
                        system_properties: decode("telemetry", &seq.to_string(), &sys)?,
                        properties: decode("telemetry", &seq.to_string(), &props)?,
                        device_id,
                        module_id,
                        enqueued_time_utc: enq,
                        body,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn prune_telemetry(&self, before_utc: &str) -> Result<u64> {
        let before = before_utc.to_string();
        self.pool
            .write(move |c| {
                Ok(c.execute(
                    "DELETE FROM telemetry WHERE enqueued_utc < ?1",
                    params![before],
                )? as u64)
            })
            .await
    }

    async fn get_checkpoint(&self, group: &str) -> Result<u64> {
        let g = group.to_string();
        self.pool
            .read(move |c| {
                let v: Option<i64> = c
                    .query_row(
                        "SELECT offset_seq FROM consumer_groups WHERE name = ?1",
                        params![g],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(v.unwrap_or(0) as u64)
            })
            .await
    }

    async fn set_checkpoint(&self, group: &str, sequence_number: u64) -> Result<()> {
        let g = group.to_string();
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO consumer_groups (name, offset_seq, updated_utc) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET offset_seq = excluded.offset_seq, updated_utc = excluded.updated_utc",
                    params![g, sequence_number as i64, now_utc()],
                )?;
                Ok(())
            })
            .await
    }
}

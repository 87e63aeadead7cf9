//! Device-to-cloud telemetry into the built-in endpoint (durable before acknowledged).

use super::{Hub, HubPrincipal};
use crate::hub::Error;
use fleethub_storage::{TelemetryMessage, fill_sender_properties};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Azure's device-to-cloud message size limit.
pub const MAX_TELEMETRY_BYTES: usize = 256 * 1024;

/// A message as a transport received it.
#[derive(Debug, Clone, Default)]
pub struct TelemetryIn {
    pub system_properties: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Hub {
    /// Stores a message; returns once it is durable.
    pub async fn send_telemetry(&self, p: &HubPrincipal, msg: TelemetryIn) -> Result<u64, Error> {
        let seqs = self.send_telemetry_batch(p, vec![msg]).await?;
        Ok(seqs.first().copied().unwrap_or(0))
    }

    /// Stores messages of one identity in order, in one store write; returns their sequence
    /// numbers once all are durable. Nothing is stored when one of them is too large.
    pub async fn send_telemetry_batch(
        &self,
        p: &HubPrincipal,
        msgs: Vec<TelemetryIn>,
    ) -> Result<Vec<u64>, Error> {
        if let Some(big) = msgs.iter().find(|m| m.body.len() > MAX_TELEMETRY_BYTES) {
            return Err(Error::TooLarge(format!(
                "message body is {} bytes; the limit is {MAX_TELEMETRY_BYTES}",
                big.body.len()
            )));
        }
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let enqueued = self.clock.now_utc();
        // The sender's connection properties travel in compact form: the store keeps them as a
        // number and every read spells them out (`fleethub_storage::SenderAuth`).
        let sender = Some(super::event_hub::sender_auth(p));
        let batch = msgs
            .into_iter()
            .map(|msg| TelemetryMessage {
                sequence_number: 0,
                partition: 0,
                partition_sequence_number: 0,
                device_id: p.device_id.clone(),
                module_id: p.module_id.clone(),
                enqueued_time_utc: enqueued.clone(),
                system_properties: msg.system_properties,
                properties: msg.properties,
                body: msg.body,
                sender,
            })
            .collect();
        self.before_append().await?;
        let stored = self.store.append_telemetry(batch).await?;
        self.after_append(&stored);
        self.touch(&p.device_id, p.module_id.as_deref());
        let m = &self.metrics;
        m.telemetry_messages
            .fetch_add(stored.len() as u64, std::sync::atomic::Ordering::Relaxed);
        m.telemetry_bytes.fetch_add(
            stored.iter().map(|s| s.body.len() as u64).sum(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let seqs = stored.iter().map(|m| m.sequence_number).collect();
        // The live feed has readers only while someone watches it (monitor-events, the
        // dashboard's live view).
        if self.telemetry_tx.receiver_count() > 0 {
            for mut m in stored {
                fill_sender_properties(&mut m);
                let _ = self.telemetry_tx.send(Arc::new(m));
            }
        }
        Ok(seqs)
    }
}

/// Most messages returned by one read.
pub const MAX_READ: usize = 1000;

/// A page of the built-in endpoint.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsPage {
    pub messages: Vec<TelemetryMessage>,
    /// Pass as `from` to continue after this page.
    pub next: u64,
}

impl Hub {
    /// Reads the built-in endpoint after sequence number `after` (or, when `None`, after the
    /// consumer group's checkpoint).
    pub async fn read_events(
        &self,
        group: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<EventsPage, Error> {
        validate_group(group)?;
        let after = match after {
            Some(a) => a,
            None => self.store.get_checkpoint(group).await?,
        };
        let messages = self
            .store
            .read_telemetry(after, limit.clamp(1, MAX_READ))
            .await?;
        let next = messages.last().map_or(after, |m| m.sequence_number);
        Ok(EventsPage { messages, next })
    }

    /// Records that `group` has processed everything up to `sequence_number`.
    pub async fn checkpoint(&self, group: &str, sequence_number: u64) -> Result<(), Error> {
        validate_group(group)?;
        Ok(self.store.set_checkpoint(group, sequence_number).await?)
    }

    /// Deletes telemetry older than `retention`.
    pub async fn apply_retention(&self, retention: std::time::Duration) -> Result<u64, Error> {
        let cutoff = self.clock.now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(1));
        Ok(self
            .store
            .prune_telemetry(&fleethub_api::time::format_utc(cutoff))
            .await?)
    }
}

fn validate_group(g: &str) -> Result<(), Error> {
    if g.is_empty()
        || g.len() > 50
        || !g
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.$".contains(c))
    {
        return Err(Error::invalid(format!(
            "consumer group '{g}' is invalid: 1-50 characters of letters, digits, '-', '_', '.', '$'"
        )));
    }
    Ok(())
}

//! Cloud-to-device messages: a durable per-device queue with TTL; delivered over MQTT when
//! the device subscribes to `devices/{id}/messages/devicebound/#`, completed by its PUBACK.

use super::{Hub, HubEvent};
use crate::{DpsError, unix_now};
use fleethub_store::C2dMessage;
use std::collections::BTreeMap;

/// Azure's per-device queue depth.
pub const MAX_QUEUED: usize = 50;
/// Default and maximum time to live, seconds (Azure: 1 h default, 48 h max).
pub const DEFAULT_TTL_SECS: u64 = 3600;
pub const MAX_TTL_SECS: u64 = 48 * 3600;
/// Largest C2D body (Azure: 64 KB).
pub const MAX_C2D_BYTES: usize = 64 * 1024;

/// What a sender supplies.
#[derive(Debug, Clone, Default)]
pub struct C2dSend {
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub ttl_secs: Option<u64>,
    pub ack: Option<String>,
    pub properties: BTreeMap<String, String>,
}

impl Hub {
    /// Queues a message for a device and wakes its connection.
    pub async fn send_c2d(&self, device_id: &str, m: C2dSend) -> Result<C2dMessage, DpsError> {
        if self.store.get_device(device_id).await?.is_none() {
            return Err(DpsError::NotFound(format!("device '{device_id}' not found")));
        }
        if m.body.len() > MAX_C2D_BYTES {
            return Err(DpsError::PayloadTooLarge(format!(
                "message body is {} bytes; cloud-to-device messages are limited to {MAX_C2D_BYTES}",
                m.body.len()
            )));
        }
        if let Some(a) = &m.ack
            && !["none", "positive", "negative", "full"].contains(&a.as_str())
        {
            return Err(DpsError::bad_request(format!("ack '{a}' is invalid; use none, positive, negative or full")));
        }
        let ttl = m.ttl_secs.unwrap_or(DEFAULT_TTL_SECS).clamp(1, MAX_TTL_SECS);
        let msg = C2dMessage {
            sequence_number: 0,
            device_id: device_id.to_string(),
            message_id: m.message_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            correlation_id: m.correlation_id,
            content_type: m.content_type,
            content_encoding: m.content_encoding,
            expiry_unix: unix_now() + ttl,
            enqueued_time_utc: fleethub_api::time::now_utc(),
            delivery_count: 0,
            ack: m.ack,
            properties: m.properties,
            body: m.body,
        };
        let stored = self.store.enqueue_c2d(msg, MAX_QUEUED).await?;
        self.notify(device_id, None, HubEvent::C2dAvailable);
        Ok(stored)
    }

    /// The device's deliverable messages, oldest first; expired ones are dropped.
    pub async fn pending_c2d(&self, device_id: &str) -> Result<Vec<C2dMessage>, DpsError> {
        let now = unix_now();
        let mut out = Vec::new();
        for m in self.store.list_c2d(device_id, MAX_QUEUED).await? {
            if m.expiry_unix < now {
                tracing::info!(device = device_id, message_id = %m.message_id, "cloud-to-device message expired undelivered");
                self.store.delete_c2d(m.sequence_number).await?;
            } else {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Counts a delivery attempt.
    pub async fn mark_c2d_delivered(&self, m: &C2dMessage) -> Result<(), DpsError> {
        let mut m = m.clone();
        m.delivery_count += 1;
        match self.store.update_c2d(m).await {
            Ok(()) | Err(fleethub_store::StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The device acknowledged (MQTT PUBACK / HTTPS complete): remove it.
    pub async fn complete_c2d(&self, sequence_number: u64) -> Result<(), DpsError> {
        Ok(self.store.delete_c2d(sequence_number).await?)
    }

    pub async fn purge_c2d(&self, device_id: &str) -> Result<u64, DpsError> {
        Ok(self.store.purge_c2d(device_id).await?)
    }
}

/// Borrowed view of a message for transports that format it.
pub struct C2dView<'a> {
    pub device_id: &'a str,
    pub message_id: &'a str,
    pub correlation_id: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub expiry_utc: &'a str,
    pub ack: Option<&'a str>,
    pub properties: &'a BTreeMap<String, String>,
}

/// ISO-8601 UTC of a unix time.
pub fn iso_utc(unix: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(unix as i64, 0)
        .map(fleethub_api::time::format_utc)
        .unwrap_or_default()
}

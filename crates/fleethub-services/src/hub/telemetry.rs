//! Device-to-cloud telemetry into the built-in endpoint (durable before acknowledged).

use super::{Hub, HubPrincipal};
use crate::DpsError;
use fleethub_store::TelemetryMessage;
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
    pub async fn send_telemetry(&self, p: &HubPrincipal, msg: TelemetryIn) -> Result<u64, DpsError> {
        if msg.body.len() > MAX_TELEMETRY_BYTES {
            return Err(DpsError::PayloadTooLarge(format!(
                "message body is {} bytes; the limit is {MAX_TELEMETRY_BYTES}",
                msg.body.len()
            )));
        }
        let mut system = msg.system_properties;
        system.insert("iothub-connection-device-id".into(), p.device_id.clone());
        if let Some(m) = &p.module_id {
            system.insert("iothub-connection-module-id".into(), m.clone());
        }
        system.insert("iothub-message-source".into(), "Telemetry".into());
        let stored = self
            .store
            .append_telemetry(vec![TelemetryMessage {
                sequence_number: 0,
                device_id: p.device_id.clone(),
                module_id: p.module_id.clone(),
                enqueued_time_utc: fleethub_api::time::now_utc(),
                system_properties: system,
                properties: msg.properties,
                body: msg.body,
            }])
            .await?;
        let seq = stored.first().map(|m| m.sequence_number).unwrap_or(0);
        for m in stored {
            let _ = self.telemetry_tx.send(Arc::new(m));
        }
        Ok(seq)
    }
}

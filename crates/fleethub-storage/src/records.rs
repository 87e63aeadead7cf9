//! Records the store keeps that are more than one wire document.

use fleethub_api::{Device, DeviceRegistrationState, Module, Twin};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A DPS registration record plus the operation that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    pub state: DeviceRegistrationState,
    pub operation_id: String,
}

/// A device identity with its twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub device: Device,
    pub twin: Twin,
}

/// What a DPS assignment writes, atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub registration: RegistrationRecord,
    /// Device to create or replace (`None` when the device is left as it is).
    pub device: Option<DeviceRecord>,
}

/// A device-to-cloud message as the built-in endpoint keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryMessage {
    /// Position in the log (the Event Hubs offset); assigned by the store (0 before it is
    /// stored).
    #[serde(default)]
    pub sequence_number: u64,
    /// The partition (`partition_of(device_id, partition_count)`); assigned by the store.
    #[serde(default)]
    pub partition: u32,
    /// Position within the partition, from 0 without gaps; assigned by the store (0 before).
    #[serde(default)]
    pub partition_sequence_number: i64,
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    pub enqueued_time_utc: String,
    /// `message-id`, `correlation-id`, `content-type`, `content-encoding`, ...
    #[serde(default)]
    pub system_properties: BTreeMap<String, String>,
    /// Application properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(with = "body_b64")]
    pub body: Vec<u8>,
    /// Set on the way into the store: the sender's connection system properties are implied
    /// (`crate::telemetry_sender`) instead of in `system_properties`. Every message a store
    /// returns from a read has them in `system_properties` and `None` here; the messages an
    /// append returns are those it was given, numbered.
    #[serde(skip)]
    pub sender: Option<crate::SenderAuth>,
}

mod body_b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(b) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.serialize_bytes(b),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Body {
            Text(String),
            Bytes(Vec<u8>),
        }
        Ok(match Body::deserialize(d)? {
            Body::Text(s) => s.into_bytes(),
            Body::Bytes(b) => b,
        })
    }
}

/// A cloud-to-device message waiting in a device's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct C2dMessage {
    /// Queue position; assigned by the store.
    #[serde(default)]
    pub sequence_number: u64,
    pub device_id: String,
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// Unix seconds after which the message is dropped undelivered.
    pub expiry_unix: u64,
    pub enqueued_time_utc: String,
    #[serde(default)]
    pub delivery_count: u32,
    /// `none|positive|negative|full`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(with = "body_b64")]
    pub body: Vec<u8>,
}

/// An HTTPS receive lock on a queued cloud-to-device message ([`crate::C2dStore::lock_c2d`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2dLock {
    /// Names the lock when the message is settled (the HTTP `ETag`).
    pub token: String,
    /// Unix milliseconds now: a lock that ended before is no lock.
    pub now_ms: i64,
    /// Unix milliseconds when the lock ends.
    pub until_ms: i64,
}

/// What settling an HTTPS receive lock does to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum C2dLockRelease {
    /// Completed or rejected: the message is removed.
    Remove,
    /// Abandoned: the lock ends, the message is deliverable again.
    Unlock,
}

/// A module identity with its module twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleRecord {
    pub module: Module,
    pub twin: Twin,
}

/// One refused authentication, as the diagnostics API shows it (secrets already redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthFailureRecord {
    pub time_utc: String,
    /// `dps`, `hub`, `mqtt` (before the user name says which) or a service endpoint.
    pub endpoint: String,
    /// `mqtt`, `mqtt-ws`, `https`.
    pub transport: String,
    /// Registration ID, device ID or policy name the client claimed.
    pub identity: String,
    pub peer: Option<String>,
    pub reason: String,
}

/// Where an identity is connected in a cluster ([`crate::PresenceStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRecord {
    /// The node holding its live connection; `None`: disconnected.
    pub node: Option<String>,
    /// When it last connected or disconnected (unix milliseconds).
    pub state_updated_ms: i64,
    /// When it was last active (unix milliseconds).
    pub last_activity_ms: i64,
}

//! The system properties IoT Hub writes into every device-to-cloud message about its sender's
//! connection (`iothub-connection-device-id`, `iothub-connection-module-id`,
//! `iothub-connection-auth-method`, `iothub-message-source`), in a compact form: all four follow
//! from the message's device and module ids and the scope the sender authenticated with
//! ([`SenderAuth`]). A message carries them this way from the hub to the store
//! ([`crate::TelemetryMessage::sender`]); a store may keep them as a small number instead of
//! JSON text (the auth method is a JSON document with 16 quotes to escape), and every message a
//! store returns has them back in its `system_properties` ([`fill_sender_properties`]).
//! docs/protocol-notes.md, "Telemetry: the sender's system properties, stored compactly".

use crate::{StoreError, TelemetryMessage};
use std::collections::BTreeMap;

/// `iothub-connection-device-id`: the sending device.
pub const DEVICE_ID_PROPERTY: &str = "iothub-connection-device-id";
/// `iothub-connection-module-id`: the sending module (module senders only).
pub const MODULE_ID_PROPERTY: &str = "iothub-connection-module-id";
/// `iothub-connection-auth-method`: how the sender authenticated (JSON text).
pub const AUTH_METHOD_PROPERTY: &str = "iothub-connection-auth-method";
/// `iothub-message-source`: `Telemetry` for device-to-cloud messages.
pub const MESSAGE_SOURCE_PROPERTY: &str = "iothub-message-source";

/// The scope of the SAS token a telemetry sender authenticated with: its own device key, its
/// own module key, or a hub policy with `DeviceConnect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderAuth {
    Device,
    Module,
    Hub,
}

impl SenderAuth {
    /// The value of `iothub-connection-auth-method`, as IoT Hub writes it (every fleethub
    /// identity authenticates with a SAS token, so the type is `sas`, the issuer `iothub`).
    #[must_use]
    pub fn auth_method(self) -> &'static str {
        match self {
            Self::Device => {
                r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
            }
            Self::Module => {
                r#"{"scope":"module","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
            }
            Self::Hub => {
                r#"{"scope":"hub","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
            }
        }
    }

    /// The number a store keeps for it (1, 2, 3; stores keep `NULL` or nothing for a message
    /// whose properties are all in its JSON).
    #[must_use]
    pub fn code(self) -> i16 {
        match self {
            Self::Device => 1,
            Self::Module => 2,
            Self::Hub => 3,
        }
    }

    /// The scope a stored [`SenderAuth::code`] names; `None` for any other number.
    #[must_use]
    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(Self::Device),
            2 => Some(Self::Module),
            3 => Some(Self::Hub),
            _ => None,
        }
    }

    /// The stored column of the telemetry row `seq` read back: `NULL` (all properties in the
    /// row's JSON) is `None`, an unknown number an error.
    pub fn from_column(seq: i64, code: Option<i16>) -> Result<Option<Self>, StoreError> {
        code.map(|c| {
            Self::from_code(c).ok_or_else(|| {
                StoreError::Backend(format!("telemetry {seq}: unknown sender code {c}"))
            })
        })
        .transpose()
    }
}

/// Writes the sender's connection properties into `m.system_properties` (replacing any the
/// device sent under the same names, as IoT Hub does) and clears `m.sender`; a message without
/// a sender is left as it is.
pub fn fill_sender_properties(m: &mut TelemetryMessage) {
    if let Some(auth) = m.sender.take() {
        insert_sender_properties(
            &mut m.system_properties,
            auth,
            &m.device_id,
            m.module_id.as_deref(),
        );
    }
}

/// Writes the connection properties of a sender (`device_id`, `module_id`, authenticated as
/// `auth`) into `sys`, replacing any under the same names.
pub fn insert_sender_properties(
    sys: &mut BTreeMap<String, String>,
    auth: SenderAuth,
    device_id: &str,
    module_id: Option<&str>,
) {
    sys.insert(DEVICE_ID_PROPERTY.to_string(), device_id.to_string());
    if let Some(module) = module_id {
        sys.insert(MODULE_ID_PROPERTY.to_string(), module.to_string());
    }
    sys.insert(MESSAGE_SOURCE_PROPERTY.to_string(), "Telemetry".to_string());
    sys.insert(
        AUTH_METHOD_PROPERTY.to_string(),
        auth.auth_method().to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(module: Option<&str>, sender: Option<SenderAuth>) -> TelemetryMessage {
        TelemetryMessage {
            sequence_number: 0,
            partition: 0,
            partition_sequence_number: 0,
            device_id: "dev".into(),
            module_id: module.map(String::from),
            enqueued_time_utc: "2026-12-05T00:00:00Z".into(),
            system_properties: BTreeMap::from([
                ("message-id".to_string(), "m1".to_string()),
                (DEVICE_ID_PROPERTY.to_string(), "spoofed".to_string()),
            ]),
            properties: BTreeMap::new(),
            body: b"{}".to_vec(),
            sender,
        }
    }

    #[test]
    fn codes_name_their_scope_and_nothing_else() {
        for auth in [SenderAuth::Device, SenderAuth::Module, SenderAuth::Hub] {
            assert_eq!(SenderAuth::from_code(auth.code()), Some(auth));
            let v: serde_json::Value = serde_json::from_str(auth.auth_method()).unwrap();
            assert_eq!(v["type"], "sas");
            assert_eq!(v["issuer"], "iothub");
            assert!(v["acceptingIpFilterRule"].is_null());
        }
        assert_eq!(SenderAuth::from_code(0), None);
        assert_eq!(SenderAuth::from_code(4), None);
    }

    #[test]
    fn filling_writes_the_four_properties_over_the_devices_own() {
        let mut m = message(Some("mod"), Some(SenderAuth::Module));
        fill_sender_properties(&mut m);
        assert_eq!(m.sender, None);
        let sys: Vec<(&str, &str)> = m
            .system_properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            sys,
            [
                (AUTH_METHOD_PROPERTY, SenderAuth::Module.auth_method()),
                (DEVICE_ID_PROPERTY, "dev"),
                (MODULE_ID_PROPERTY, "mod"),
                (MESSAGE_SOURCE_PROPERTY, "Telemetry"),
                ("message-id", "m1"),
            ]
        );
        let mut device = message(None, Some(SenderAuth::Device));
        fill_sender_properties(&mut device);
        assert!(!device.system_properties.contains_key(MODULE_ID_PROPERTY));
        assert_eq!(
            device.system_properties[AUTH_METHOD_PROPERTY],
            r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
        );
    }

    #[test]
    fn a_message_without_a_sender_is_left_alone() {
        let mut m = message(None, None);
        let before = m.clone();
        fill_sender_properties(&mut m);
        assert_eq!(m, before);
    }
}

//! What nodes tell each other about identities connected to them (serialised by the bus as
//! JSON).

use crate::MethodError;
use crate::hub::AuthKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event for identities connected to another node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum PeerEvent {
    /// A desired-properties patch (with `$version`) for a connected identity.
    DesiredPatch {
        device_id: String,
        module_id: Option<String>,
        patch: Value,
    },
    /// New cloud-to-device messages are queued for a connected device.
    C2dAvailable { device_id: String },
    /// The device was disabled or deleted: close its connections and its modules' (sent to
    /// every node, so that one authenticating it right now closes it too).
    RevokeDevice { device_id: String, reason: String },
    /// The module was deleted.
    RevokeModule {
        device_id: String,
        module_id: String,
        reason: String,
    },
    /// The identity's own keys were regenerated: close connections authenticated with them
    /// (`primary`, `secondary`).
    RevokeKeys {
        device_id: String,
        module_id: Option<String>,
        keys: Vec<String>,
        reason: String,
    },
    /// The identity connected to `node` at `at_ms`: close an older connection here.
    TakeOver {
        device_id: String,
        module_id: Option<String>,
        node: String,
        at_ms: i64,
    },
    /// A configuration was created, updated or deleted: drop the compiled deployments and
    /// re-plan every device.
    ConfigurationsChanged,
    /// Telemetry partitions advanced: `(partition, last sequence number)` (committed before
    /// this is sent; coalesced by the sender).
    PartitionsAdvanced { last: Vec<(u32, i64)> },
    /// New C2D feedback records are in the store.
    FeedbackAvailable,
}

/// A direct method call for an identity connected to another node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerMethod {
    pub device_id: String,
    pub module_id: Option<String>,
    pub name: String,
    pub payload: Value,
    /// Already clamped to the hub's limits.
    pub timeout_secs: u64,
}

/// The remote node's outcome of a [`PeerMethod`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "outcome",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum PeerMethodReply {
    Answer { status: u16, payload: Value },
    NotOnline,
    Timeout,
    BadRequest { message: String },
}

impl PeerMethodReply {
    pub fn from_result(r: Result<(u16, Value), MethodError>) -> PeerMethodReply {
        match r {
            Ok((status, payload)) => PeerMethodReply::Answer { status, payload },
            Err(MethodError::NotOnline(_)) => PeerMethodReply::NotOnline,
            Err(MethodError::Timeout(..)) => PeerMethodReply::Timeout,
            Err(MethodError::BadRequest(message)) => PeerMethodReply::BadRequest { message },
        }
    }

    /// The outcome as the caller's node answers it (`who`: the identity, `timeout_secs`: the
    /// call's timeout).
    pub fn into_result(self, who: String, timeout_secs: u64) -> Result<(u16, Value), MethodError> {
        match self {
            PeerMethodReply::Answer { status, payload } => Ok((status, payload)),
            PeerMethodReply::NotOnline => Err(MethodError::NotOnline(who)),
            PeerMethodReply::Timeout => Err(MethodError::Timeout(who, timeout_secs)),
            PeerMethodReply::BadRequest { message } => Err(MethodError::BadRequest(message)),
        }
    }
}

/// A key as [`PeerEvent::RevokeKeys`] names it (policy keys are never revoked this way).
pub(crate) fn key_name(k: &AuthKey) -> Option<&'static str> {
    match k {
        AuthKey::Primary => Some("primary"),
        AuthKey::Secondary => Some("secondary"),
        AuthKey::Policy(_) => None,
    }
}

pub(crate) fn key_from_name(n: &str) -> Option<AuthKey> {
    match n {
        "primary" => Some(AuthKey::Primary),
        "secondary" => Some(AuthKey::Secondary),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_replies_round_trip_as_json() {
        let ev = PeerEvent::TakeOver {
            device_id: "d1".into(),
            module_id: Some("m".into()),
            node: "n2".into(),
            at_ms: 5,
        };
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind":"takeOver","deviceId":"d1","moduleId":"m","node":"n2","atMs":5})
        );
        assert_eq!(serde_json::from_value::<PeerEvent>(json).unwrap(), ev);
        let ev = PeerEvent::PartitionsAdvanced {
            last: vec![(0, 5), (3, 9)],
        };
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind":"partitionsAdvanced","last":[[0,5],[3,9]]})
        );
        assert_eq!(serde_json::from_value::<PeerEvent>(json).unwrap(), ev);
        for ev in [
            PeerEvent::ConfigurationsChanged,
            PeerEvent::FeedbackAvailable,
        ] {
            let back: PeerEvent =
                serde_json::from_slice(&serde_json::to_vec(&ev).unwrap()).unwrap();
            assert_eq!(back, ev);
        }
        let r = PeerMethodReply::from_result(Err(MethodError::Timeout("d1".into(), 5)));
        let back: PeerMethodReply =
            serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(
            back.into_result("d1".into(), 7),
            Err(MethodError::Timeout("d1".into(), 7))
        );
        for k in [AuthKey::Primary, AuthKey::Secondary] {
            assert_eq!(key_from_name(key_name(&k).unwrap()), Some(k));
        }
    }
}

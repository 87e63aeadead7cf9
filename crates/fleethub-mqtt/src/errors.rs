//! The one place where service errors become MQTT wire values: CONNACK refusals, DPS
//! `$dps/registrations/res/{status}` answers and twin `$iothub/twin/res/{status}` answers.

use fleethub_api::DpsErrorBody;
use fleethub_mqtt_codec::ConnectReturnCode;
use fleethub_services::{dps, hub};

/// How a failed DPS CONNECT authentication is answered: `None` when the connection is
/// accepted anyway so that the error reaches the device on the register topic (a malformed
/// registration ID gets a readable 400 there; a CONNACK could only say "refused").
pub(crate) fn dps_connect_refusal(e: &dps::Error) -> Option<ConnectReturnCode> {
    match e {
        dps::Error::Invalid(_) => None,
        // The store cannot be reached: the device may retry (docs/scale-out.md).
        dps::Error::Unavailable { .. } => Some(ConnectReturnCode::ServerUnavailable),
        _ => Some(ConnectReturnCode::NotAuthorized),
    }
}

/// How a failed hub CONNECT authentication is answered.
pub(crate) fn hub_connect_refusal(e: &hub::Error) -> ConnectReturnCode {
    match e {
        hub::Error::Unavailable { .. } => ConnectReturnCode::ServerUnavailable,
        _ => ConnectReturnCode::NotAuthorized,
    }
}

/// HTTP-style status and Azure's 6-digit code of a DPS error.
pub(crate) fn dps_status(e: &dps::Error) -> (u16, u32) {
    use dps::Error as E;
    match e {
        E::Unauthorized => (401, 401002),
        E::Invalid(_) => (400, 400004),
        E::EnrollmentNotFound { .. }
        | E::GroupNotFound { .. }
        | E::LinkedHubNotFound { .. }
        | E::RegistrationNotFound { .. }
        | E::OperationNotFound { .. } => (404, 404001),
        E::EnrollmentAlreadyExists { .. } | E::GroupAlreadyExists { .. } => (409, 409001),
        E::PreconditionFailed(_) => (412, 412001),
        E::TooLarge(_) => (413, 413001),
        E::Throttled { .. } => (429, 429001),
        E::Internal(_) => (500, 500001),
        E::HubUnavailable { .. } | E::WebhookUnavailable | E::Unavailable { .. } => (503, 503000),
    }
}

/// The `retry-after` (seconds) of a failed DPS request: a throttle's own wait, else `default`
/// for the statuses at which the SDKs retry (429 and above), else none.
pub(crate) fn dps_retry_after(e: &dps::Error, default: u32) -> Option<u32> {
    match e {
        dps::Error::Throttled {
            retry_after_secs, ..
        }
        | dps::Error::Unavailable { retry_after_secs } => {
            Some(u32::try_from(*retry_after_secs).unwrap_or(u32::MAX).max(1))
        }
        _ => (dps_status(e).0 >= 429).then_some(default.max(1)),
    }
}

/// The status and body of a failed DPS request on `$dps/registrations/res/{status}`.
pub(crate) fn dps_response(e: &dps::Error) -> (u16, Vec<u8>) {
    let (status, code) = dps_status(e);
    let body = serde_json::to_vec(&DpsErrorBody::new(code, e.to_string())).unwrap_or_default();
    (status, body)
}

/// HTTP-style status and Azure's 6-digit code of a hub error.
pub(crate) fn hub_status(e: &hub::Error) -> (u16, u32) {
    use hub::Error as E;
    match e {
        E::Unauthorized => (401, 401002),
        E::Invalid(_) | E::PartitionOutOfRange { .. } | E::InvalidConsumerGroupName(_) => {
            (400, 400004)
        }
        E::DeviceNotFound { .. }
        | E::ModuleNotFound { .. }
        | E::ConfigurationNotFound { .. }
        | E::ConsumerGroupNotFound(_) => (404, 404001),
        E::DeviceAlreadyExists { .. }
        | E::ModuleAlreadyExists { .. }
        | E::ConfigurationAlreadyExists { .. }
        | E::ConsumerGroupExists(_)
        | E::TwinConflict { .. } => (409, 409001),
        E::TooManyConsumerGroups { .. } => (403, 403002),
        E::PreconditionFailed(_) | E::LockLost { .. } => (412, 412001),
        E::QueueFull { .. } => (403, 403004),
        E::TooLarge(_) => (413, 413001),
        E::Throttled { .. } => (429, 429001),
        E::Internal(_) => (500, 500001),
        E::Unavailable { .. } => (503, 503000),
    }
}

/// The status and body of a failed twin request on `$iothub/twin/res/{status}`:
/// `{"errorCode": 404001, "message": "..."}`.
pub(crate) fn twin_response(e: &hub::Error) -> (u16, Vec<u8>) {
    let (status, code) = hub_status(e);
    let body = serde_json::json!({"errorCode": code, "message": e.to_string()});
    (status, serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn dps_answers() {
        let e = dps::Error::OperationNotFound {
            operation_id: "op".into(),
            registration_id: "dev".into(),
        };
        let (status, body) = dps_response(&e);
        assert_eq!(status, 404);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errorCode"], 404001);
        assert_eq!(
            v["message"],
            "operation 'op' not found for registration 'dev'"
        );
        assert!(v["trackingId"].is_string() && v["timestampUtc"].is_string());
        assert_eq!(dps_status(&dps::Error::TooLarge("x".into())), (413, 413001));
        assert_eq!(dps_status(&dps::Error::Unauthorized), (401, 401002));
        assert_eq!(
            dps_connect_refusal(&dps::Error::Invalid("bad id".into())),
            None
        );
        assert_eq!(
            dps_connect_refusal(&dps::Error::Unauthorized),
            Some(ConnectReturnCode::NotAuthorized)
        );
    }

    #[test]
    fn twin_answers() {
        let e = hub::Error::ModuleNotFound {
            device: "d".into(),
            module: "m".into(),
        };
        let (status, body) = twin_response(&e);
        assert_eq!(status, 404);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"errorCode":404001,"message":"module 'm' of device 'd' not found"}"#
        );
        let conflict = hub::Error::TwinConflict { target: "d".into() };
        assert_eq!(hub_status(&conflict), (409, 409001));
        assert_eq!(
            hub_status(&hub::Error::Invalid("not JSON".into())),
            (400, 400004)
        );
        assert_eq!(
            hub_status(&hub::Error::TooLarge("big".into())),
            (413, 413001)
        );
        let throttled = hub::Error::Throttled {
            what: "twin reads",
            retry_after_secs: 2,
        };
        assert_eq!(hub_status(&throttled), (429, 429001));
        // The store cannot be reached: 503 on twin topics, a retryable CONNACK refusal.
        let unavailable = hub::Error::Unavailable {
            retry_after_secs: 5,
        };
        assert_eq!(hub_status(&unavailable), (503, 503000));
        assert_eq!(
            hub_connect_refusal(&unavailable),
            ConnectReturnCode::ServerUnavailable
        );
        assert_eq!(
            hub_connect_refusal(&hub::Error::Unauthorized),
            ConnectReturnCode::NotAuthorized
        );
        let dps_unavailable = dps::Error::Unavailable {
            retry_after_secs: 5,
        };
        assert_eq!(dps_status(&dps_unavailable), (503, 503000));
        assert_eq!(dps_retry_after(&dps_unavailable, 1), Some(5));
        assert_eq!(
            dps_connect_refusal(&dps_unavailable),
            Some(ConnectReturnCode::ServerUnavailable)
        );
    }

    #[test]
    fn throttled_dps_requests_carry_their_own_retry_after() {
        let e = dps::Error::Throttled {
            what: "device registrations",
            retry_after_secs: 7,
        };
        assert_eq!(dps_status(&e), (429, 429001));
        assert_eq!(dps_retry_after(&e, 1), Some(7));
        assert_eq!(
            dps_retry_after(&dps::Error::Internal("x".into()), 3),
            Some(3)
        );
        assert_eq!(dps_retry_after(&dps::Error::Unauthorized, 3), None);
    }
}

//! The one place where service errors become AMQP error conditions (see
//! `docs/protocol-notes.md`, "AMQP error conditions"): the condition names are the ones
//! Azure's clients classify (`amqp:not-found`, `com.microsoft:argument-out-of-range`, ...).
//! Descriptions are the services' client-safe `Display` texts; internal causes are logged.

use fe2o3_amqp_types::definitions::{
    AmqpError, ConnectionError, Error as AmqpErrorFrame, ErrorCondition, Fields, LinkError,
};
use fe2o3_amqp_types::primitives::{Symbol, Value};
use fleethub_services::ServiceAuthError;
use fleethub_services::dps::Error as DpsError;
use fleethub_services::hub::Error as HubError;

/// `com.microsoft:argument-out-of-range` (a partition that does not exist, ...).
pub const ARGUMENT_OUT_OF_RANGE: &str = "com.microsoft:argument-out-of-range";
/// `com.microsoft:argument-error` (a malformed argument, e.g. a selector filter).
pub const ARGUMENT_ERROR: &str = "com.microsoft:argument-error";
/// `com.microsoft:timeout`.
pub const TIMEOUT: &str = "com.microsoft:timeout";
/// Throttled (Event Hubs and Service Bus clients retry it after a back-off).
pub const SERVER_BUSY: &str = "com.microsoft:server-busy";

fn custom(condition: &str) -> ErrorCondition {
    ErrorCondition::Custom(Symbol::from(condition))
}

/// An error frame with a condition and a description.
pub fn error(
    condition: impl Into<ErrorCondition>,
    description: impl Into<String>,
) -> AmqpErrorFrame {
    AmqpErrorFrame::new(condition, Some(description.into()), None)
}

/// The AMQP error of a hub service error.
pub fn hub_error(e: &HubError) -> AmqpErrorFrame {
    let condition: ErrorCondition = match e {
        HubError::Unauthorized => AmqpError::UnauthorizedAccess.into(),
        HubError::DeviceNotFound { .. }
        | HubError::ModuleNotFound { .. }
        | HubError::ConfigurationNotFound { .. }
        | HubError::ConsumerGroupNotFound(_) => AmqpError::NotFound.into(),
        HubError::DeviceAlreadyExists { .. }
        | HubError::ModuleAlreadyExists { .. }
        | HubError::ConfigurationAlreadyExists { .. }
        | HubError::ConsumerGroupExists(_)
        | HubError::PreconditionFailed(_)
        | HubError::TwinConflict { .. } => AmqpError::PreconditionFailed.into(),
        HubError::LockLost { .. } => AmqpError::IllegalState.into(),
        HubError::QueueFull { .. } | HubError::TooManyConsumerGroups { .. } => {
            AmqpError::ResourceLimitExceeded.into()
        }
        HubError::PartitionOutOfRange { .. } => custom(ARGUMENT_OUT_OF_RANGE),
        // Both are retryable: the SDKs back off and retry on server-busy.
        HubError::Throttled { .. } | HubError::Unavailable { .. } => custom(SERVER_BUSY),
        HubError::Invalid(_) | HubError::InvalidConsumerGroupName(_) => custom(ARGUMENT_ERROR),
        HubError::TooLarge(_) => LinkError::MessageSizeExceeded.into(),
        HubError::Internal(_) => {
            tracing::error!(error = %e, "amqp: internal error");
            AmqpError::InternalError.into()
        }
    };
    error(condition, e.to_string())
}

/// A refused token or link: `amqp:unauthorized-access`.
pub fn unauthorized(description: impl Into<String>) -> AmqpErrorFrame {
    error(AmqpError::UnauthorizedAccess, description)
}

/// The AMQP error of a refused service token.
pub fn service_auth(e: &ServiceAuthError) -> AmqpErrorFrame {
    match e {
        ServiceAuthError::Unauthorized => unauthorized(
            "Unauthorized: the token was refused (the reason is in the hub's auth-failure log)",
        ),
        ServiceAuthError::Forbidden(why) => unauthorized(why.clone()),
    }
}

/// The CBS/management status code of a refused token (401, or 403 for a missing right).
pub fn service_auth_status(e: &ServiceAuthError) -> (i32, String) {
    match e {
        ServiceAuthError::Unauthorized => (401, "Unauthorized".into()),
        ServiceAuthError::Forbidden(why) => (403, why.clone()),
    }
}

/// The CBS status of a refused device-plane token (401; the real reason is in the hub's
/// auth-failure log), or of a hub error while checking it.
pub fn device_auth_status(e: &HubError) -> (i32, String) {
    match e {
        HubError::Unauthorized => (
            401,
            "Unauthorized: the device token was refused (the reason is in the hub's auth-failure log)"
                .into(),
        ),
        other => (i32::from(hub_status(other).0), other.to_string()),
    }
}

/// HTTP-style status and Azure's 6-digit code of a hub error, as the device plane's replies
/// carry them (twin `status` annotations), the same as MQTT's twin responses.
pub fn hub_status(e: &HubError) -> (u16, u32) {
    use HubError as E;
    match e {
        E::Unauthorized => (401, 401_002),
        E::Invalid(_) | E::PartitionOutOfRange { .. } | E::InvalidConsumerGroupName(_) => {
            (400, 400_004)
        }
        E::DeviceNotFound { .. }
        | E::ModuleNotFound { .. }
        | E::ConfigurationNotFound { .. }
        | E::ConsumerGroupNotFound(_) => (404, 404_001),
        E::DeviceAlreadyExists { .. }
        | E::ModuleAlreadyExists { .. }
        | E::ConfigurationAlreadyExists { .. }
        | E::ConsumerGroupExists(_)
        | E::TwinConflict { .. } => (409, 409_001),
        E::TooManyConsumerGroups { .. } => (403, 403_002),
        E::PreconditionFailed(_) | E::LockLost { .. } => (412, 412_001),
        E::QueueFull { .. } => (403, 403_004),
        E::TooLarge(_) => (413, 413_001),
        E::Throttled { .. } => (429, 429_001),
        E::Internal(_) => (500, 500_001),
        E::Unavailable { .. } => (503, 503_000),
    }
}

/// The `status` and body of a failed twin request: `{"errorCode": 404001, "message": "..."}`.
pub fn twin_response(e: &HubError) -> (i32, Vec<u8>) {
    let (status, code) = hub_status(e);
    let body = serde_json::json!({"errorCode": code, "message": e.to_string()});
    (
        i32::from(status),
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// The AMQP error of a refused DPS request (a rejected delivery or a refused link): the
/// conditions the provisioning transports translate (`com.microsoft:server-busy` and
/// `amqp:internal-error` are retried after the `retry-after` in the error's info).
pub fn dps_error(e: &DpsError, retry_after_secs: u32) -> AmqpErrorFrame {
    use DpsError as E;
    let (condition, retry): (ErrorCondition, Option<u64>) = match e {
        E::Unauthorized => (AmqpError::UnauthorizedAccess.into(), None),
        E::EnrollmentNotFound { .. }
        | E::GroupNotFound { .. }
        | E::LinkedHubNotFound { .. }
        | E::RegistrationNotFound { .. }
        | E::OperationNotFound { .. } => (AmqpError::NotFound.into(), None),
        E::EnrollmentAlreadyExists { .. }
        | E::GroupAlreadyExists { .. }
        | E::PreconditionFailed(_) => (AmqpError::PreconditionFailed.into(), None),
        E::Invalid(_) => (custom(ARGUMENT_ERROR), None),
        E::TooLarge(_) => (LinkError::MessageSizeExceeded.into(), None),
        E::Throttled {
            retry_after_secs, ..
        }
        | E::Unavailable { retry_after_secs } => (custom(SERVER_BUSY), Some(*retry_after_secs)),
        E::HubUnavailable { .. } | E::WebhookUnavailable => (
            AmqpError::InternalError.into(),
            Some(u64::from(retry_after_secs)),
        ),
        E::Internal(_) => {
            tracing::error!(error = %e, "amqp: internal DPS error");
            (
                AmqpError::InternalError.into(),
                Some(u64::from(retry_after_secs)),
            )
        }
    };
    let info = retry.map(|secs| {
        let mut f = Fields::new();
        f.insert(
            Symbol::from("retry-after"),
            Value::String(secs.max(1).to_string()),
        );
        f
    });
    AmqpErrorFrame::new(condition, Some(e.to_string()), info)
}

/// `amqp:decode-error`: a message that does not decode (e.g. a section of a batch).
pub fn decode(description: impl Into<String>) -> AmqpErrorFrame {
    error(AmqpError::DecodeError, description)
}

/// `amqp:not-found` for a node we do not serve.
pub fn not_found(description: impl Into<String>) -> AmqpErrorFrame {
    error(AmqpError::NotFound, description)
}

/// `com.microsoft:argument-out-of-range`.
pub fn out_of_range(description: impl Into<String>) -> AmqpErrorFrame {
    error(custom(ARGUMENT_OUT_OF_RANGE), description)
}

/// `com.microsoft:argument-error`.
pub fn argument(description: impl Into<String>) -> AmqpErrorFrame {
    error(custom(ARGUMENT_ERROR), description)
}

/// `amqp:resource-limit-exceeded`.
pub fn limit(description: impl Into<String>) -> AmqpErrorFrame {
    error(AmqpError::ResourceLimitExceeded, description)
}

/// `amqp:link:stolen`: a receiver with a higher epoch took the partition.
pub fn stolen(description: impl Into<String>) -> AmqpErrorFrame {
    error(LinkError::Stolen, description)
}

/// `amqp:connection:forced`: the server is shutting down.
pub fn shutting_down() -> AmqpErrorFrame {
    error(
        ConnectionError::ConnectionForced,
        "the server is shutting down",
    )
}

/// `amqp:link:redirect` with the info Azure's clients read: `hostname`, `network-host`,
/// `port` and `address`.
pub fn redirect(host: &str, port: u16, address: &str) -> AmqpErrorFrame {
    let mut info = Fields::new();
    info.insert(Symbol::from("hostname"), Value::String(host.to_string()));
    info.insert(
        Symbol::from("network-host"),
        Value::String(host.to_string()),
    );
    info.insert(Symbol::from("port"), Value::Int(i32::from(port)));
    info.insert(Symbol::from("address"), Value::String(address.to_string()));
    AmqpErrorFrame::new(
        LinkError::Redirect,
        Some(format!(
            "redirected to the Event Hubs-compatible endpoint {address}"
        )),
        Some(info),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(e: &AmqpErrorFrame) -> String {
        match &e.condition {
            ErrorCondition::Custom(s) => s.as_str().to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn hub_errors_map_to_conditions() {
        let nf = hub_error(&HubError::DeviceNotFound { id: "d1".into() });
        assert_eq!(nf.condition, ErrorCondition::AmqpError(AmqpError::NotFound));
        assert_eq!(nf.description.as_deref(), Some("device 'd1' not found"));
        let full = hub_error(&HubError::QueueFull {
            device: "d1".into(),
            max: 50,
        });
        assert_eq!(
            full.condition,
            ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded)
        );
        assert_eq!(
            condition(&hub_error(&HubError::Invalid("x".into()))),
            ARGUMENT_ERROR
        );
        assert_eq!(
            condition(&hub_error(&HubError::PartitionOutOfRange {
                partition: 9,
                count: 4
            })),
            ARGUMENT_OUT_OF_RANGE
        );
        let cg = hub_error(&HubError::ConsumerGroupNotFound("g".into()));
        assert_eq!(cg.condition, ErrorCondition::AmqpError(AmqpError::NotFound));
        let internal = hub_error(&HubError::Internal("storage failure".into()));
        assert_eq!(
            internal.condition,
            ErrorCondition::AmqpError(AmqpError::InternalError)
        );
    }

    #[test]
    fn redirect_info() {
        let e = redirect(
            "hub.example",
            5671,
            "amqps://hub.example:5671/hub/$management",
        );
        assert_eq!(e.condition, ErrorCondition::LinkError(LinkError::Redirect));
        let info = e.info.unwrap();
        assert_eq!(info.get(&Symbol::from("port")), Some(&Value::Int(5671)));
        assert_eq!(
            info.get(&Symbol::from("address")),
            Some(&Value::String(
                "amqps://hub.example:5671/hub/$management".into()
            ))
        );
    }
}

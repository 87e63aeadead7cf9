//! The response state machine both transports share (see the module docs of
//! [`super`]): a DPS status and body -> done, poll, retry or an error.

use std::time::Duration;

use fleethub_api::RegistrationOperationStatus;
use fleethub_iot_protocol::dps;
use serde_json::Value;

use super::{PollPolicy, ProvisioningError, RegistrationResult};

/// What to do after a DPS response.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    Done(Box<RegistrationResult>),
    /// Poll the operation after the delay.
    Poll {
        operation_id: String,
        after: Duration,
    },
    /// Repeat the same request after the delay (throttled / server error).
    Retry {
        after: Duration,
    },
}

const EXCERPT: usize = 200;

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(EXCERPT).collect();
    if text.chars().count() > EXCERPT {
        out.push('…');
    }
    out
}

/// The shared response state machine (see the module docs).
pub(crate) fn interpret(
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
    poll: &PollPolicy,
) -> Result<Next, ProvisioningError> {
    if status >= 429 {
        return Ok(Next::Retry {
            after: dps::retry_delay(retry_after),
        });
    }
    if !(200..300).contains(&status) {
        return Err(service_error(status, body));
    }
    let op: RegistrationOperationStatus = serde_json::from_slice(body).map_err(|e| {
        ProvisioningError::InvalidResponse(format!("status {status}: {e}; body: {}", excerpt(body)))
    })?;
    match op.status.to_ascii_lowercase().as_str() {
        "assigning" => Ok(Next::Poll {
            operation_id: op.operation_id,
            after: poll.delay(retry_after),
        }),
        "assigned" => {
            let state = op.registration_state.ok_or_else(|| {
                ProvisioningError::InvalidResponse("assigned without registrationState".into())
            })?;
            let (Some(hub), Some(device_id)) =
                (state.assigned_hub.clone(), state.device_id.clone())
            else {
                return Err(ProvisioningError::InvalidResponse(
                    "assigned registrationState lacks assignedHub or deviceId".into(),
                ));
            };
            Ok(Next::Done(Box::new(RegistrationResult {
                status: op.status,
                operation_id: op.operation_id,
                assigned_hub: hub,
                device_id,
                substatus: state.substatus.clone(),
                payload: state.payload.clone(),
                registration_state: state,
            })))
        }
        "failed" | "disabled" => {
            let state = op.registration_state;
            Err(ProvisioningError::RegistrationFailed {
                status: op.status,
                error_code: state.as_ref().and_then(|s| s.error_code),
                error_message: state.as_ref().and_then(|s| s.error_message.clone()),
                registration_state: state.map(Box::new),
            })
        }
        other => Err(ProvisioningError::InvalidResponse(format!(
            "unexpected operation status '{other}'"
        ))),
    }
}

/// Maps an error status and its body (DPS `{errorCode, message, trackingId}` or hub-style
/// `{Message, ExceptionMessage}`; anything else is quoted) to [`ProvisioningError::Service`].
pub(crate) fn service_error(status: u16, body: &[u8]) -> ProvisioningError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| -> Option<&Value> {
        let obj = json.as_ref()?.as_object()?;
        names.iter().find_map(|n| obj.get(*n))
    };
    let error_code = field(&["errorCode", "ErrorCode", "code"]).and_then(|v| match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    });
    let message = field(&["message", "Message", "errorMessage"])
        .and_then(Value::as_str)
        .map_or_else(
            || {
                if body.is_empty() {
                    "(empty body)".to_string()
                } else {
                    excerpt(body)
                }
            },
            str::to_string,
        );
    let tracking_id = field(&["trackingId", "TrackingId"])
        .and_then(Value::as_str)
        .map(str::to_string);
    ProvisioningError::Service {
        status,
        error_code,
        message,
        tracking_id,
    }
}

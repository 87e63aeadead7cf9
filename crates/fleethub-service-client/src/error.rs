//! Errors of the service client: a non-success answer parsed from Azure's error bodies
//! ([`ServiceError`]), and everything that can fail before or after it ([`Error`]).

use serde_json::Value;
use std::fmt::Write as _;

/// A non-success HTTP answer: status, the Azure error code and the server's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ServiceError {
    /// e.g. `GET /enrollments/dev-01`
    pub operation: String,
    pub status: u16,
    /// Azure error-code name (`DeviceNotFound`) or number (`404201`), when the body has one.
    pub code: Option<String>,
    /// The server's description (may be empty).
    pub message: String,
}

impl ServiceError {
    /// Builds the error from a response status and body (either Azure error shape, or text).
    pub fn from_response(operation: String, status: u16, body: &[u8]) -> ServiceError {
        let (code, message) = parse_error_body(body);
        ServiceError {
            operation,
            status,
            code,
            message,
        }
    }

    /// True for a 404 answer.
    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "{} failed: {} {}",
            self.operation,
            self.status,
            reason_phrase(self.status)
        );
        if let Some(c) = &self.code {
            let _ = write!(s, " ({c})");
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        if self.status == 404 && self.message.starts_with("no such resource") {
            s.push_str(
                "\nhint: the server does not offer this API (yet); is it an older fleethub?",
            );
        } else if let Some(hint) = hint(self.status) {
            s.push_str("\nhint: ");
            s.push_str(hint);
        }
        s
    }
}

fn hint(status: u16) -> Option<&'static str> {
    Some(match status {
        401 => {
            "the server rejected the credentials: check the connection string (HostName, SharedAccessKeyName, SharedAccessKey) and the clock; `fleethub diagnostics auth-failures` on the server side says why"
        }
        403 => "the policy in the connection string lacks the right for this operation",
        412 => {
            "the etag does not match: the object changed since it was read; `show` it again and retry"
        }
        429 => "the server is throttling requests; retry later",
        _ => return None,
    })
}

/// (code, message) from `{"Message":"ErrorCode:X;msg",...}` (IoT hub and the DPS service
/// API), `{"errorCode":N,"message":"..."}` (DPS), or a plain-text body (first 500 chars).
/// See docs/protocol-notes.md, "Error bodies and codes".
pub fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(m) = v.get("Message").and_then(Value::as_str) {
            if let Some(rest) = m.strip_prefix("ErrorCode:") {
                return match rest.split_once(';') {
                    Some((code, msg)) => (Some(code.trim().to_string()), msg.trim().to_string()),
                    None => (Some(rest.trim().to_string()), String::new()),
                };
            }
            return (numeric_code(&v), m.trim().to_string());
        }
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            return (numeric_code(&v), m.trim().to_string());
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let short: String = text.chars().take(500).collect();
    (None, short)
}

fn numeric_code(v: &Value) -> Option<String> {
    match v.get("errorCode") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// What a transport returns when no HTTP answer arrived (connect, TLS, timeout, ...).
pub type TransportError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-success status.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// No answer: the transport failed (the source says why).
    #[error("request failed: {0}")]
    Transport(#[source] TransportError),
    /// The connection string is not valid.
    #[error("invalid service connection string: {0}")]
    ConnectionString(#[from] fleethub_core::connection_string::ConnectionStringError),
    /// The connection string lacks a field a service connection string needs.
    #[error("the service connection string has no {0}")]
    MissingField(&'static str),
    /// The key cannot sign (not base64).
    #[error("cannot sign a service SAS token: {0}")]
    Sign(#[source] fleethub_core::keys::KeyError),
    /// The CA certificate (or the system bundle) cannot be loaded.
    #[error(transparent)]
    Tls(#[from] fleethub_device::TlsError),
    /// The address to dial is not `host[:port]`.
    #[error("cannot dial '{dial}': {reason}")]
    Dial { dial: String, reason: String },
    /// The request body cannot be encoded.
    #[error("cannot encode the request body: {0}")]
    Encode(#[source] serde_json::Error),
    /// A success answer whose body is not the expected JSON.
    #[error("{operation}: the server answered {status} with a body that is not JSON")]
    NotJson {
        operation: String,
        status: u16,
        #[source]
        source: serde_json::Error,
    },
    /// A success answer whose JSON is not the expected wire type.
    #[error("{operation}: the answer is not the expected JSON shape")]
    Shape {
        operation: String,
        #[source]
        source: serde_json::Error,
    },
    /// A query answer that is not a JSON array.
    #[error("{operation}: expected a JSON array, the server sent {kind}")]
    NotAnArray {
        operation: String,
        kind: &'static str,
    },
    /// The server repeated a continuation token (paging would never end).
    #[error(
        "{operation}: the server sent the continuation token '{token}' twice; stopping to avoid a loop"
    )]
    ContinuationLoop { operation: String, token: String },
}

impl Error {
    /// The service answer, if this is one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            Error::Service(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status of a service answer.
    pub fn status(&self) -> Option<u16> {
        self.service().map(|e| e.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_error_body_gives_name_and_description() {
        let body = br#"{"Message":"ErrorCode:DeviceNotFound;Device d1 not found","ExceptionMessage":"Tracking ID:x","errorCode":404001}"#;
        assert_eq!(
            parse_error_body(body),
            (
                Some("DeviceNotFound".to_string()),
                "Device d1 not found".to_string()
            )
        );
    }

    #[test]
    fn dps_error_body_gives_number_and_message() {
        let body =
            br#"{"errorCode":401002,"trackingId":"t","message":"Unauthorized","timestampUtc":"x"}"#;
        assert_eq!(
            parse_error_body(body),
            (Some("401002".to_string()), "Unauthorized".to_string())
        );
    }

    #[test]
    fn message_without_error_code_prefix_keeps_numeric_code() {
        let body = br#"{"Message":"plain","errorCode":"400004"}"#;
        assert_eq!(
            parse_error_body(body),
            (Some("400004".to_string()), "plain".to_string())
        );
    }

    #[test]
    fn text_body_is_trimmed_and_shortened() {
        let long = format!("  {}  ", "x".repeat(600));
        let (code, msg) = parse_error_body(long.as_bytes());
        assert_eq!(code, None);
        assert_eq!(msg.len(), 500);
    }

    #[test]
    fn describe_adds_reason_code_message_and_hint() {
        let e = ServiceError::from_response(
            "GET /devices/d1".into(),
            401,
            br#"{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized"}"#,
        );
        let text = e.to_string();
        assert!(
            text.starts_with(
                "GET /devices/d1 failed: 401 Unauthorized (IotHubUnauthorizedAccess): Unauthorized\nhint: the server rejected the credentials"
            ),
            "{text}"
        );
        let e = ServiceError::from_response("GET /x".into(), 404, b"no such resource: GET /x");
        assert!(e.to_string().ends_with("is it an older fleethub?"), "{e}");
    }
}

//! Errors that say what to fix: server answers (status + the server's own message) and
//! connection problems (which address, which flag to try).

use crate::settings::Endpoint;
use serde_json::Value;

/// A non-success HTTP answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.describe())]
pub(crate) struct ServiceError {
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
    pub(crate) fn from_response(operation: String, status: u16, body: &[u8]) -> ServiceError {
        let (code, message) = parse_error_body(body);
        ServiceError {
            operation,
            status,
            code,
            message,
        }
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "{} failed: {} {}",
            self.operation,
            self.status,
            reason_phrase(self.status)
        );
        if let Some(c) = &self.code {
            s.push_str(&format!(" ({c})"));
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

/// (code, message) from `{"Message":"ErrorCode:X;msg",...}`, `{"errorCode":N,"message":"..."}`,
/// or a plain-text body.
pub(crate) fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
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

/// What went wrong below HTTP, judged from the error chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectFailure {
    Refused,
    Resolve,
    Tls,
    Timeout,
    Other,
}

pub(crate) fn classify(err: &anyhow::Error) -> ConnectFailure {
    use fleethub_device::{HttpsError, TlsError};
    for cause in err.chain() {
        match cause.downcast_ref::<HttpsError>() {
            Some(HttpsError::Tls(TlsError::Connect { source, .. })) => {
                return if source.kind() == std::io::ErrorKind::ConnectionRefused {
                    ConnectFailure::Refused
                } else if looks_like_resolve(&source.to_string()) {
                    ConnectFailure::Resolve
                } else {
                    ConnectFailure::Other
                };
            }
            Some(HttpsError::Tls(TlsError::Handshake { .. } | TlsError::InvalidServerName(_))) => {
                return ConnectFailure::Tls;
            }
            Some(HttpsError::Tls(TlsError::Timeout { .. }) | HttpsError::Timeout { .. }) => {
                return ConnectFailure::Timeout;
            }
            _ => {}
        }
    }
    for cause in err.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ConnectFailure::Refused,
                std::io::ErrorKind::InvalidData if looks_like_tls(&io.to_string()) => {
                    return ConnectFailure::Tls;
                }
                _ => {}
            }
        }
    }
    let text = format!("{err:#}").to_ascii_lowercase();
    if text.contains("connection refused") {
        ConnectFailure::Refused
    } else if looks_like_tls(&text) {
        ConnectFailure::Tls
    } else if looks_like_resolve(&text) {
        ConnectFailure::Resolve
    } else {
        ConnectFailure::Other
    }
}

fn looks_like_resolve(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "failed to lookup address",
        "name or service not known",
        "nodename nor servname",
        "no such host",
    ]
    .iter()
    .any(|w| t.contains(w))
}

fn looks_like_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "handshake",
        "unknownissuer",
        "peer misbehaved",
        "alert",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// Turns a transport error into one that names the address and the flag to try.
pub(crate) fn explain_transport_error(err: anyhow::Error, ep: &Endpoint) -> anyhow::Error {
    let dial = &ep.dial;
    let host = &ep.host_name;
    let root = err.root_cause().to_string();
    let msg = match classify(&err) {
        ConnectFailure::Refused => format!(
            "cannot connect to {dial}: connection refused. Is the server running there? \
             Pass --server HOST:PORT to dial another address (TLS name stays {host})"
        ),
        ConnectFailure::Resolve => format!(
            "cannot resolve the address {dial} ({root}). Pass --server HOST:PORT (e.g. 127.0.0.1:8443) \
             to dial an address while keeping {host} as the TLS name"
        ),
        ConnectFailure::Tls => {
            let ca = match &ep.ca_cert {
                Some(p) => format!("the CA certificate in use is {}", p.display()),
                None => "no CA certificate was given, so only the system's CA bundle is trusted"
                    .to_string(),
            };
            format!(
                "TLS handshake with {dial} (server name {host}) failed: {root}. {ca}; pass --ca-cert PATH \
                 with the CA that signed the server certificate (a local server's is DATA_DIR/certs/ca.pem)"
            )
        }
        ConnectFailure::Timeout => format!(
            "no answer from {dial} in time ({root}). Is the address right? Pass --server HOST:PORT to dial \
             another address (TLS name stays {host})"
        ),
        ConnectFailure::Other => {
            return err.context(format!("request to {dial} (server name {host}) failed"));
        }
    };
    anyhow::anyhow!(msg)
}

//! Errors that say what to fix: server answers (status + the server's own message, see
//! [`ServiceError`]) and connection problems (which address, which flag to try).

use crate::settings::Endpoint;

/// A non-success HTTP answer (status, Azure error code, the server's message), parsed by the
/// service client; its text is what the CLI prints.
pub(crate) use fleethub_service_client::ServiceError;

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

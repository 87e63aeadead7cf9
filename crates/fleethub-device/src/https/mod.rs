//! A minimal HTTPS/1.1 client on `hyper::client::conn::http1` over [`crate::tls`]: the
//! device plane's transport (DPS registration, the hub's device HTTPS API, an edge device's
//! module identities). The service-plane conventions (policy SAS, api-versions, Azure error
//! bodies) live in the `fleethub-service-client` crate, which sends over this client.
//!
//! One [`HttpsClient`] keeps at most one idle keep-alive connection and reuses it for the
//! next request to the same `host:port`; concurrent requests open extra connections that
//! are closed (or kept as the idle one) when they finish. Every request is bounded by the
//! client's timeout (connect + send + whole response body).
//!
//! ```no_run
//! # async fn demo(tls: fleethub_device::ClientTlsConfig) -> Result<(), fleethub_device::HttpsError> {
//! use fleethub_device::{HttpsClient, HttpsRequest};
//! let client = HttpsClient::new(tls);
//! let resp = client
//!     .send(HttpsRequest::get("https://dps.fleethub.local:443/0ne00000A0A/registrations/dev-01/operations/op-1?api-version=2021-06-01")?
//!         .header("Authorization", "SharedAccessSignature sr=...")
//!         .header("Accept", "application/json"))
//!     .await?;
//! println!("{} {}", resp.status, resp.text());
//! # Ok(()) }
//! ```

mod client;
mod in_task;
mod request;
mod response;

#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::tls::TlsError;

pub use client::HttpsClient;
pub(crate) use in_task::InTaskConnection;
pub use request::{HttpsRequest, split_host_port};
pub use response::HttpsResponse;

/// Default bound on one request (connect, send, read the whole response).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body accepted.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;
/// Port used when the host has none.
pub const DEFAULT_HTTPS_PORT: u16 = 443;

/// Errors of [`HttpsClient::send`] and of the request/response helpers.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("invalid URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid header '{name}': {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("HTTP error talking to {authority}: {source}")]
    Http {
        authority: String,
        source: hyper::Error,
    },
    #[error("cannot read the response body from {authority}: {reason}")]
    Body { authority: String, reason: String },
    #[error("request to {authority} timed out after {after:?}")]
    Timeout { authority: String, after: Duration },
    #[error("response (HTTP {status}) is not the expected JSON: {source}")]
    Json {
        status: u16,
        source: serde_json::Error,
    },
    #[error("cannot serialize the JSON request body: {0}")]
    Serialize(serde_json::Error),
}

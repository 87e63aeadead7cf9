//! Typed client of fleethub's (Azure-shaped) service REST APIs, shared by the `fleethub`
//! admin CLI, the load tool and the tests:
//!
//! - the DPS service API ([`dps`]): enrollments, enrollment groups, registration records,
//!   bulk operations, queries;
//! - the IoT hub service API ([`hub`]): devices, modules, twins, direct methods, queries,
//!   statistics, bulk registry, cloud-to-device send/purge, configurations, telemetry read,
//!   diagnostics, and the Event Hub-compatible endpoint's consumer groups and partitions.
//!
//! [`ServiceClient`] signs every request with a service SAS token from the connection
//! string's shared-access policy ([`Credentials`]), sends the api-version and the Azure
//! headers, follows query continuation tokens, and turns Azure error bodies into a typed
//! [`ServiceError`] (status + error code + message). The wire is behind [`Transport`]; the
//! real one, [`HttpsTransport`], is the device SDK's HTTPS client trusting a [`CaTrust`].
//! Protocol background: docs/protocol-notes.md ("Service REST API and api-versions",
//! "Error bodies and codes").
//!
//! ```no_run
//! # async fn demo() -> Result<(), fleethub_service_client::Error> {
//! use fleethub_service_client::{CaTrust, Credentials, HttpsTransport, ServiceClient};
//!
//! let creds = Credentials::from_connection_string(
//!     "HostName=hub.fleethub.local;SharedAccessKeyName=iothubowner;SharedAccessKey=AAAA",
//! )?;
//! let ca = CaTrust::File("fleethub-data/certs/ca.pem".into());
//! let transport = HttpsTransport::connect(&ca, &creds.host_name, "127.0.0.1:443")?;
//! let hub = ServiceClient::hub(transport, creds);
//! let twin = hub.get_twin("dev-01", None).await?;
//! println!("{:?}", twin.properties);
//! # Ok(()) }
//! ```

mod client;
pub mod dps;
pub mod error;
mod event_hub;
pub mod hub;
pub mod transport;

pub use client::{
    Condition, Credentials, DPS_API_VERSION, HUB_API_VERSION, PAGE_SIZE, ServiceClient,
    TOKEN_TTL_SECS, USER_AGENT, seg,
};
pub use error::{Error, ServiceError, TransportError, parse_error_body};
pub use transport::{CaTrust, HttpsTransport, Request, Response, TlsTarget, Transport};

#[cfg(test)]
mod tests;

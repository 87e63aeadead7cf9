//! Connection and authentication: options, credentials and SAS tokens, the TLS connector,
//! CONNECT, and the supervisor task (dispatch of incoming packets, SAS renewal, reconnection
//! with back-off, re-subscription when the session was not kept).

mod connect;
mod credentials;
mod options;
mod state;
mod supervisor;
mod transport;

#[cfg(test)]
mod tests;

pub(crate) use connect::{Established, Feature};
pub(crate) use credentials::{Credentials, identity_from_connection_string};
pub(crate) use options::validate;
pub use options::{
    DEFAULT_OPERATION_TIMEOUT, DEFAULT_SAS_TTL, DeviceClientOptions, ReconnectPolicy, renewal_delay,
};
pub(crate) use state::ConnState;
pub use state::ConnectionStatus;
pub(crate) use supervisor::supervise;
#[cfg(test)]
pub(crate) use transport::BoxTransport;
pub(crate) use transport::{Connector, tls_connector};

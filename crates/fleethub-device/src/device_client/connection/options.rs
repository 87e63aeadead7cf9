//! Client settings: [`DeviceClientOptions`], the reconnection policy and SAS timing.

use std::path::PathBuf;
use std::time::Duration;

use super::super::{DeviceError, Ids};
use crate::tls::ClientTlsConfig;

/// Default port of MQTT over TLS.
pub const DEFAULT_PORT: u16 = 8883;
/// Default SAS token lifetime (as the SDKs: one hour).
pub const DEFAULT_SAS_TTL: Duration = Duration::from_hours(1);
/// Default keep-alive (the Python SDK's).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_mins(1);
/// Default bound on one operation (waiting for the connection included).
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_mins(1);

/// When to reconnect with a fresh token: 80 % of the token lifetime (the C SDK's
/// `SAS_REFRESH_MULTIPLIER`), so well before the hub drops the connection at expiry.
pub fn renewal_delay(sas_ttl: Duration) -> Duration {
    sas_ttl.mul_f64(0.8)
}

/// Reconnection after a dropped connection: exponential back-off with jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Reconnect at all (default true). When false a dropped connection closes the client.
    pub enabled: bool,
    /// Base delay of the first retry (default 1 s); doubles per failed attempt.
    pub initial_delay: Duration,
    /// Upper bound of a delay (default 60 s).
    pub max_delay: Duration,
    /// Give up (close the client) after this many failed attempts in a row (default: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_mins(1),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The wait before retry number `attempt` (0 = first retry), for a `jitter` in `[0, 1]`:
    /// `base = min(max_delay, initial_delay * 2^attempt)`, then a uniform pick in
    /// `[base / 2, base]` ("equal jitter": spreads a fleet's reconnects, never exceeds
    /// `max_delay`, never drops below half the base).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 2f64.powi(attempt.min(62) as i32);
        let base = (self.initial_delay.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Duration::from_secs_f64(base * (0.5 + 0.5 * jitter))
    }

    pub(super) fn next_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

/// Settings of a [`DeviceClient`](crate::DeviceClient).
#[derive(Debug, Clone)]
pub struct DeviceClientOptions {
    /// TLS settings (trust store, connect timeout, address overrides). Takes precedence
    /// over `ca_pem_file`.
    pub tls: Option<ClientTlsConfig>,
    /// CA PEM to trust (normally the server's `certs/ca.pem`); without `tls` and
    /// `ca_pem_file`, the system bundle.
    pub ca_pem_file: Option<PathBuf>,
    /// MQTT/TLS port (default 8883).
    pub port: u16,
    /// Keep-alive announced in CONNECT (default 60 s).
    pub keep_alive: Duration,
    /// Lifetime of the SAS tokens the client signs (default 1 h); renewed at 80 %.
    pub sas_ttl: Duration,
    /// Dial this address (`host`, `host:port` or `[v6]:port`) instead of the hub host name,
    /// still verifying the certificate for the hub (or gateway) host name. For tests and
    /// hosts without DNS.
    pub connect_address: Option<String>,
    /// Bound on one call (waiting for a reconnection included; default 60 s).
    pub operation_timeout: Duration,
    pub reconnect: ReconnectPolicy,
    /// Capacity of the receivers returned for desired updates, methods and C2D (default 64).
    pub channel_capacity: usize,
}

impl Default for DeviceClientOptions {
    fn default() -> Self {
        DeviceClientOptions {
            tls: None,
            ca_pem_file: None,
            port: DEFAULT_PORT,
            keep_alive: DEFAULT_KEEP_ALIVE,
            sas_ttl: DEFAULT_SAS_TTL,
            connect_address: None,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            reconnect: ReconnectPolicy::default(),
            channel_capacity: 64,
        }
    }
}

impl DeviceClientOptions {
    pub fn with_tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn with_ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_pem_file = Some(path.into());
        self
    }

    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn with_keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    pub fn with_sas_ttl(mut self, ttl: Duration) -> Self {
        self.sas_ttl = ttl;
        self
    }

    pub fn with_connect_address(mut self, address: impl Into<String>) -> Self {
        self.connect_address = Some(address.into());
        self
    }

    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }
}

pub(crate) fn validate(ids: &Ids, options: &DeviceClientOptions) -> Result<(), DeviceError> {
    let bad = |m: String| Err(DeviceError::Config(m));
    if ids.host.trim().is_empty() {
        return bad("the hub host name is empty".into());
    }
    for (what, id) in [
        ("device ID", Some(ids.device_id.as_str())),
        ("module ID", ids.module_id.as_deref()),
    ] {
        if let Some(id) = id
            && (id.is_empty() || id.contains(['/', '#', '+']))
        {
            return bad(format!(
                "{what} '{id}' is empty or contains '/', '#' or '+'"
            ));
        }
    }
    if options.sas_ttl < Duration::from_secs(1) {
        return bad("sas_ttl must be at least 1 s".into());
    }
    if options.port == 0 {
        return bad("port 0".into());
    }
    Ok(())
}

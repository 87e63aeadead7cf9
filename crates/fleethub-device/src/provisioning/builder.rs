//! [`ProvisioningClientBuilder`]: settings, validation, key derivation and trust store.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use fleethub_core::keys;
use serde_json::Value;

use super::{
    DEFAULT_GLOBAL_ENDPOINT, DEFAULT_TIMEOUT, PollPolicy, ProvisioningClient, ProvisioningError,
    Transport,
};
use crate::tls::ClientTlsConfig;

#[derive(Clone)]
enum KeySource {
    Device(String),
    Group(String),
}

#[derive(Clone)]
enum TlsSource {
    Config(ClientTlsConfig),
    CaFile(PathBuf),
    CaPem(Vec<u8>),
}

/// Builder of [`ProvisioningClient`]; see [`ProvisioningClient::builder`].
#[derive(Clone, Default)]
pub struct ProvisioningClientBuilder {
    host: Option<String>,
    port: Option<u16>,
    id_scope: Option<String>,
    registration_id: Option<String>,
    key: Option<KeySource>,
    transport: Transport,
    payload: Option<Value>,
    tls: Option<TlsSource>,
    timeout: Option<Duration>,
    poll: PollPolicy,
}

impl fmt::Debug for ProvisioningClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningClientBuilder")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("id_scope", &self.id_scope)
            .field("registration_id", &self.registration_id)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl ProvisioningClientBuilder {
    /// DPS device endpoint host name (default `global.azure-devices-provisioning.net`).
    pub fn global_endpoint(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Alias of [`Self::global_endpoint`].
    pub fn host(self, host: impl Into<String>) -> Self {
        self.global_endpoint(host)
    }

    /// Port (default: 8883 for MQTT, 443 for HTTPS).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn id_scope(mut self, id_scope: impl Into<String>) -> Self {
        self.id_scope = Some(id_scope.into());
        self
    }

    pub fn registration_id(mut self, registration_id: impl Into<String>) -> Self {
        self.registration_id = Some(registration_id.into());
        self
    }

    /// The device's own symmetric key (individual enrollment, or an already derived key).
    pub fn symmetric_key(mut self, key_b64: impl Into<String>) -> Self {
        self.key = Some(KeySource::Device(key_b64.into()));
        self
    }

    /// An enrollment group key: the device key is derived from it and the registration ID.
    pub fn group_key(mut self, group_key_b64: impl Into<String>) -> Self {
        self.key = Some(KeySource::Group(group_key_b64.into()));
        self
    }

    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Custom `payload` sent with the registration (echoed to allocation webhooks).
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Trust the CA certificates in this PEM file (normally the server's `certs/ca.pem`).
    pub fn ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls = Some(TlsSource::CaFile(path.into()));
        self
    }

    /// Trust the CA certificates in this PEM text.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls = Some(TlsSource::CaPem(pem.into()));
        self
    }

    /// Use a prepared TLS configuration (shared trust store, resumption off, overrides...).
    pub fn tls_config(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(TlsSource::Config(tls));
        self
    }

    /// Overall bound on `register()` (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Wait between `assigning` polls (default [`PollPolicy::default`]).
    pub fn poll_policy(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// Validates the settings, derives the key if needed and loads the trust store
    /// (without a CA, the system bundle).
    pub fn build(self) -> Result<ProvisioningClient, ProvisioningError> {
        let required = |v: Option<String>, what: &str| -> Result<String, ProvisioningError> {
            match v {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
                _ => Err(ProvisioningError::Config(format!("{what} is required"))),
            }
        };
        let id_scope = required(self.id_scope, "the ID scope")?;
        let registration_id = required(self.registration_id, "the registration ID")?;
        if registration_id.contains(['/', '#', '+']) {
            return Err(ProvisioningError::Config(format!(
                "registration ID '{registration_id}' contains '/', '#' or '+'"
            )));
        }
        let host = self.host.map_or_else(
            || DEFAULT_GLOBAL_ENDPOINT.to_string(),
            |h| h.trim().to_string(),
        );
        if host.is_empty() {
            return Err(ProvisioningError::Config("the DPS host is empty".into()));
        }
        let device_key = match self.key {
            Some(KeySource::Device(k)) => {
                keys::decode_key(&k)?;
                k.trim().to_string()
            }
            Some(KeySource::Group(k)) => keys::derive_device_key(&k, &registration_id)?,
            None => {
                return Err(ProvisioningError::Config(
                    "a symmetric key or a group key is required".into(),
                ));
            }
        };
        let tls = match self.tls {
            Some(TlsSource::Config(c)) => c,
            Some(TlsSource::CaFile(p)) => ClientTlsConfig::with_ca_file(p)?,
            Some(TlsSource::CaPem(pem)) => ClientTlsConfig::with_ca_pem(pem)?,
            None => ClientTlsConfig::with_system_roots()?,
        };
        Ok(ProvisioningClient {
            port: self.port.unwrap_or(self.transport.default_port()),
            host,
            id_scope,
            registration_id,
            device_key,
            transport: self.transport,
            payload: self.payload,
            tls,
            timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            poll: self.poll,
        })
    }
}

//! The device-scoped module identity API of the hub, as an IoT Edge device calls it with its
//! own SAS token (docs/protocol-notes.md, "Hub HTTPS device API"; aziot-identityd's `aziot-cloud-client-async` hub client):
//!
//! - `GET /devices/{d}/modules/{m}?api-version=2017-11-08-preview` -> 200 Module;
//! - `PUT /devices/{d}/modules/{m}` without `If-Match` creates it (the hub generates keys when
//!   the body has none), with `If-Match: *` updates it (e.g. sets locally derived keys);
//! - `DELETE /devices/{d}/modules/{m}` with `If-Match: *` -> 204;
//! - `GET /devices/{d}/modules` -> 200 array.
//!
//! Every request carries a fresh device SAS token (`sr={hub}/devices/{d}`, no `skn`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), fleethub_device::ModuleIdentityError> {
//! use fleethub_device::{ClientTlsConfig, ModuleIdentityClient};
//! let tls = ClientTlsConfig::with_ca_file("ca.pem")?;
//! let client = ModuleIdentityClient::new("hub.fleethub.local", "edge-01", "<device key>", tls)?;
//! let m = client.get_or_create("sensor").await?;
//! println!("generation {}", m.generation_id.unwrap_or_default());
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use fleethub_api::{AuthenticationMechanism, Module};
use fleethub_iot_protocol::{encode_component, identity};
use http::Method;

use crate::https::{HttpsClient, HttpsError, HttpsRequest, HttpsResponse};
use crate::tls::{ClientTlsConfig, TlsError};

/// The api-version aziot-identityd sends.
pub const MODULE_API_VERSION: &str = "2017-11-08-preview";
/// Lifetime of the device SAS token signed per request.
pub const TOKEN_TTL: Duration = Duration::from_mins(5);

/// Errors of [`ModuleIdentityClient`].
#[derive(Debug, thiserror::Error)]
pub enum ModuleIdentityError {
    #[error("invalid module identity client settings: {0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Transport failure (connect, TLS, timeout): the hub may simply be unreachable.
    #[error(transparent)]
    Https(#[from] HttpsError),
    /// The hub answered with an error status.
    #[error("the hub answered {status} to {what}: {message}")]
    Service {
        status: u16,
        what: String,
        message: String,
    },
    #[error("unexpected answer to {what}: {reason}")]
    InvalidResponse { what: String, reason: String },
}

impl ModuleIdentityError {
    /// The hub rejected the device's credentials (401): the identity is gone or the key is
    /// wrong — a reason to reprovision.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ModuleIdentityError::Service { status: 401, .. })
    }

    /// 404 (no such module).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ModuleIdentityError::Service { status: 404, .. })
    }

    /// Could not reach the hub (transport error or 5xx, which aziot also treats as a
    /// network error).
    pub fn is_network(&self) -> bool {
        match self {
            ModuleIdentityError::Https(_) | ModuleIdentityError::Tls(_) => true,
            ModuleIdentityError::Service { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Client of the device-scoped module identity API; see the module docs.
pub struct ModuleIdentityClient {
    hub: String,
    port: u16,
    device_id: String,
    device_key: String,
    http: HttpsClient,
}

impl fmt::Debug for ModuleIdentityClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleIdentityClient")
            .field("hub", &self.hub)
            .field("port", &self.port)
            .field("device_id", &self.device_id)
            .field("device_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ModuleIdentityClient {
    /// A client for `device_id` on `hub` (port 443), authenticating with the device key.
    pub fn new(
        hub: impl Into<String>,
        device_id: impl Into<String>,
        device_key: impl Into<String>,
        tls: ClientTlsConfig,
    ) -> Result<Self, ModuleIdentityError> {
        let device_key = device_key.into();
        fleethub_core::keys::decode_key(&device_key)
            .map_err(|e| ModuleIdentityError::Config(format!("device key: {e}")))?;
        let hub = hub.into();
        let device_id = device_id.into();
        if hub.trim().is_empty() || device_id.trim().is_empty() {
            return Err(ModuleIdentityError::Config(
                "the hub host name and the device ID are required".into(),
            ));
        }
        Ok(ModuleIdentityClient {
            hub,
            port: 443,
            device_id,
            device_key: device_key.trim().to_string(),
            http: HttpsClient::new(tls).with_timeout(Duration::from_secs(30)),
        })
    }

    /// Use another HTTPS port than 443.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Bound on each request (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.http = self.http.with_timeout(timeout);
        self
    }

    pub fn hub(&self) -> &str {
        &self.hub
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    fn token(&self) -> Result<String, ModuleIdentityError> {
        let expiry = fleethub_core::time_util::now_unix() + TOKEN_TTL.as_secs();
        fleethub_core::sas::build_token(
            &identity::hub_sas_resource(&self.hub, &self.device_id, None),
            &self.device_key,
            expiry,
            None,
        )
        .map_err(|e| ModuleIdentityError::Config(format!("device key: {e}")))
    }

    fn request(
        &self,
        method: Method,
        module_id: Option<&str>,
    ) -> Result<HttpsRequest, ModuleIdentityError> {
        let mut path = format!("/devices/{}/modules", encode_component(&self.device_id));
        if let Some(m) = module_id {
            path.push('/');
            path.push_str(&encode_component(m));
        }
        path.push_str("?api-version=");
        path.push_str(MODULE_API_VERSION);
        Ok(
            HttpsRequest::from_parts(method, format!("{}:{}", self.hub, self.port), path)
                .header("Authorization", self.token()?)
                .header("Accept", "application/json"),
        )
    }

    async fn send(
        &self,
        req: HttpsRequest,
        what: String,
    ) -> Result<HttpsResponse, ModuleIdentityError> {
        let resp = self.http.send(req).await?;
        if resp.is_success() {
            return Ok(resp);
        }
        let body: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
        let message = body
            .as_ref()
            .and_then(|v| v.get("Message").or_else(|| v.get("message")))
            .and_then(|v| v.as_str())
            .map_or_else(|| resp.text().chars().take(200).collect(), str::to_string);
        Err(ModuleIdentityError::Service {
            status: resp.status.as_u16(),
            what,
            message,
        })
    }

    fn parse(resp: &HttpsResponse, what: &str) -> Result<Module, ModuleIdentityError> {
        resp.json()
            .map_err(|e| ModuleIdentityError::InvalidResponse {
                what: what.to_string(),
                reason: e.to_string(),
            })
    }

    /// `GET /devices/{d}/modules/{m}`.
    pub async fn get(&self, module_id: &str) -> Result<Module, ModuleIdentityError> {
        let what = format!("GET module '{module_id}'");
        let resp = self
            .send(self.request(Method::GET, Some(module_id))?, what.clone())
            .await?;
        Self::parse(&resp, &what)
    }

    /// `GET /devices/{d}/modules`.
    pub async fn list(&self) -> Result<Vec<Module>, ModuleIdentityError> {
        let what = "GET modules".to_string();
        let resp = self
            .send(self.request(Method::GET, None)?, what.clone())
            .await?;
        resp.json()
            .map_err(|e| ModuleIdentityError::InvalidResponse {
                what,
                reason: e.to_string(),
            })
    }

    /// Creates the module (`PUT` without `If-Match`); without `keys` the hub generates them.
    pub async fn create(
        &self,
        module_id: &str,
        keys: Option<(String, String)>,
    ) -> Result<Module, ModuleIdentityError> {
        self.put(module_id, keys, false).await
    }

    /// Updates the module (`PUT` with `If-Match: *`), e.g. to set new keys.
    pub async fn update(
        &self,
        module_id: &str,
        keys: Option<(String, String)>,
    ) -> Result<Module, ModuleIdentityError> {
        self.put(module_id, keys, true).await
    }

    async fn put(
        &self,
        module_id: &str,
        keys: Option<(String, String)>,
        if_match: bool,
    ) -> Result<Module, ModuleIdentityError> {
        let body = Module {
            module_id: module_id.to_string(),
            device_id: self.device_id.clone(),
            managed_by: Some("iotEdge".to_string()),
            authentication: keys.map(|(p, s)| AuthenticationMechanism::sas(p, s)),
            ..Module::default()
        };
        let mut req = self.request(Method::PUT, Some(module_id))?;
        if if_match {
            req = req.header("If-Match", "*");
        }
        let req = req.json(&body)?;
        let what = format!("PUT module '{module_id}'");
        let resp = self.send(req, what.clone()).await?;
        Self::parse(&resp, &what)
    }

    /// The module, created (with hub-generated keys) when it does not exist yet.
    pub async fn get_or_create(&self, module_id: &str) -> Result<Module, ModuleIdentityError> {
        match self.get(module_id).await {
            Ok(m) => Ok(m),
            Err(e) if e.is_not_found() => match self.create(module_id, None).await {
                Ok(m) => Ok(m),
                // created concurrently by someone else
                Err(ModuleIdentityError::Service { status: 409, .. }) => self.get(module_id).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// `DELETE /devices/{d}/modules/{m}` with `If-Match: *`; a missing module is fine.
    pub async fn delete(&self, module_id: &str) -> Result<(), ModuleIdentityError> {
        let req = self
            .request(Method::DELETE, Some(module_id))?
            .header("If-Match", "*");
        match self.send(req, format!("DELETE module '{module_id}'")).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The primary and secondary keys of a module answer, if it has symmetric keys.
pub fn module_keys(module: &Module) -> Option<(String, String)> {
    let sk = module.authentication.as_ref()?.symmetric_key.as_ref()?;
    let primary = sk.primary_key.clone().filter(|k| !k.is_empty())?;
    let secondary = sk.secondary_key.clone().unwrap_or_default();
    Some((primary, secondary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> ClientTlsConfig {
        let roots = rustls::RootCertStore::empty();
        ClientTlsConfig::from_rustls(std::sync::Arc::new(
            crate::tls::client_config(roots).unwrap(),
        ))
    }

    fn client() -> ModuleIdentityClient {
        let tls = tls();
        ModuleIdentityClient::new(
            "hub.example",
            "edge 1",
            fleethub_core::keys::generate_key(),
            tls,
        )
        .unwrap()
        .with_port(8443)
    }

    #[test]
    fn requests_are_device_scoped_and_signed() {
        let c = client();
        let req = c.request(Method::GET, Some("$edgeAgent")).unwrap();
        assert_eq!(req.host, "hub.example:8443");
        assert_eq!(
            req.path_and_query,
            "/devices/edge%201/modules/%24edgeAgent?api-version=2017-11-08-preview"
        );
        let auth = &req
            .headers
            .iter()
            .find(|(n, _)| n == "Authorization")
            .unwrap()
            .1;
        let token = fleethub_core::sas::SasToken::parse(auth).unwrap();
        assert!(token.covers("hub.example/devices/edge 1"), "{auth}");
        assert!(!auth.contains("skn="));
    }

    #[test]
    fn bad_keys_are_refused() {
        let e = ModuleIdentityClient::new("h", "d", "not base64!", tls()).unwrap_err();
        assert!(e.to_string().contains("device key"), "{e}");
    }

    #[test]
    fn keys_of_a_module() {
        let mut m = Module::default();
        assert_eq!(module_keys(&m), None);
        m.authentication = Some(AuthenticationMechanism::sas("p".into(), "s".into()));
        assert_eq!(module_keys(&m), Some(("p".into(), "s".into())));
    }
}

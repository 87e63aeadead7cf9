//! The wire under the client: one request in, one whole response out.
//!
//! [`Transport`] is a trait so that command logic can be tested with a scripted transport;
//! the real one, [`HttpsTransport`], is the device SDK's HTTPS/1.1 client (the TLS plumbing is
//! the same for both planes; only the service-plane conventions live in this crate).

use crate::error::{Error, TransportError};
use fleethub_device::https::split_host_port;
use fleethub_device::{ClientTlsConfig, HttpsClient, HttpsRequest};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// One HTTP request, path already percent-encoded (query included).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: &'static str,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// One whole HTTP response, whatever its status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T`; `operation` (e.g. `GET /devices/d1`) names the call in the error.
    pub fn json<T: DeserializeOwned>(&self, operation: &str) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|source| Error::NotJson {
            operation: operation.to_string(),
            status: self.status,
            source,
        })
    }
}

/// Sends one request and returns the whole response (any status). Errors are transport errors.
pub trait Transport {
    fn send(&self, req: Request) -> impl Future<Output = Result<Response, TransportError>> + Send;
}

/// Which CA certificates to trust for the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaTrust {
    /// The system's CA bundle (Azure's public endpoints).
    System,
    /// The PEM file at this path (a local server's is `DATA_DIR/certs/ca.pem`).
    File(PathBuf),
    /// These PEM bytes.
    Pem(Vec<u8>),
}

impl CaTrust {
    /// The rustls client configuration trusting these CAs.
    pub fn client_tls(&self) -> Result<ClientTlsConfig, Error> {
        Ok(match self {
            CaTrust::System => ClientTlsConfig::with_system_roots()?,
            CaTrust::File(path) => ClientTlsConfig::with_ca_file(path)?,
            CaTrust::Pem(pem) => ClientTlsConfig::with_ca_pem(pem)?,
        })
    }
}

/// How to open a TLS connection to a service endpoint: `dial` (`host[:port]`, default port
/// 443) is the address connected to, while the TLS server name, the certificate check and the
/// Host header use `host_name` (like `curl --resolve`).
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub tls: ClientTlsConfig,
    pub host_name: String,
    pub port: u16,
    /// `host_name:port`, brackets around IPv6 literals.
    pub authority: String,
}

impl TlsTarget {
    /// Builds the target from an already loaded TLS configuration.
    pub fn with_tls(tls: ClientTlsConfig, host_name: &str, dial: &str) -> Result<Self, Error> {
        let (dial_host, port) = split_host_port(dial).map_err(|reason| Error::Dial {
            dial: dial.to_string(),
            reason,
        })?;
        let tls = if dial_host.eq_ignore_ascii_case(host_name) {
            tls
        } else {
            tls.with_address_override(host_name.to_string(), dial_host.to_string())
        };
        let host = if host_name.contains(':') {
            format!("[{host_name}]")
        } else {
            host_name.to_string()
        };
        Ok(TlsTarget {
            tls,
            host_name: host_name.to_string(),
            port,
            authority: format!("{host}:{port}"),
        })
    }

    /// Loads `ca` and builds the target.
    pub fn new(ca: &CaTrust, host_name: &str, dial: &str) -> Result<Self, Error> {
        Self::with_tls(ca.client_tls()?, host_name, dial)
    }
}

/// The real transport: the device SDK's HTTPS/1.1 client (keep-alive reuse, bounded requests).
#[derive(Debug)]
pub struct HttpsTransport {
    client: HttpsClient,
    /// `host_name[:port]`: what goes into the Host header and the certificate check.
    authority: String,
}

impl HttpsTransport {
    /// A transport to `target`.
    pub fn new(target: TlsTarget) -> Self {
        HttpsTransport {
            client: HttpsClient::new(target.tls),
            authority: target.authority,
        }
    }

    /// Trusts `ca`, dials `dial` and checks the certificate for `host_name`.
    pub fn connect(ca: &CaTrust, host_name: &str, dial: &str) -> Result<Self, Error> {
        Ok(Self::new(TlsTarget::new(ca, host_name, dial)?))
    }

    /// Bounds each request (connect, send, whole response) by `timeout` instead of the
    /// SDK's default 30 s (a direct method may take longer).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        HttpsTransport {
            client: self.client.with_timeout(timeout),
            authority: self.authority,
        }
    }
}

impl Transport for HttpsTransport {
    async fn send(&self, req: Request) -> Result<Response, TransportError> {
        let method = http::Method::from_bytes(req.method.as_bytes())?;
        let mut r = HttpsRequest::from_parts(method, self.authority.clone(), req.path_and_query);
        r.headers = req.headers;
        r.body = req.body;
        let resp = self.client.send(r).await?;
        let headers = resp
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        Ok(Response {
            status: resp.status.as_u16(),
            headers,
            body: resp.body.to_vec(),
        })
    }
}

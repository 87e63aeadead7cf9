//! TLS client side: a rustls `ClientConfig` (ring provider, TLS 1.2 + 1.3) trusting a CA
//! bundle, and a bounded TCP + TLS connect helper.
//!
//! The normal case for a self-hosted server is a CA PEM file (the server's `certs/ca.pem`).
//! Without one, the system bundle is read from `SSL_CERT_FILE` or the usual distribution
//! paths; webpki-roots is deliberately not used.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A TLS stream over TCP, as returned by [`ClientTlsConfig::connect`].
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Default bound on TCP connect + TLS handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// System CA bundles tried (after `SSL_CERT_FILE`) when no CA is given.
pub const SYSTEM_CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Why a TLS configuration could not be built or a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {}: {source}", .path.display())]
    ReadCa { path: PathBuf, source: io::Error },
    #[error("invalid CA PEM{}: {reason}", describe_path(.path.as_deref()))]
    InvalidCa {
        path: Option<PathBuf>,
        reason: String,
    },
    #[error(
        "no CA certificates to trust: pass the server's CA PEM (e.g. <data-dir>/certs/ca.pem); \
         no system bundle found (SSL_CERT_FILE unset, none of {SYSTEM_CA_BUNDLES:?} readable)"
    )]
    NoSystemRoots,
    #[error("TLS configuration error: {0}")]
    Config(#[from] rustls::Error),
    #[error("invalid TLS server name '{0}'")]
    InvalidServerName(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake { addr: String, source: io::Error },
    #[error("connecting to {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
}

fn describe_path(path: Option<&Path>) -> String {
    match path {
        Some(p) => format!(" in {}", p.display()),
        None => String::new(),
    }
}

/// Parses every `CERTIFICATE` block of a PEM bundle into a root store.
///
/// Fails if the PEM is malformed, contains no certificate, or a certificate is not a
/// usable trust anchor.
pub fn load_ca_pem(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| invalid_ca(None, e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| invalid_ca(None, e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid_ca(None, "no CERTIFICATE block found".into()));
    }
    Ok(roots)
}

fn invalid_ca(path: Option<&Path>, reason: String) -> TlsError {
    TlsError::InvalidCa {
        path: path.map(Path::to_path_buf),
        reason,
    }
}

/// Reads a CA PEM file into a root store.
pub fn load_ca_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadCa {
        path: path.to_path_buf(),
        source,
    })?;
    load_ca_pem(&pem).map_err(|e| match e {
        TlsError::InvalidCa { reason, .. } => invalid_ca(Some(path), reason),
        other => other,
    })
}

/// Loads the system CA bundle (`SSL_CERT_FILE`, then [`SYSTEM_CA_BUNDLES`]); unparsable
/// entries in a system bundle are skipped.
pub fn load_system_roots() -> Result<RootCertStore, TlsError> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates = env
        .into_iter()
        .chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from));
    for path in candidates {
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).flatten());
        if !roots.is_empty() {
            return Ok(roots);
        }
    }
    Err(TlsError::NoSystemRoots)
}

/// A rustls client config (ring provider, TLS 1.2 and 1.3, no client auth) trusting `roots`.
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Client TLS settings shared by the HTTPS client, the MQTT transport and the provisioning
/// client: the rustls config, a connect timeout and optional address overrides (like
/// `curl --resolve`: dial another address but verify the certificate for the host name).
///
/// Cheap to clone.
#[derive(Clone)]
pub struct ClientTlsConfig {
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
    overrides: Arc<HashMap<String, String>>,
}

impl fmt::Debug for ClientTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("overrides", &self.overrides)
            .field("resumption", &self.config.resumption)
            .finish_non_exhaustive()
    }
}

impl ClientTlsConfig {
    /// Trusts the CA certificates in `ca_file`, or the system bundle when `None`.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        match ca_file {
            Some(path) => Self::with_ca_file(path),
            None => Self::with_system_roots(),
        }
    }

    /// Trusts the certificates of a PEM bundle given as bytes.
    pub fn with_ca_pem(pem: impl AsRef<[u8]>) -> Result<Self, TlsError> {
        Ok(Self::from_rustls(Arc::new(client_config(load_ca_pem(
            pem.as_ref(),
        )?)?)))
    }

    /// Trusts the certificates of a PEM file.
    pub fn with_ca_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        Ok(Self::from_rustls(Arc::new(client_config(load_ca_file(
            path.as_ref(),
        )?)?)))
    }

    /// Trusts the system CA bundle (see [`load_system_roots`]).
    pub fn with_system_roots() -> Result<Self, TlsError> {
        Ok(Self::from_rustls(Arc::new(client_config(
            load_system_roots()?,
        )?)))
    }

    /// Wraps an existing rustls config (ALPN, client certs, ... are the caller's business).
    pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
        ClientTlsConfig {
            config,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            overrides: Arc::new(HashMap::new()),
        }
    }

    /// Disables TLS session resumption (tickets and session IDs), so that every connection
    /// makes a full handshake (what a fleet of fresh devices does; used by the benchmark).
    pub fn without_resumption(mut self) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = Resumption::disabled();
        self.config = Arc::new(config);
        self
    }

    /// Bounds TCP connect + TLS handshake (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Dials `address` (an IP or host name) whenever `host` is asked for, while still
    /// sending SNI and verifying the certificate for `host`.
    pub fn with_address_override(
        mut self,
        host: impl Into<String>,
        address: impl Into<String>,
    ) -> Self {
        Arc::make_mut(&mut self.overrides).insert(host.into().to_ascii_lowercase(), address.into());
        self
    }

    /// The connect timeout in force.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The underlying rustls config.
    pub fn rustls_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Connects to `host:port` and completes a TLS handshake verifying `host`.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TlsStream, TlsError> {
        let host = strip_brackets(host);
        let dial = self
            .overrides
            .get(&host.to_ascii_lowercase())
            .map_or(host, String::as_str);
        connect(self, dial, port, host).await
    }
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Dials `host:port` over TCP (no Nagle) and completes a TLS handshake for `server_name`,
/// all within `tls.connect_timeout()`. Address overrides are not applied here.
pub async fn connect(
    tls: &ClientTlsConfig,
    host: &str,
    port: u16,
    server_name: &str,
) -> Result<TlsStream, TlsError> {
    let host = strip_brackets(host);
    let name = ServerName::try_from(strip_brackets(server_name).to_string())
        .map_err(|_| TlsError::InvalidServerName(server_name.to_string()))?;
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let after = tls.connect_timeout;
    let connector = TlsConnector::from(tls.config.clone());
    let attempt = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|source| TlsError::Connect {
                addr: addr.clone(),
                source,
            })?;
        // Small request/response packets: latency matters more than coalescing.
        let _ = tcp.set_nodelay(true);
        connector
            .connect(name, tcp)
            .await
            .map_err(|source| TlsError::Handshake {
                addr: addr.clone(),
                source,
            })
    };
    match tokio::time::timeout(after, attempt).await {
        Ok(result) => result,
        Err(_) => Err(TlsError::Timeout { addr, after }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestPki;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn rejects_garbage_and_empty_pem() {
        assert!(matches!(
            ClientTlsConfig::with_ca_pem("not a pem"),
            Err(TlsError::InvalidCa { .. })
        ));
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            ClientTlsConfig::with_ca_pem(bad),
            Err(TlsError::InvalidCa { .. })
        ));
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let err = ClientTlsConfig::with_ca_file("/nonexistent/ca.pem").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn without_resumption_disables_tickets() {
        let pki = TestPki::new();
        let tls = pki.client_tls().without_resumption();
        assert!(format!("{:?}", tls.rustls_config().resumption).contains("Disabled"));
    }

    #[tokio::test]
    async fn handshake_against_local_server_and_override() {
        let pki = TestPki::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = pki.acceptor();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let mut buf = [0u8; 4];
                tls.read_exact(&mut buf).await.unwrap();
                tls.write_all(&buf).await.unwrap();
                tls.shutdown().await.unwrap();
            }
        });
        // Certificate names: localhost and 127.0.0.1.
        let tls = pki.client_tls();
        let mut s = tls.connect("127.0.0.1", port).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        // Override: dial 127.0.0.1, verify "localhost".
        let tls = tls.with_address_override("LOCALHOST", "127.0.0.1");
        let mut s = tls.connect("localhost", port).await.unwrap();
        s.write_all(b"pong").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn unknown_issuer_is_a_handshake_error() {
        let pki = TestPki::new();
        let other = TestPki::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = pki.acceptor();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        });
        let err = other
            .client_tls()
            .connect("127.0.0.1", port)
            .await
            .unwrap_err();
        assert!(matches!(err, TlsError::Handshake { .. }), "{err}");
    }

    #[tokio::test]
    async fn connect_refused_and_timeout_are_reported() {
        let pki = TestPki::new();
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = pki
            .client_tls()
            .connect("127.0.0.1", port)
            .await
            .unwrap_err();
        assert!(matches!(err, TlsError::Connect { .. }), "{err}");

        // A listener that never answers the handshake.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _keep = tokio::spawn(async move {
            let (_tcp, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let tls = pki
            .client_tls()
            .with_connect_timeout(Duration::from_millis(200));
        let err = tls.connect("127.0.0.1", port).await.unwrap_err();
        assert!(matches!(err, TlsError::Timeout { .. }), "{err}");
    }
}

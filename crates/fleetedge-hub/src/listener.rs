//! Module-facing listeners: TCP + TLS (1.2 and 1.3, ring) with the server identity the
//! daemon issued from its edge CA; each accepted connection runs a [`crate::session`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::EdgeHubError;
use crate::hub::Hub;

/// Bound on the TLS handshake of a new connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls server configuration from PEM text.
pub fn server_config(chain_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, EdgeHubError> {
    let tls = |m: String| EdgeHubError::Tls(m);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls(format!("invalid server certificate chain PEM: {e}")))?;
    if chain.is_empty() {
        return Err(tls(
            "the server certificate chain PEM has no CERTIFICATE".into()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| tls(format!("invalid server private key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls(format!("server certificate and key do not fit: {e}")))?;
    Ok(Arc::new(config))
}

pub(crate) async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, EdgeHubError> {
    let mut out = Vec::new();
    for addr in addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| EdgeHubError::Listen {
                addr: *addr,
                source,
            })?;
        out.push(l);
    }
    Ok(out)
}

pub(crate) async fn accept_loop(hub: Arc<Hub>, listener: TcpListener, tls: Arc<ServerConfig>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("edge hub: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => crate::session::serve(hub, stream, peer).await,
                Ok(Err(e)) => tracing::info!(%peer, "edge hub: TLS handshake failed: {e}"),
                Err(_) => tracing::info!(%peer, "edge hub: TLS handshake timed out"),
            }
        });
    }
}

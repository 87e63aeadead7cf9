//! rustls server configuration (TLS 1.2 and 1.3: the Python device SDK speaks TLS 1.2 only).

use anyhow::{Context, Result, anyhow};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::path::Path;
use std::sync::Arc;

pub fn server_config(cert_chain: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_chain)
        .with_context(|| format!("cannot read certificate chain {}", cert_chain.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert_chain.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{} holds no certificate", cert_chain.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "cannot read private key {} (PEM, PKCS#8/SEC1/PKCS#1)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate does not match the private key")?;
    Ok(Arc::new(cfg))
}

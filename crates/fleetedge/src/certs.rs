//! The edge CA (ECDSA P-256, generated once in `<homedir>/certs`) and the edge hub's server
//! certificate it issues (SANs: the configured `hostname`, localhost, 127.0.0.1, ::1).
//! Modules trust the edge CA through the workload API's trust bundle.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};

use crate::state::{StateDir, write_private};

const CA_DAYS: u64 = 90 * 4;
const SERVER_DAYS: u64 = 90;

/// The PEM material the daemon hands to the edge hub and the workload API.
#[derive(Clone)]
pub struct EdgePki {
    pub ca_pem: String,
    /// Server certificate followed by the edge CA.
    pub server_chain_pem: String,
    pub server_key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the edge hub certificate does not chain to the edge CA: {0}")]
    Chain(String),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn ca_params(device_id: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, format!("fleetedge CA {device_id}"));
    p.distinguished_name
        .push(DnType::OrganizationName, "fleetedge");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = (SystemTime::now() - Duration::from_hours(24)).into();
    p.not_after = (SystemTime::now() + Duration::from_secs(CA_DAYS * 86400)).into();
    Ok(p)
}

/// The SAN list for `hostname`.
pub fn server_names(hostname: &str) -> Vec<String> {
    let mut names = vec![hostname.to_string()];
    for n in ["localhost", "127.0.0.1", "::1"] {
        names.push(n.to_string());
    }
    names.dedup();
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// The stored edge CA: its PEM, its key and the issuer rcgen signs with. The issuer is built
/// from the stored certificate (its subject, key identifier and validity), never from the
/// current device id: a re-provisioned device keeps one chain.
struct StoredCa {
    pem: String,
    key: KeyPair,
    issuer: rcgen::Certificate,
}

fn load_ca(cert_path: &Path, key_path: &Path) -> Result<StoredCa, String> {
    let pem = std::fs::read_to_string(cert_path)
        .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?;
    let key_pem = std::fs::read_to_string(key_path)
        .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("the CA key: {e}"))?;
    let params = CertificateParams::from_ca_cert_pem(&pem)
        .map_err(|e| format!("the CA certificate: {e}"))?;
    let issuer = params
        .self_signed(&key)
        .map_err(|e| format!("the CA certificate: {e}"))?;
    Ok(StoredCa { pem, key, issuer })
}

fn generate_ca(device_id: &str, cert_path: &Path, key_path: &Path) -> Result<StoredCa, CertError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = ca_params(device_id)?.self_signed(&key)?;
    write_private(key_path, key.serialize_pem().as_bytes()).map_err(io(key_path))?;
    std::fs::write(cert_path, cert.pem()).map_err(io(cert_path))?;
    tracing::info!(path = %cert_path.display(), "generated the edge CA");
    Ok(StoredCa {
        pem: cert.pem(),
        key,
        issuer: cert,
    })
}

/// The edge hub's server certificate for `hostname`, issued by `ca`; returns (cert PEM, key).
fn issue_server(ca: &StoredCa, hostname: &str) -> Result<(String, KeyPair), CertError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, hostname);
    p.subject_alt_names = server_names(hostname)
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    p.not_before = (SystemTime::now() - Duration::from_hours(1)).into();
    p.not_after = (SystemTime::now() + Duration::from_secs(SERVER_DAYS * 86400)).into();
    let cert = p.signed_by(&key, &ca.issuer, &ca.key)?;
    Ok((cert.pem(), key))
}

/// Loads the stored edge CA (or creates one named after `device_id` when there is none, or
/// when the stored one is unusable: unreadable, expired, or not matching its key) and issues
/// a fresh server certificate for `hostname` from it. The issued chain is verified before it
/// is used, so a server certificate that does not chain to the stored CA is never served.
pub fn ensure(state: &StateDir, device_id: &str, hostname: &str) -> Result<EdgePki, CertError> {
    let dir = state.certs_dir();
    crate::state::create_private_dir(&dir).map_err(io(&dir))?;
    let ca_cert_path = state.edge_ca_cert();
    let ca_key_path = state.edge_ca_key();
    let stored = if ca_cert_path.exists() || ca_key_path.exists() {
        match load_ca(&ca_cert_path, &ca_key_path) {
            Ok(ca) => Some(ca),
            Err(reason) => {
                tracing::warn!(%reason, "the stored edge CA is unusable; generating a new one");
                None
            }
        }
    } else {
        None
    };
    let mut ca = match stored {
        Some(ca) => ca,
        None => generate_ca(device_id, &ca_cert_path, &ca_key_path)?,
    };
    let (mut server_pem, mut key) = issue_server(&ca, hostname)?;
    if let Err(reason) = verify_chain(&ca.pem, &server_pem, hostname) {
        tracing::warn!(%reason, "the edge hub certificate does not chain to the stored edge CA; generating a new CA");
        ca = generate_ca(device_id, &ca_cert_path, &ca_key_path)?;
        (server_pem, key) = issue_server(&ca, hostname)?;
        verify_chain(&ca.pem, &server_pem, hostname).map_err(CertError::Chain)?;
    }
    let server_chain_pem = format!("{server_pem}{}", ca.pem);
    let server_path = state.edge_hub_server_cert();
    std::fs::write(&server_path, &server_chain_pem).map_err(io(&server_path))?;
    Ok(EdgePki {
        ca_pem: ca.pem,
        server_chain_pem,
        server_key_pem: key.serialize_pem(),
    })
}

/// The trust bundle the workload API hands to modules: the edge CA, then the configured
/// `trust_bundle_cert` (when readable).
pub fn module_trust_bundle(edge_ca_pem: &str, trust_bundle_cert: Option<&Path>) -> String {
    let mut pem = edge_ca_pem.to_string();
    if let Some(p) = trust_bundle_cert
        && let Ok(extra) = std::fs::read_to_string(p)
    {
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        pem.push_str(&extra);
    }
    pem
}

/// Verifies that `chain_pem` (server certificate first, then any intermediates) is a valid
/// TLS server chain for `name` under the roots in `roots_pem`, as a module's TLS client
/// (rustls/webpki) checks it.
pub fn verify_chain(roots_pem: &str, chain_pem: &str, name: &str) -> Result<(), String> {
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        let c = c.map_err(|e| format!("the trust bundle is not valid PEM: {e}"))?;
        roots
            .add(c)
            .map_err(|e| format!("the trust bundle holds an unusable certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the trust bundle holds no certificate".into());
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the server certificate is not valid PEM: {e}"))?;
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err("the server certificate file holds no certificate".into());
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let server_name =
        ServerName::try_from(name.to_string()).map_err(|e| format!("'{name}': {e}"))?;
    // The chain file ends with the CA itself; webpki ignores a trust anchor among the
    // intermediates.
    verifier
        .verify_server_cert(
            end_entity,
            intermediates,
            &server_name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_kept_and_server_names_cover_the_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let a = ensure(&state, "edge-1", "gw.local").unwrap();
        let b = ensure(&state, "edge-1", "10.0.0.5").unwrap();
        assert_eq!(a.ca_pem, b.ca_pem, "same CA across starts");
        assert!(a.server_chain_pem.ends_with(&a.ca_pem));
        assert_eq!(
            server_names("10.0.0.5"),
            vec!["10.0.0.5", "localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(server_names("localhost").len(), 3);
        // the chain verifies against the CA with rustls' webpki
        let roots = fleethub_device::tls::load_ca_pem(a.ca_pem.as_bytes()).unwrap();
        assert_eq!(roots.len(), 1);
    }

    #[test]
    fn reprovisioning_under_another_device_id_keeps_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let a = ensure(&state, "device-a", "gw.local").unwrap();
        verify_chain(&a.ca_pem, &a.server_chain_pem, "gw.local").unwrap();
        // manual -> DPS: the same state directory, another device id
        let b = ensure(&state, "device-b", "gw.local").unwrap();
        assert_eq!(a.ca_pem, b.ca_pem, "the stored CA is kept");
        verify_chain(&b.ca_pem, &b.server_chain_pem, "gw.local").unwrap();
        verify_chain(&a.ca_pem, &b.server_chain_pem, "localhost").unwrap();
        let on_disk = std::fs::read_to_string(state.edge_hub_server_cert()).unwrap();
        assert_eq!(on_disk, b.server_chain_pem);
        assert!(
            verify_chain(&b.ca_pem, &b.server_chain_pem, "other.host").is_err(),
            "a name outside the SANs fails"
        );
    }

    #[test]
    fn an_issuer_named_after_another_device_is_caught() {
        // What the old code did: sign with the stored key under a subject built from the
        // new device id. The chain check must fail for it.
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let a = ensure(&state, "device-a", "gw.local").unwrap();
        let key =
            KeyPair::from_pem(&std::fs::read_to_string(state.edge_ca_key()).unwrap()).unwrap();
        let wrong = StoredCa {
            pem: a.ca_pem.clone(),
            issuer: ca_params("device-b").unwrap().self_signed(&key).unwrap(),
            key,
        };
        let (server, _) = issue_server(&wrong, "gw.local").unwrap();
        let e = verify_chain(&a.ca_pem, &format!("{server}{}", a.ca_pem), "gw.local").unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
    }

    #[test]
    fn a_ca_that_does_not_match_its_key_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let a = ensure(&state, "device-a", "gw.local").unwrap();
        // another key under the stored certificate
        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(state.edge_ca_key(), other.serialize_pem()).unwrap();
        let b = ensure(&state, "device-a", "gw.local").unwrap();
        assert_ne!(a.ca_pem, b.ca_pem, "a new CA");
        verify_chain(&b.ca_pem, &b.server_chain_pem, "gw.local").unwrap();
        assert_eq!(
            std::fs::read_to_string(state.edge_ca_cert()).unwrap(),
            b.ca_pem
        );
        // a garbled CA file is replaced too
        std::fs::write(state.edge_ca_cert(), "not a certificate").unwrap();
        let c = ensure(&state, "device-a", "gw.local").unwrap();
        verify_chain(&c.ca_pem, &c.server_chain_pem, "gw.local").unwrap();
    }
}

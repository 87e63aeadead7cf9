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
    p.not_before = (SystemTime::now() - Duration::from_secs(86400)).into();
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

/// Loads (or creates) the edge CA and issues a fresh server certificate for `hostname`.
pub fn ensure(state: &StateDir, device_id: &str, hostname: &str) -> Result<EdgePki, CertError> {
    let dir = state.certs_dir();
    crate::state::create_private_dir(&dir).map_err(io(&dir))?;
    let ca_cert_path = state.edge_ca_cert();
    let ca_key_path = dir.join("edge-ca.key");
    let ca_key = match (
        std::fs::read_to_string(&ca_key_path),
        std::fs::read_to_string(&ca_cert_path),
    ) {
        (Ok(k), Ok(_)) => KeyPair::from_pem(&k)?,
        _ => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let cert = ca_params(device_id)?.self_signed(&key)?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes())
                .map_err(io(&ca_key_path))?;
            std::fs::write(&ca_cert_path, cert.pem()).map_err(io(&ca_cert_path))?;
            tracing::info!(path = %ca_cert_path.display(), "generated the edge CA");
            key
        }
    };
    let ca_pem = std::fs::read_to_string(&ca_cert_path).map_err(io(&ca_cert_path))?;
    let issuer = ca_params(device_id)?.self_signed(&ca_key)?;

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
    p.not_before = (SystemTime::now() - Duration::from_secs(3600)).into();
    p.not_after = (SystemTime::now() + Duration::from_secs(SERVER_DAYS * 86400)).into();
    let cert = p.signed_by(&key, &issuer, &ca_key)?;
    let server_chain_pem = format!("{}{}", cert.pem(), ca_pem);
    let server_path = dir.join("edge-hub-server.pem");
    std::fs::write(&server_path, &server_chain_pem).map_err(io(&server_path))?;
    Ok(EdgePki {
        ca_pem,
        server_chain_pem,
        server_key_pem: key.serialize_pem(),
    })
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
}

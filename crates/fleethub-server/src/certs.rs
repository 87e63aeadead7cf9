//! The development PKI in the data directory: an ECDSA P-256 CA and a server certificate whose
//! SANs cover the configured host names. Generated on first start, reused afterwards; the
//! server certificate is re-issued (by the same CA) when the names change or it nears expiry.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const CA_DAYS: u64 = 3650;
const SERVER_DAYS: u64 = 825;
const RENEW_BEFORE_DAYS: u64 = 30;

/// Names every generated server certificate carries besides the configured ones.
pub const ALWAYS_IN_CERTIFICATE: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const META_FILE: &str = "server.meta.json";

/// Paths of the PEM files the listeners use.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: Option<PathBuf>,
    pub cert_chain: PathBuf,
    pub key: PathBuf,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct ServerMeta {
    sans: Vec<String>,
    not_after_unix: u64,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "fleethub development CA");
    dn.push(DnType::OrganizationName, "fleethub");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = (SystemTime::now() - Duration::from_hours(24)).into();
    p.not_after = (SystemTime::now() + Duration::from_secs(CA_DAYS * 86400)).into();
    Ok(p)
}

/// Writes a file readable by the owner only.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The names the development server certificate under `dir` was issued for, if there is one.
pub fn issued_names(dir: &Path) -> Option<Vec<String>> {
    let meta: ServerMeta =
        serde_json::from_slice(&std::fs::read(dir.join(META_FILE)).ok()?).ok()?;
    Some(meta.sans)
}

/// Makes sure the development CA and a server certificate for `names` exist under `dir`.
pub fn ensure_dev_pki(dir: &Path, names: &[String]) -> Result<TlsFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca_cert_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let server_path = dir.join("server.pem");
    let server_key_path = dir.join("server.key");
    let meta_path = dir.join(META_FILE);

    let ca_key = if ca_key_path.exists() && ca_cert_path.exists() {
        let pem = std::fs::read_to_string(&ca_key_path)?;
        KeyPair::from_pem(&pem)
            .with_context(|| format!("{} is not a valid key", ca_key_path.display()))?
    } else {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&ca_cert_path, cert.pem())?;
        tracing::info!(path = %ca_cert_path.display(), "generated development CA");
        key
    };
    // The issuer object only contributes its name and key to the signature.
    let issuer = ca_params()?.self_signed(&ca_key)?;

    let mut sans: Vec<String> = names.to_vec();
    for n in ALWAYS_IN_CERTIFICATE {
        sans.push(n.to_string());
    }
    sans.sort();
    sans.dedup();
    let meta: Option<ServerMeta> = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let fresh = meta.as_ref().is_some_and(|m| {
        m.sans == sans && m.not_after_unix > unix(SystemTime::now()) + RENEW_BEFORE_DAYS * 86400
    });
    if !(fresh && server_path.exists() && server_key_path.exists()) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("localhost", String::as_str),
        );
        p.subject_alt_names = sans
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
        let not_after = SystemTime::now() + Duration::from_secs(SERVER_DAYS * 86400);
        p.not_before = (SystemTime::now() - Duration::from_hours(24)).into();
        p.not_after = not_after.into();
        let cert = p.signed_by(&key, &issuer, &ca_key)?;
        let ca_pem = std::fs::read_to_string(&ca_cert_path)?;
        std::fs::write(&server_path, format!("{}{}", cert.pem(), ca_pem))?;
        write_private(&server_key_path, key.serialize_pem().as_bytes())?;
        let m = ServerMeta {
            sans: sans.clone(),
            not_after_unix: unix(not_after),
        };
        std::fs::write(&meta_path, serde_json::to_vec_pretty(&m)?)?;
        tracing::info!(sans = ?sans, "issued server certificate");
    }
    Ok(TlsFiles {
        ca_cert: Some(ca_cert_path),
        cert_chain: server_path,
        key: server_key_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_reissued_when_names_change() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["hub.fleethub.test".to_string()];
        let a = ensure_dev_pki(dir.path(), &names).unwrap();
        let ca1 = std::fs::read(a.ca_cert.as_ref().unwrap()).unwrap();
        let s1 = std::fs::read(&a.cert_chain).unwrap();
        let b = ensure_dev_pki(dir.path(), &names).unwrap();
        assert_eq!(std::fs::read(&b.cert_chain).unwrap(), s1, "reused");
        let c = ensure_dev_pki(dir.path(), &["other.test".to_string()]).unwrap();
        assert_ne!(std::fs::read(&c.cert_chain).unwrap(), s1, "reissued");
        assert_eq!(std::fs::read(c.ca_cert.unwrap()).unwrap(), ca1, "same CA");
        for k in ["ca.key", "server.key"] {
            let mode = std::fs::metadata(dir.path().join(k))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{k}");
        }
    }
}

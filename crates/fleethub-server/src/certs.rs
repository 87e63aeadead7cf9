//! The server PKI in the data directory: a server certificate whose SANs cover the configured
//! host names, issued by the development CA (an ECDSA P-256 CA generated in the data directory
//! on first start) or by an operator's CA (`ca_cert`/`ca_key`, so that several servers share
//! one trust anchor). Reused across starts; re-issued when the names or the issuing CA change
//! or it nears expiry.
//!
//! Every development CA has its own subject (`CN=fleethub development CA <random id>`) and every
//! certificate carries subject and authority key identifiers, so a device given a bundle of
//! several servers' CAs finds the right issuer (docs/protocol-notes.md, "Trust across hubs").

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

/// An operator's CA (PEM certificate and its private key) that issues the server certificate.
#[derive(Debug, Clone, Copy)]
pub struct OperatorCa<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct ServerMeta {
    sans: Vec<String>,
    not_after_unix: u64,
    /// The issuing CA certificate (PEM) the server certificate was signed by; a different CA
    /// re-issues it. Empty in files written before it was recorded.
    #[serde(default)]
    issuer_pem: String,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The subject common name of a new development CA: unique per CA, so that certificate stores
/// holding several servers' CAs tell them apart.
fn dev_ca_common_name() -> String {
    format!("fleethub development CA {:016x}", rand::random::<u64>())
}

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, dev_ca_common_name());
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
    // Self-signed: the authority key identifier repeats the subject key identifier.
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// The issuer of the server certificate: the CA certificate's own subject and key identifier
/// (read from the PEM, so that the issued certificate's issuer name and AKI match it exactly),
/// and its key.
fn load_issuer(cert_path: &Path, key_path: &Path) -> Result<(rcgen::Certificate, KeyPair, String)> {
    let cert_pem = std::fs::read_to_string(cert_path)
        .with_context(|| format!("cannot read CA certificate {}", cert_path.display()))?;
    let key_pem = std::fs::read_to_string(key_path)
        .with_context(|| format!("cannot read CA key {}", key_path.display()))?;
    let key = KeyPair::from_pem(&key_pem)
        .with_context(|| format!("{} is not a valid private key (PEM)", key_path.display()))?;
    let params = CertificateParams::from_ca_cert_pem(&cert_pem)
        .with_context(|| format!("{} is not a PEM CA certificate", cert_path.display()))?;
    if !matches!(params.is_ca, IsCa::Ca(_)) {
        anyhow::bail!(
            "{} is not a CA certificate (basicConstraints CA:TRUE is missing)",
            cert_path.display()
        );
    }
    // The object only contributes its name, key identifier and key to the signature.
    let issuer = params.self_signed(&key)?;
    Ok((issuer, key, cert_pem))
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

/// Makes sure the development CA exists under `dir` (generated when missing); returns the
/// paths of its certificate and key.
pub fn ensure_dev_ca(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    if !(key.exists() && cert.exists()) {
        let k = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let c = ca_params()?.self_signed(&k)?;
        write_private(&key, k.serialize_pem().as_bytes())?;
        std::fs::write(&cert, c.pem())?;
        tracing::info!(path = %cert.display(), "generated development CA");
    }
    Ok((cert, key))
}

/// Makes sure the development CA and a server certificate for `names` exist under `dir`.
pub fn ensure_dev_pki(dir: &Path, names: &[String]) -> Result<TlsFiles> {
    ensure_pki(dir, names, None)
}

/// Makes sure a server certificate for `names` exists under `dir`, issued by `operator_ca` or,
/// without one, by the development CA under `dir` (generated when missing).
pub fn ensure_pki(
    dir: &Path,
    names: &[String],
    operator_ca: Option<OperatorCa<'_>>,
) -> Result<TlsFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let server_path = dir.join("server.pem");
    let server_key_path = dir.join("server.key");
    let meta_path = dir.join(META_FILE);

    let (ca_cert_path, ca_key_path) = if let Some(ca) = operator_ca {
        (ca.cert.to_path_buf(), ca.key.to_path_buf())
    } else {
        ensure_dev_ca(dir)?
    };
    let (issuer, ca_key, ca_pem) = load_issuer(&ca_cert_path, &ca_key_path)?;

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
        m.sans == sans
            && m.issuer_pem == ca_pem
            && m.not_after_unix > unix(SystemTime::now()) + RENEW_BEFORE_DAYS * 86400
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
        // basicConstraints CA:FALSE and the subject key identifier; the authority key
        // identifier names the issuing CA's key.
        p.is_ca = IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];
        let not_after = SystemTime::now() + Duration::from_secs(SERVER_DAYS * 86400);
        p.not_before = (SystemTime::now() - Duration::from_hours(24)).into();
        p.not_after = not_after.into();
        let cert = p.signed_by(&key, &issuer, &ca_key)?;
        std::fs::write(&server_path, format!("{}{}", cert.pem(), ca_pem))?;
        write_private(&server_key_path, key.serialize_pem().as_bytes())?;
        let m = ServerMeta {
            sans: sans.clone(),
            not_after_unix: unix(not_after),
            issuer_pem: ca_pem.clone(),
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

    /// `openssl verify -CAfile bundle cert` (OpenSSL, as the C, Python and Node SDKs use it).
    fn openssl_verify(bundle: &Path, chain: &Path) -> (bool, String) {
        let pem = std::fs::read_to_string(chain).unwrap();
        let end = pem.find("-----END CERTIFICATE-----").unwrap() + 25;
        let leaf = chain.with_extension("leaf.pem");
        std::fs::write(&leaf, &pem[..end]).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", "-CAfile"])
            .arg(bundle)
            .arg(&leaf)
            .output()
            .expect("openssl (the CLI) must be installed for this test");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    #[test]
    fn a_bundle_of_two_development_cas_verifies_both_servers() {
        let root = tempfile::tempdir().unwrap();
        let names = vec!["hub.fleethub.test".to_string()];
        let a = ensure_dev_pki(&root.path().join("a"), &names).unwrap();
        let b = ensure_dev_pki(&root.path().join("b"), &names).unwrap();
        let (ca_a, ca_b) = (
            std::fs::read_to_string(a.ca_cert.unwrap()).unwrap(),
            std::fs::read_to_string(b.ca_cert.unwrap()).unwrap(),
        );
        let subject = |pem: &str| {
            CertificateParams::from_ca_cert_pem(pem)
                .unwrap()
                .distinguished_name
                .get(&DnType::CommonName)
                .cloned()
        };
        assert_ne!(subject(&ca_a), subject(&ca_b), "distinct CA subjects");
        let bundle = root.path().join("bundle.pem");
        for order in [[&ca_a, &ca_b], [&ca_b, &ca_a]] {
            std::fs::write(&bundle, format!("{}{}", order[0], order[1])).unwrap();
            for chain in [&a.cert_chain, &b.cert_chain] {
                let (ok, out) = openssl_verify(&bundle, chain);
                assert!(ok, "{}: {out}", chain.display());
            }
        }
        // The server certificate names its issuer's key (AKI) and carries basicConstraints
        // CA:FALSE with its own SKI.
        let text = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&a.cert_chain)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("Subject Key Identifier"), "{text}");
        assert!(text.contains("Authority Key Identifier"), "{text}");
        assert!(text.contains("CA:FALSE"), "{text}");
    }

    #[test]
    fn an_operator_ca_issues_the_server_certificates_of_several_servers() {
        let root = tempfile::tempdir().unwrap();
        // The operator's CA, made elsewhere (here: rcgen, with a subject of its own).
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = ca_params().unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, "Example Corp IoT CA");
        let ca = p.self_signed(&key).unwrap();
        let (ca_cert, ca_key) = (root.path().join("ca.pem"), root.path().join("ca.key"));
        std::fs::write(&ca_cert, ca.pem()).unwrap();
        write_private(&ca_key, key.serialize_pem().as_bytes()).unwrap();
        let op = OperatorCa {
            cert: &ca_cert,
            key: &ca_key,
        };

        // A server that ran with its development CA first: the operator CA re-issues.
        let dir1 = root.path().join("hub1");
        let dev = ensure_dev_pki(&dir1, &["hub1.fleethub.test".to_string()]).unwrap();
        let dev_chain = std::fs::read(&dev.cert_chain).unwrap();
        let s1 = ensure_pki(&dir1, &["hub1.fleethub.test".to_string()], Some(op)).unwrap();
        assert_ne!(
            std::fs::read(&s1.cert_chain).unwrap(),
            dev_chain,
            "re-issued"
        );
        assert_eq!(s1.ca_cert.as_deref(), Some(ca_cert.as_path()));
        let s2 = ensure_pki(
            &root.path().join("hub2"),
            &["hub2.fleethub.test".to_string()],
            Some(op),
        )
        .unwrap();
        for chain in [&s1.cert_chain, &s2.cert_chain] {
            let (ok, out) = openssl_verify(&ca_cert, chain);
            assert!(ok, "{}: {out}", chain.display());
        }
        // Reused on the next start with the same CA.
        let again = std::fs::read(&s2.cert_chain).unwrap();
        ensure_pki(
            &root.path().join("hub2"),
            &["hub2.fleethub.test".to_string()],
            Some(op),
        )
        .unwrap();
        assert_eq!(std::fs::read(&s2.cert_chain).unwrap(), again);

        // A certificate that is no CA is refused with a clear message.
        let e = ensure_pki(
            &root.path().join("hub3"),
            &["hub3.fleethub.test".to_string()],
            Some(OperatorCa {
                cert: &dir1.join("server.leaf.pem"),
                key: &ca_key,
            }),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a CA certificate"), "{e}");
    }
}

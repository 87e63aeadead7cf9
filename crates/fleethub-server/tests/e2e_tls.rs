//! End-to-end: a user-supplied certificate replaces the development CA, and the server speaks
//! TLS 1.2 (the Python device SDK's only version) as well as 1.3.

mod common;

use fleethub_device::provisioning::{ProvisioningClient, Transport};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls_pki_types::pem::PemObject;
use std::process::Command;
use std::time::Duration;

fn user_pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "user CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.join("user-ca.pem"),
        dir.join("user.pem"),
        dir.join("user.key"),
    );
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_supplied_certificate_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = user_pki(tmp.path());
    let data = tmp.path().join("data");
    let mqtt = common::free_port();
    let https = common::free_port();
    let mut child = Command::new(common::bin())
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--mqtt-port",
            &mqtt.to_string(),
            "--https-port",
            &https.to_string(),
            "--amqp-port",
            &common::free_port().to_string(),
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let info = loop {
        if let Ok(i) = fleethub_server::info::ServerInfo::read(&data)
            && std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
        {
            break i;
        }
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !data.join("certs").join("ca.key").exists(),
        "no development CA when a certificate is supplied"
    );
    let reg = "tls-dev";
    let out = Command::new(common::bin())
        .args([
            "dps",
            "enrollment",
            "create",
            "--registration-id",
            reg,
            "--server",
            &format!("localhost:{https}"),
        ])
        .arg("--ca-cert")
        .arg(&ca)
        .args([
            "--dps-connection-string",
            &info.dps_service_connection_string,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = v["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let r = ProvisioningClient::builder()
        .global_endpoint("localhost")
        .port(https)
        .id_scope(&info.id_scope)
        .registration_id(reg)
        .symmetric_key(key)
        .transport(Transport::Https)
        .ca_pem_file(&ca)
        .build()
        .unwrap()
        .register()
        .await
        .unwrap();
    assert_eq!(r.status, "assigned");

    // TLS 1.2 only client (what the Python SDK does)
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", mqtt))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS 1.2 handshake");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let _ = child.kill();
    let _ = child.wait();
}

//! End-to-end: what the data directory keeps between starts and who may use it.

mod common;

use common::{ServerProcess, free_port};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `fleethub serve ARGS` that is expected to exit by itself within 30 s.
fn serve_expecting_exit(data_dir: &std::path::Path, args: &[&str]) -> Output {
    let mut child = Command::new(common::bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind", "127.0.0.1"])
        .args(["--amqp-port", &free_port().to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fleethub serve {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn second_server_on_the_same_data_directory_refuses_to_start() {
    let mut server = ServerProcess::start();
    let info_before = std::fs::read(server.data_dir.join("server-info.json")).unwrap();
    let (mqtt, https) = (free_port(), free_port());
    let out = serve_expecting_exit(
        &server.data_dir,
        &[
            "--mqtt-port",
            &mqtt.to_string(),
            "--https-port",
            &https.to_string(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second server started: {stderr}");
    assert!(
        stderr.contains("is in use by another `fleethub serve`")
            && stderr.contains(&format!("process {}", server.child.as_ref().unwrap().id())),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(server.data_dir.join("server-info.json")).unwrap(),
        info_before,
        "server-info.json of the running server left alone"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", mqtt)).is_err(),
        "the refused server never listened"
    );

    // kill -9 leaves the lock file behind; the lock itself went with the process.
    server.kill9();
    assert!(server.data_dir.join("fleethub.lock").exists());
    server.restart();
    let (ok, out, err) = server.cli(&["info", "--output", "json"]);
    assert!(ok, "{err}");
    assert!(out.contains(&server.info.id_scope));
    let (ok, out, err) = server.cli(&["info", "-o", "yaml"]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l == format!("idScope: {}", server.info.id_scope)),
        "{out}"
    );
}

fn plus<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
    [a, b].concat()
}

#[test]
fn host_names_are_kept_and_changed_only_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (mqtt, https) = (free_port(), free_port());
    let ports = [
        "--mqtt-port",
        &mqtt.to_string(),
        "--https-port",
        &https.to_string(),
    ]
    .map(String::from);
    let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
    let with = |extra: &[&'static str]| plus(&ports, extra);
    let cert = data.join("certs").join("server.pem");

    let mut first = ServerProcess::start_with(
        &data,
        mqtt,
        https,
        &[
            "--dps-hostname",
            "dps.fleethub.test",
            "--hub-hostname",
            "hub.fleethub.test",
            "--san",
            "10.9.8.7",
        ],
    );
    let issued = std::fs::read(&cert).unwrap();
    first.kill9();

    // A plain start: the same names, the same certificate.
    let mut plain = ServerProcess::start_with(&data, mqtt, https, &[]);
    assert_eq!(plain.info.dps_host, "dps.fleethub.test");
    assert_eq!(plain.info.hub_host, "hub.fleethub.test");
    assert!(
        plain
            .info
            .hub_service_connection_string
            .starts_with("HostName=hub.fleethub.test;")
    );
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        issued,
        "certificate not re-issued"
    );
    assert!(
        plain.log().contains("host names from the data directory"),
        "{}",
        plain.log()
    );
    plain.kill9();

    // Other names without asking: refused, nothing changed.
    let out = serve_expecting_exit(&data, &with(&["--hub-hostname", "hub2.fleethub.test"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("hub_hostname 'hub.fleethub.test' -> 'hub2.fleethub.test'")
            && stderr.contains("--change-hostnames"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        issued,
        "certificate left alone"
    );

    // Asked for: changed, re-issued, and said so.
    let changed = ServerProcess::start_with(
        &data,
        mqtt,
        https,
        &["--hub-hostname", "hub2.fleethub.test", "--change-hostnames"],
    );
    assert_eq!(changed.info.hub_host, "hub2.fleethub.test");
    assert_eq!(
        changed.info.dps_host, "dps.fleethub.test",
        "unchanged names kept"
    );
    assert_ne!(
        std::fs::read(&cert).unwrap(),
        issued,
        "certificate re-issued"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !changed.stdout().contains("host names changed on request") {
        assert!(Instant::now() < deadline, "stdout: {}", changed.stdout());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        changed.log().contains("host names changed"),
        "{}",
        changed.log()
    );
    let ca = changed.ca_pem();
    assert!(certificate_accepts(&ca, mqtt, "hub2.fleethub.test"));
    assert!(certificate_accepts(&ca, mqtt, "dps.fleethub.test"));
    assert!(
        certificate_accepts(&ca, mqtt, "10.9.8.7"),
        "extra name kept"
    );
    assert!(!certificate_accepts(&ca, mqtt, "hub.fleethub.test"));
}

/// Whether a TLS handshake on `port` that expects the server to be `name` succeeds.
fn certificate_accepts(ca: &std::path::Path, port: u16, name: &str) -> bool {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(
        std::sync::Arc::new(cfg),
        name.to_string().try_into().unwrap(),
    )
    .unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return false;
        }
    }
    true
}

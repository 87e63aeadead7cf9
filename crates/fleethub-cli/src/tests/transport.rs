//! The real transport against local sockets: the errors name the address and the flag to try.

use crate::client::ServiceClient;
use crate::settings::Endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed root whose private key was thrown away: trusted, never matches a server.
const TEST_ROOT: &str = include_str!("test-root-ca.pem");

fn endpoint(dial: String, ca: &std::path::Path) -> Endpoint {
    Endpoint {
        dial,
        ca_cert: Some(ca.to_path_buf()),
        host_name: "localhost".into(),
        ..super::fake::endpoint()
    }
}

async fn error_of(ep: Endpoint) -> String {
    let client = ServiceClient::new(crate::transport::connect(&ep).unwrap(), ep);
    format!("{:#}", client.get("/enrollments/x", &[]).await.unwrap_err())
}

fn ca_file() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), TEST_ROOT).unwrap();
    f
}

#[tokio::test]
async fn connection_refused_names_the_address_and_suggests_server() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ca = ca_file();
    let e = error_of(endpoint(format!("127.0.0.1:{port}"), ca.path())).await;
    assert!(
        e.starts_with(&format!(
            "cannot connect to 127.0.0.1:{port}: connection refused"
        )),
        "{e}"
    );
    assert!(e.contains("--server HOST:PORT"), "{e}");
}

#[tokio::test]
async fn tls_failure_suggests_ca_cert() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    });
    let ca = ca_file();
    let e = error_of(endpoint(addr.to_string(), ca.path())).await;
    assert!(
        e.starts_with(&format!(
            "TLS handshake with {addr} (server name localhost) failed"
        )),
        "{e}"
    );
    assert!(e.contains("--ca-cert"), "{e}");
}

#[test]
fn unreadable_ca_is_reported() {
    let ep = endpoint(
        "127.0.0.1:1".into(),
        std::path::Path::new("/nonexistent/ca.pem"),
    );
    let e = crate::transport::connect(&ep).err().unwrap().to_string();
    assert!(
        e.contains("/nonexistent/ca.pem") && e.contains("--ca-cert"),
        "{e}"
    );
}

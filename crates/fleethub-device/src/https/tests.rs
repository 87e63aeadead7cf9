use bytes::Bytes;
use http::{Method, Request};
use hyper_util::rt::TokioIo;

use super::request::host_only;
use super::*;
use crate::test_support::TestPki;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn url_splitting() {
    let r = HttpsRequest::get("https://dps.local:8443/a/b?x=1").unwrap();
    assert_eq!(
        (r.host.as_str(), r.path_and_query.as_str()),
        ("dps.local:8443", "/a/b?x=1")
    );
    let r = HttpsRequest::get("dps.local/a").unwrap();
    assert_eq!(
        (r.host.as_str(), r.path_and_query.as_str()),
        ("dps.local", "/a")
    );
    let r = HttpsRequest::get("HTTPS://dps.local").unwrap();
    assert_eq!(
        (r.host.as_str(), r.path_and_query.as_str()),
        ("dps.local", "/")
    );
    let r = HttpsRequest::get("dps.local?q=1").unwrap();
    assert_eq!(r.path_and_query, "/?q=1");
    assert!(HttpsRequest::get("http://dps.local/").is_err());
    assert!(HttpsRequest::get("https:///x").is_err());
    assert!(HttpsRequest::get("dps.local:0/x").is_err());
    assert!(HttpsRequest::get("dps.local:http/x").is_err());
    let r = HttpsRequest::from_parts(Method::GET, "h", "x");
    assert_eq!(r.path_and_query, "/x");
}

#[test]
fn host_port_splitting() {
    assert_eq!(split_host_port("h"), Ok(("h", 443)));
    assert_eq!(split_host_port("h:8443"), Ok(("h", 8443)));
    assert_eq!(split_host_port("[::1]:8443"), Ok(("::1", 8443)));
    assert_eq!(split_host_port("[::1]"), Ok(("::1", 443)));
    assert_eq!(split_host_port("::1"), Ok(("::1", 443)));
    assert!(split_host_port(":1").is_err());
    assert!(split_host_port("[::1").is_err());
    assert_eq!(host_only("[::1]:5"), "[::1]");
    assert_eq!(host_only("h:5"), "h");
}

#[test]
fn host_header_omits_default_port_and_bad_headers_fail() {
    let r = HttpsRequest::get("https://h:443/x").unwrap();
    assert_eq!(r.to_hyper(443).unwrap().headers()["host"], "h");
    let r = HttpsRequest::get("https://h:8443/x").unwrap();
    assert_eq!(r.to_hyper(8443).unwrap().headers()["host"], "h:8443");
    let r = HttpsRequest::get("h/x").unwrap().header("bad name", "v");
    assert!(matches!(
        r.to_hyper(443),
        Err(HttpsError::InvalidHeader { .. })
    ));
    let r = HttpsRequest::get("h/x")
        .unwrap()
        .header("x-a", "line\nbreak");
    assert!(matches!(
        r.to_hyper(443),
        Err(HttpsError::InvalidHeader { .. })
    ));
}

/// Echo server: answers with method, path, Host and body as JSON; counts connections.
/// `/close` answers with `Connection: close`, `/slow` sleeps 2 s.
async fn echo_server(pki: &TestPki) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = pki.acceptor();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    if parts.uri.path() == "/slow" {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    let json = serde_json::json!({
                        "method": parts.method.as_str(),
                        "path": parts.uri.to_string(),
                        "host": parts.headers.get("host").and_then(|v| v.to_str().ok()),
                        "auth": parts.headers.get("authorization").and_then(|v| v.to_str().ok()),
                        "contentType": parts.headers.get("content-type").and_then(|v| v.to_str().ok()),
                        "userAgent": parts.headers.get("user-agent").and_then(|v| v.to_str().ok()),
                        "body": String::from_utf8_lossy(&body),
                    });
                    let mut resp = http::Response::builder()
                        .status(if parts.uri.path() == "/missing" {
                            404
                        } else {
                            200
                        })
                        .header("content-type", "application/json");
                    if parts.uri.path() == "/close" {
                        resp = resp.header("connection", "close");
                    }
                    Ok::<_, std::convert::Infallible>(
                        resp.body(Full::new(Bytes::from(json.to_string()))).unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, conns)
}

#[tokio::test]
async fn requests_reuse_one_keep_alive_connection() {
    let pki = TestPki::new();
    let (port, conns) = echo_server(&pki).await;
    let client = HttpsClient::new(pki.client_tls());
    let host = format!("localhost:{port}");

    let resp = client
        .send(
            HttpsRequest::from_parts(Method::PUT, host.clone(), "/enrollments/d1?api-version=x")
                .header("Authorization", "SharedAccessSignature sr=a")
                .json(&serde_json::json!({"registrationId": "d1"}))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.is_success());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let v: serde_json::Value = resp.json().unwrap();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path"], "/enrollments/d1?api-version=x");
    assert_eq!(v["host"], host.as_str());
    assert_eq!(v["auth"], "SharedAccessSignature sr=a");
    assert_eq!(v["contentType"], "application/json; charset=utf-8");
    assert_eq!(v["userAgent"], crate::USER_AGENT);
    assert_eq!(v["body"], r#"{"registrationId":"d1"}"#);

    for _ in 0..3 {
        let resp = client
            .send(HttpsRequest::get(&format!("https://{host}/missing")).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status, 404);
        assert!(!resp.is_success());
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "keep-alive connection reused"
    );

    // Connection: close -> the next request opens a new connection.
    client
        .send(HttpsRequest::get(&format!("https://{host}/close")).unwrap())
        .await
        .unwrap();
    client
        .send(HttpsRequest::delete(&format!("https://{host}/x")).unwrap())
        .await
        .unwrap();
    assert_eq!(conns.load(Ordering::SeqCst), 2);

    // Concurrent requests open extra connections and still succeed.
    let client = Arc::new(client);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let client = client.clone();
        let url = format!("https://{host}/c/{i}");
        tasks.push(tokio::spawn(async move {
            client
                .send(HttpsRequest::post(&url).unwrap().body("x"))
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status, 200);
    }
}

#[tokio::test]
async fn timeout_and_tls_errors_are_reported() {
    let pki = TestPki::new();
    let (port, _) = echo_server(&pki).await;
    let client = HttpsClient::new(pki.client_tls()).with_timeout(Duration::from_millis(300));
    let err = client
        .send(HttpsRequest::get(&format!("https://127.0.0.1:{port}/slow")).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, HttpsError::Timeout { .. }), "{err}");

    let other = TestPki::new();
    let client = HttpsClient::new(other.client_tls());
    let err = client
        .send(HttpsRequest::get(&format!("https://127.0.0.1:{port}/")).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpsError::Tls(TlsError::Handshake { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn in_task_connection_reuses_one_connection_and_reopens_after_close() {
    let pki = TestPki::new();
    let (port, conns) = echo_server(&pki).await;
    let mut conn = InTaskConnection::new(pki.client_tls(), "localhost", port);
    let host = format!("localhost:{port}");

    let put = HttpsRequest::from_parts(Method::PUT, host.clone(), "/r/d1/register?api-version=x")
        .header("Authorization", "SharedAccessSignature sr=a")
        .json(&serde_json::json!({"registrationId": "d1"}))
        .unwrap();
    let resp = conn.send(&put).await.unwrap();
    assert_eq!(resp.status, 200);
    let v: serde_json::Value = resp.json().unwrap();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path"], "/r/d1/register?api-version=x");
    assert_eq!(v["host"], host.as_str());
    assert_eq!(v["auth"], "SharedAccessSignature sr=a");
    assert_eq!(v["body"], r#"{"registrationId":"d1"}"#);
    for i in 0..3 {
        let get = HttpsRequest::from_parts(Method::GET, host.clone(), format!("/r/d1/op/{i}"));
        let v: serde_json::Value = conn.send(&get).await.unwrap().json().unwrap();
        assert_eq!(v["path"], format!("/r/d1/op/{i}"));
    }
    let missing = HttpsRequest::from_parts(Method::GET, host.clone(), "/missing");
    assert_eq!(conn.send(&missing).await.unwrap().status, 404);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one keep-alive connection for every request"
    );

    // Connection: close -> the next request opens a new connection.
    let close = HttpsRequest::from_parts(Method::GET, host.clone(), "/close");
    assert_eq!(conn.send(&close).await.unwrap().status, 200);
    let v: serde_json::Value = conn.send(&put).await.unwrap().json().unwrap();
    assert_eq!(v["method"], "PUT");
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn in_task_connection_reports_tls_errors() {
    let pki = TestPki::new();
    let (port, _) = echo_server(&pki).await;
    let other = TestPki::new();
    let mut conn = InTaskConnection::new(other.client_tls(), "127.0.0.1", port);
    let req = HttpsRequest::from_parts(Method::GET, format!("127.0.0.1:{port}"), "/");
    let err = conn.send(&req).await.unwrap_err();
    assert!(
        matches!(err, HttpsError::Tls(TlsError::Handshake { .. })),
        "{err}"
    );
}

/// The server's side of one exchange: reads a request head, answers `200 {}`, then reads
/// to the end: `Ok` only when the client closed with a TLS `close_notify`.
async fn one_exchange_server(
    pki: &TestPki,
) -> (u16, tokio::task::JoinHandle<std::io::Result<usize>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = pki.acceptor();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "request head");
            head.extend_from_slice(&chunk[..n]);
        }
        tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).await
    });
    (port, server)
}

#[tokio::test]
async fn in_task_connection_closes_with_close_notify() {
    let pki = TestPki::new();
    let (port, server) = one_exchange_server(&pki).await;
    let mut conn = InTaskConnection::new(pki.client_tls(), "localhost", port);
    let req = HttpsRequest::from_parts(Method::GET, format!("localhost:{port}"), "/x");
    assert_eq!(conn.send(&req).await.unwrap().status, 200);
    conn.close().await;
    let end = server.await.unwrap();
    assert!(
        matches!(end, Ok(0)),
        "the server sees a clean TLS close: {end:?}"
    );
}

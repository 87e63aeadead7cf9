//! End-to-end: the web dashboard on the real server's HTTPS listener: served at `/ui/` by
//! default (sign-in with the hub owner connection string from `fleethub info`, a page behind the
//! session), Azure-style REST routes untouched, and `ui = false` turning it off.

mod common;

use common::ServerProcess;
use fleethub_device::ClientTlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one HTTP/1.1 request (connection closed after it); returns (status, head, body).
async fn request(server: &ServerProcess, req: &str) -> (u16, String, String) {
    let mut s = ClientTlsConfig::with_ca_file(server.ca_pem())
        .unwrap()
        .connect("localhost", server.https_port)
        .await
        .unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("a response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn get(path: &str, cookie: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
}

fn form_post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn the_dashboard_is_served_on_the_https_listener() {
    let server = ServerProcess::start();
    let (status, _, body) = request(&server, &get("/ui/login", "")).await;
    assert_eq!(status, 200);
    assert!(body.contains("Sign in"), "{body}");
    let (status, head, _) = request(&server, &get("/ui/devices", "")).await;
    assert_eq!(status, 303, "{head}");
    let cs = server.info.hub_service_connection_string.clone();
    let (status, head, _) = request(
        &server,
        &form_post("/ui/login", &format!("cs1={}", urlencode(&cs))),
    )
    .await;
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let (status, _, body) = request(&server, &get("/ui/devices", &cookie)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Devices"));
    // The REST API is untouched by the dashboard's routes.
    let (status, _, body) =
        request(&server, &get("/devices/none?api-version=2021-04-12", "")).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn ui_false_turns_the_dashboard_off() {
    let (server, _tmp) = ServerProcess::start_with_config("ui = false\n");
    let (status, _, _) = request(&server, &get("/ui/login", "")).await;
    assert_eq!(status, 404);
}

//! End-to-end on raw TLS bytes: the WebSocket endpoint's subprotocol selection and message bound,
//! HTTP/1 connection timeouts and limits, and the byte-exact spelling of response header names.

mod common;

use common::ServerProcess;
use fleethub_device::ClientTlsConfig;
use fleethub_device::tls::TlsStream;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw_tls(server: &ServerProcess) -> TlsStream {
    ClientTlsConfig::with_ca_file(server.ca_pem())
        .unwrap()
        .connect("localhost", server.https_port)
        .await
        .unwrap()
}

/// Reads one response head (up to and including the blank line), byte for byte.
async fn read_head(s: &mut TlsStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("response head in time")
            .unwrap();
        assert!(n == 1, "connection closed inside the head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A WebSocket upgrade request for the hub endpoint offering `protocols` (none when empty).
fn upgrade_request(protocols: &str) -> String {
    let offer = if protocols.is_empty() {
        String::new()
    } else {
        format!("Sec-WebSocket-Protocol: {protocols}\r\n")
    };
    format!(
        "GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
    )
}

async fn upgrade(server: &ServerProcess, protocols: &str) -> (TlsStream, String) {
    let mut s = raw_tls(server).await;
    s.write_all(upgrade_request(protocols).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    (s, head)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_needs_a_served_subprotocol_and_names_it() {
    let server = ServerProcess::start();
    for offered in ["", "amqpwsb10", "Mqtt"] {
        let (_s, head) = upgrade(&server, offered).await;
        assert!(
            head.starts_with("HTTP/1.1 400 "),
            "offer {offered:?} must be refused: {head}"
        );
    }
    for (offered, selected) in [
        ("mqtt", "mqtt"),
        ("MQTT", "MQTT"),
        ("AMQPWSB10, mqtt", "mqtt"),
        ("AMQPWSB10", "AMQPWSB10"),
    ] {
        let (_s, head) = upgrade(&server, offered).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{offered:?}: {head}");
        assert_eq!(
            header(&head, "sec-websocket-protocol"),
            Some(selected),
            "{offered:?}: {head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_websocket_frame_closes_the_connection() {
    let server = ServerProcess::start();
    let (mut s, head) = upgrade(&server, "mqtt").await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // A masked binary frame announcing 8 MiB (far above max_mqtt_packet_bytes): the server must
    // not wait for (and buffer) the payload, but close at once.
    let mut frame = vec![0x82, 0xFF];
    frame.extend_from_slice(&(8u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[0u8; 1024]);
    s.write_all(&frame).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // A close frame (opcode 8) is the polite form of the same.
                Ok(_) if buf[0] & 0x0F == 0x8 => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an oversized frame was accepted");
}

/// Reads until the server closes the connection; `None` when it is still open after `within`.
async fn read_to_close(s: &mut TlsStream, within: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_https_connections_do_not_lock_out_mqtt() {
    let (server, _tmp) = ServerProcess::start_with_config(
        "max_connections = 3\nhttp_header_read_timeout_secs = 600\n",
    );
    let tls = ClientTlsConfig::with_ca_file(server.ca_pem()).unwrap();
    let connect = |port| {
        let tls = tls.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(2), tls.connect("localhost", port))
                .await
                .ok()
                .and_then(Result::ok)
        }
    };
    // Idle HTTPS clients take as many connections as they can get (four tries, limit three).
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.extend(connect(server.https_port).await);
    }
    // MQTT devices have a limit of their own.
    let mut devices = Vec::new();
    for n in 1..=2 {
        let device = connect(server.mqtt_port).await;
        assert!(
            device.is_some(),
            "idle HTTPS connections locked MQTT connection {n} out"
        );
        devices.push(device);
    }
    assert_eq!(idle.len(), 3, "the HTTPS listener's limit is not three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_and_idle_keep_alive_connections_are_closed() {
    let (server, _tmp) = ServerProcess::start_with_config("http_header_read_timeout_secs = 1\n");
    // Half a request head.
    let mut half = raw_tls(&server).await;
    half.write_all(b"GET /devices/x?api-version=2021-04-12 HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    assert!(
        read_to_close(&mut half, Duration::from_secs(5))
            .await
            .is_some(),
        "a half-sent request head kept its connection open"
    );
    // A keep-alive connection that was answered and then sends nothing.
    let mut kept = raw_tls(&server).await;
    kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answered = read_to_close(&mut kept, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection stayed open");
    assert!(
        answered.starts_with(b"HTTP/1.1 "),
        "{}",
        String::from_utf8_lossy(&answered)
    );
    // A connection that never sends anything.
    let mut silent = raw_tls(&server).await;
    assert!(
        read_to_close(&mut silent, Duration::from_secs(5))
            .await
            .is_some(),
        "a silent connection stayed open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_header_names_are_spelled_as_azure_does() {
    let server = ServerProcess::start();
    let mut s = raw_tls(&server).await;
    // Two requests on one keep-alive connection: the second head comes after the first body.
    for _ in 0..2 {
        s.write_all(
            b"GET /devices/d1/messages/deviceBound?api-version=2020-09-30 HTTP/1.1\r\n\
              Host: localhost\r\n\r\n",
        )
        .await
        .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
        assert!(
            head.contains("\r\nContent-Type: application/json"),
            "not Azure's spelling: {head}"
        );
        assert!(head.contains("\r\nContent-Length: "), "{head}");
        let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_c2d_receive_answers_with_an_etag_spelled_as_the_c_sdk_reads_it() {
    use fleethub_service_client::{
        CaTrust, Condition, Credentials, HttpsTransport, ServiceClient, TlsTarget,
    };
    let server = ServerProcess::start();
    let credentials =
        Credentials::from_connection_string(&server.info.hub_service_connection_string).unwrap();
    let target = TlsTarget::new(
        &CaTrust::File(server.ca_pem()),
        &credentials.host_name,
        &format!("127.0.0.1:{}", server.https_port),
    )
    .unwrap();
    let hub = ServiceClient::new(HttpsTransport::new(target), credentials)
        .with_api_version(fleethub_service_client::HUB_API_VERSION);
    let key = fleethub_core::keys::generate_key();
    let device = fleethub_api::Device {
        device_id: "c-dev".into(),
        authentication: Some(fleethub_api::AuthenticationMechanism::sas(
            key.clone(),
            fleethub_core::keys::generate_key(),
        )),
        ..Default::default()
    };
    hub.put_device(&device, Condition::MustNotExist)
        .await
        .unwrap();
    hub.send_c2d(
        "c-dev",
        &serde_json::json!({"body": "hi", "messageId": "m1"}),
    )
    .await
    .unwrap();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let resource = format!("{}/devices/c-dev", server.info.hub_host);
    let sas = fleethub_core::sas::build_token(&resource, &key, expiry, None).unwrap();
    let mut s = raw_tls(&server).await;
    s.write_all(
        format!(
            "GET /devices/c-dev/messages/deviceBound?api-version=2020-09-30 HTTP/1.1\r\n\
             Host: {}\r\nAuthorization: {sas}\r\n\r\n",
            server.info.hub_host
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains("\r\nETag: \""),
        "not Azure's spelling: {head}"
    );
    assert!(head.contains("\r\niothub-messageid: m1\r\n"), "{head}");
}

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
    for offered in ["", "AMQPWSB10", "Mqtt"] {
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

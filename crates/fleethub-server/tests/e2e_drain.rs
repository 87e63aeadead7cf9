//! End-to-end: every accepted connection counts until it ends. A WebSocket upgraded from an
//! HTTPS connection keeps holding that connection's slot of the listener's limit (and its share
//! of the shutdown drain); a DPS MQTT session closes at shutdown instead of holding the drain
//! until its grace period runs out.

mod common;

use common::ServerProcess;
use fleethub_device::ClientTlsConfig;
use fleethub_device::tls::TlsStream;
use fleethub_mqtt_codec::{Connect, ConnectReturnCode, FramedRead, FramedWrite, Packet};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn tls(s: &ServerProcess, port: u16) -> TlsStream {
    ClientTlsConfig::with_ca_file(s.ca_pem())
        .unwrap()
        .connect("localhost", port)
        .await
        .unwrap()
}

async fn read_head(s: &mut TlsStream, within: Duration) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(within, async {
        while !head.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut byte).await.unwrap();
            assert_eq!(n, 1, "closed inside the head");
            head.push(byte[0]);
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8(head).unwrap())
}

async fn websocket(s: &ServerProcess) -> TlsStream {
    let mut ws = tls(s, s.https_port).await;
    ws.write_all(
        b"GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut ws, Duration::from_secs(10)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_websocket_keeps_its_connection_slot() {
    let (s, _tmp) = ServerProcess::start_with_config("max_connections = 2\n");
    let first = websocket(&s).await;
    let _second = websocket(&s).await;
    // Both HTTPS slots are held by the WebSockets: a third connection waits in the kernel's
    // queue and gets no answer.
    let request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let third = tokio::spawn({
        let (ca, port) = (s.ca_pem(), s.https_port);
        async move {
            let tls = ClientTlsConfig::with_ca_file(ca).unwrap();
            // The TCP connection is queued by the kernel; the TLS handshake waits for a slot.
            let mut t = tls.connect("localhost", port).await.unwrap();
            t.write_all(request).await.unwrap();
            read_head(&mut t, Duration::from_secs(30)).await
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served while two WebSockets held the limit of 2"
    );
    // One WebSocket goes away: its slot is free and the waiting connection is served.
    drop(first);
    let head = tokio::time::timeout(Duration::from_secs(20), third)
        .await
        .expect("served once a slot is free")
        .unwrap()
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_dps_session_closes_at_shutdown() {
    let (mut s, _tmp) = ServerProcess::start_with_config("");
    let (ok, out, err) = s.cli(&[
        "dps",
        "enrollment",
        "create",
        "--registration-id",
        "drain-1",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = v["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    let scope = s.info.id_scope.clone();
    let (rd, wr) = tokio::io::split(tls(&s, s.mqtt_port).await);
    let (mut reader, mut writer) = (FramedRead::new(rd, 1 << 20), FramedWrite::new(wr));
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = fleethub_core::sas::build_token(
        &format!("{scope}/registrations/drain-1"),
        &key,
        expiry,
        Some("registration"),
    )
    .unwrap();
    let mut connect = Connect::new("drain-1", true, 0);
    connect.username = Some(format!(
        "{scope}/registrations/drain-1/api-version=2019-03-31"
    ));
    connect.password = Some(token.into_bytes());
    writer.send(&Packet::Connect(connect)).await.unwrap();
    match reader.next().await.unwrap() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Accepted),
        other => panic!("{other:?}"),
    }
    // The device idles (keep-alive 0: the server's idle limit is minutes away).
    let pid = s.child.as_ref().unwrap().id();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let signalled = Instant::now();
    // The session closes the stream cleanly, at once.
    let end = tokio::time::timeout(Duration::from_secs(4), reader.next())
        .await
        .expect("the DPS session was not closed at shutdown");
    assert!(matches!(end, Ok(None)), "{end:?}");
    let mut child = s.child.take().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(4),
            "the server waited for the idle DPS session; log: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}; log: {}", s.log());
}

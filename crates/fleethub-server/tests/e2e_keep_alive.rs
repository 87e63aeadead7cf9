//! MQTT keep-alive on a real connection: a device that keeps sending stays connected past its
//! first idle deadline (the session's timer is re-armed as packets move the deadline), and one
//! that falls silent is closed one and a half keep-alive periods after its last packet.

mod common;

use common::ServerProcess;
use common::device::{connect_with_keep_alive, put_device, service};
use fleethub_mqtt_codec::Packet;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_extend_the_idle_deadline_and_silence_ends_the_connection() {
    let s = ServerProcess::start();
    let hub = service(&s);
    let key = put_device(&hub, "d-ka", json!({"deviceId": "d-ka"})).await;
    // keep-alive 2 s: the server allows 3 s without a packet.
    let mut dev = connect_with_keep_alive(&s, "d-ka", &key, 3600, 2).await;
    // Pings every second for 5 s: well past the first deadline (3 s after CONNECT).
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        dev.writer.send(&Packet::PingReq).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(2), dev.reader.next()).await {
            Ok(Ok(Some(Packet::PingResp))) => {}
            other => panic!(
                "expected PINGRESP while pinging, got {other:?}; log: {}",
                s.log()
            ),
        }
    }
    // Then silence: the server closes the connection about 3 s after the last ping.
    let last = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        while let Ok(Some(_)) = dev.reader.next().await {}
    })
    .await;
    let after = last.elapsed();
    assert!(
        closed.is_ok(),
        "a silent connection outlived its keep-alive"
    );
    assert!(
        after >= Duration::from_millis(2500),
        "closed {after:?} after the last packet, before the 3 s idle limit"
    );
}

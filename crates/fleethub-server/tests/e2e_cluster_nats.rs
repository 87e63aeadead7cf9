//! Two nodes on one PostgreSQL store joined by a NATS bus (docs/scale-out.md, "Cross-node
//! delivery"): a device connected to node 1 receives a direct method, a C2D message, a
//! desired-property update and its revocation issued through node 2; node 2 shows it
//! connected; a method to a device connected nowhere answers 404 at once; a device connecting
//! to the other node closes its first connection (take-over); with NATS killed, node 2 answers
//! a method like for an offline device, quickly, and delivery resumes when NATS is back; a node
//! killed with -9 leaves its devices offline for the others. The devices are a raw MQTT client
//! (to see exactly what arrives and when a connection closes) and the Rust device SDK.
//! Needs `nats-server` (Debian package `nats-server`) and PostgreSQL 15.

mod common;

use common::device::{RawDevice, call, connect, put_device, sdk_client, service};
use common::{ServerProcess, free_port};
use fleethub_mqtt_codec::{Packet, Publish, QoS, Subscribe};
use fleethub_service_client::{HttpsTransport, ServiceClient};
use fleethub_store_postgres::throwaway::Throwaway;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server` on a loopback port, killed on drop.
struct Nats {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Nats {
    fn start() -> Nats {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .or_else(|| {
                std::env::var_os("PATH").and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|d| d.join("nats-server"))
                        .find(|p| p.exists())
                })
            })
            .unwrap_or_else(|| {
                panic!("nats-server not found: install the Debian package nats-server")
            });
        let mut n = Nats {
            bin,
            port: free_port(),
            child: None,
        };
        n.restart();
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

fn node(data_dir: &Path, store_url: &str, node_id: &str, nats_url: &str) -> ServerProcess {
    ServerProcess::start_on_store(
        data_dir,
        store_url,
        &["--node-id", node_id, "--nats-url", nats_url],
    )
}

/// Subscribes a raw device to methods, desired patches and its C2D messages.
async fn subscribe_all(dev: &mut RawDevice, id: &str) {
    let filters = [
        format!("devices/{id}/messages/devicebound/#"),
        "$iothub/methods/POST/#".to_string(),
        "$iothub/twin/PATCH/properties/desired/#".to_string(),
    ];
    let sub = Subscribe::new(
        1,
        filters.into_iter().map(|f| (f, QoS::AtLeastOnce)).collect(),
    );
    dev.writer.send(&Packet::Subscribe(sub)).await.unwrap();
    match next_packet(dev, Duration::from_secs(5)).await {
        Some(Packet::SubAck(_)) => {}
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// The next packet, `None` when the connection closed; panics after `within`.
async fn next_packet(dev: &mut RawDevice, within: Duration) -> Option<Packet> {
    let read = tokio::time::timeout(within, dev.reader.next())
        .await
        .unwrap_or_else(|_| panic!("nothing from the server within {within:?}"));
    read.ok().flatten()
}

/// The next PUBLISH (acknowledged when QoS 1).
async fn next_publish(dev: &mut RawDevice) -> Publish {
    loop {
        match next_packet(dev, Duration::from_secs(10)).await {
            Some(Packet::Publish(p)) => {
                if p.qos == QoS::AtLeastOnce {
                    dev.writer.send(&Packet::PubAck(p.pkid)).await.unwrap();
                }
                return p;
            }
            Some(_) => {}
            None => panic!("the connection closed while a PUBLISH was expected"),
        }
    }
}

/// Answers the next method request with 200 and `{"on": node}`; returns its payload.
async fn answer_method(dev: &mut RawDevice, node: &str) -> Value {
    let p = next_publish(dev).await;
    assert!(
        p.topic.starts_with("$iothub/methods/POST/reboot/"),
        "{}",
        p.topic
    );
    let rid = p.topic.rsplit("$rid=").next().unwrap().to_string();
    let answer = Publish::new(
        format!("$iothub/methods/res/200/?$rid={rid}"),
        QoS::AtMostOnce,
        0,
        serde_json::to_vec(&json!({"on": node})).unwrap(),
    );
    dev.writer.send(&Packet::Publish(answer)).await.unwrap();
    serde_json::from_slice(&p.payload).unwrap()
}

async fn invoke(hub: &ServiceClient<HttpsTransport>, id: &str, n: u32) -> (u16, Value) {
    let body = json!({"methodName": "reboot", "payload": {"n": n}, "responseTimeoutInSeconds": 10});
    call(hub, "POST", &format!("/twins/{id}/methods"), Some(&body)).await
}

/// Waits until `hub` shows `id` in `state`; returns the device.
async fn wait_state(hub: &ServiceClient<HttpsTransport>, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = call(hub, "GET", &format!("/devices/{id}"), None).await;
        assert_eq!(status, 200, "{v}");
        if v["connectionState"] == state {
            return v;
        }
        assert!(Instant::now() < deadline, "{id} never {state}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Expects the connection to be closed by the server within `within`.
async fn closed_within(dev: &mut RawDevice, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the connection is still open after {within:?}"
        );
        let read = tokio::time::timeout(left, dev.reader.next())
            .await
            .unwrap_or_else(|_| panic!("the connection is still open after {within:?}"));
        if !matches!(read, Ok(Some(_))) {
            return;
        }
    }
}

/// A direct method, a C2D message and a desired-property update for `id` (connected as `dev`
/// to node 1), issued through `via`.
async fn delivery_through(dev: &mut RawDevice, via: &ServerProcess, id: &str) {
    let hub2 = service(via);
    // A direct method through node 2.
    let caller = tokio::spawn({
        let (hub2, id) = (service(via), id.to_string());
        async move { invoke(&hub2, &id, 1).await }
    });
    assert_eq!(answer_method(dev, "node-1").await, json!({"n": 1}));
    let (status, body) = caller.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": 200, "payload": {"on": "node-1"}}));

    // A C2D message through node 2.
    let (status, body) = call(
        &hub2,
        "POST",
        &format!("/devices/{id}/messages/deviceBound"),
        Some(&json!({"body": "hello", "messageId": "c2d-1"})),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    let p = next_publish(dev).await;
    assert!(
        p.topic
            .starts_with(&format!("devices/{id}/messages/devicebound/")),
        "{}",
        p.topic
    );
    assert_eq!(&p.payload[..], b"hello");

    // A desired-property update through node 2.
    let (status, body) = call(
        &hub2,
        "PATCH",
        &format!("/twins/{id}"),
        Some(&json!({"properties": {"desired": {"fan": "on"}}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let p = next_publish(dev).await;
    assert!(
        p.topic
            .starts_with("$iothub/twin/PATCH/properties/desired/"),
        "{}",
        p.topic
    );
    let patch: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(patch["fan"], "on", "{patch}");
}

/// The Rust device SDK on node 1 gets a method, a C2D message and a desired update issued
/// through node 2, and its connection ends when node 2 disables the device.
async fn sdk_device_on_node_1(n1: &ServerProcess, n2: &ServerProcess) {
    use fleethub_device::{ConnectionStatus, MethodResponse};
    let hub2 = service(n2);
    let key = put_device(&hub2, "cb-sdk", json!({"deviceId": "cb-sdk"})).await;
    let client = sdk_client(n1, "cb-sdk", &key).await;
    client
        .on_method(|req| async move { MethodResponse::ok(json!({"echo": req.payload})) })
        .await
        .unwrap();
    let mut c2d = client.c2d_messages().await.unwrap();
    let mut desired = client.desired_updates().await.unwrap();
    wait_state(&hub2, "cb-sdk", "Connected").await;

    let (status, body) = invoke(&hub2, "cb-sdk", 7).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["payload"], json!({"echo": {"n": 7}}));
    let body = json!({"body": "to the sdk", "messageId": "c2d-sdk"});
    let (status, v) = call(
        &hub2,
        "POST",
        "/devices/cb-sdk/messages/deviceBound",
        Some(&body),
    )
    .await;
    assert!(status < 300, "{status} {v}");
    let m = tokio::time::timeout(Duration::from_secs(10), c2d.recv())
        .await
        .expect("C2D within 10 s")
        .unwrap();
    assert_eq!(m.body_text(), "to the sdk");
    let patch = json!({"properties": {"desired": {"interval": 9}}});
    let (status, v) = call(&hub2, "PATCH", "/twins/cb-sdk", Some(&patch)).await;
    assert_eq!(status, 200, "{v}");
    let got = tokio::time::timeout(Duration::from_secs(10), desired.recv())
        .await
        .expect("desired update within 10 s")
        .unwrap();
    assert_eq!(got["interval"], 9, "{got}");

    let mut status = client.status_changes();
    disable(&hub2, "cb-sdk").await;
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| *s != ConnectionStatus::Connected),
    )
    .await
    .expect("the SDK's connection ends when the device is disabled")
    .unwrap();
    client.close().await;
}

/// Disables a device through `hub`.
async fn disable(hub: &ServiceClient<HttpsTransport>, id: &str) {
    let body = json!({"deviceId": id, "status": "disabled"});
    let (status, body) = call(hub, "PUT", &format!("/devices/{id}"), Some(&body)).await;
    assert_eq!(status, 200, "{body}");
}

/// A method call through `hub` answers 404 (like for an offline device) within `bound`.
async fn offline_within(hub: &ServiceClient<HttpsTransport>, id: &str, bound: Duration) {
    let started = Instant::now();
    let (status, body) = invoke(hub, id, 0).await;
    assert_eq!(status, 404, "{body}");
    assert!(started.elapsed() < bound, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_presence_and_take_over_across_two_nodes() {
    let mut nats = Nats::start();
    let pg =
        Throwaway::start().unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"));
    let url = pg.new_database().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut n1 = node(&tmp.path().join("node1"), &url, "node-1", &nats.url());
    let n2 = node(&tmp.path().join("node2"), &url, "node-2", &nats.url());
    let (hub1, hub2) = (service(&n1), service(&n2));
    let key = put_device(&hub2, "cb-1", json!({"deviceId": "cb-1"})).await;
    put_device(&hub2, "cb-none", json!({"deviceId": "cb-none"})).await;
    let key2 = put_device(&hub2, "cb-2", json!({"deviceId": "cb-2"})).await;
    let key3 = put_device(&hub2, "cb-3", json!({"deviceId": "cb-3"})).await;

    // Connected to node 1; node 2 sees it.
    let mut dev = connect(&n1, "cb-1", &key, 3600).await;
    subscribe_all(&mut dev, "cb-1").await;
    let seen = wait_state(&hub2, "cb-1", "Connected").await;
    assert!(
        seen["connectionStateUpdatedTime"].as_str().is_some(),
        "{seen}"
    );
    assert!(seen["lastActivityTime"].as_str().is_some(), "{seen}");
    let (status, stats) = call(&hub2, "GET", "/statistics/service", None).await;
    assert_eq!(
        (status, &stats["connectedDeviceCount"]),
        (200, &json!(1)),
        "{stats}"
    );
    // So does its /metrics (the cluster's count), beside its own connections (none).
    let metrics = hub2
        .send("GET", "/metrics", &[], vec![], None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for line in [
        "fleethub_connected_devices 1",
        "fleethub_node_connected_devices 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no '{line}' in\n{text}");
    }

    delivery_through(&mut dev, &n2, "cb-1").await;

    // A method to a device connected nowhere: 404 at once.
    offline_within(&hub2, "cb-none", Duration::from_secs(5)).await;

    // Take-over: the device connects to node 2; node 1 closes the first connection.
    let mut dev2 = connect(&n2, "cb-1", &key, 3600).await;
    closed_within(&mut dev, Duration::from_secs(5)).await;
    subscribe_all(&mut dev2, "cb-1").await;
    // Now node 1 forwards to node 2.
    wait_state(&hub1, "cb-1", "Connected").await;
    let caller = tokio::spawn({
        let hub1 = service(&n1);
        async move { invoke(&hub1, "cb-1", 3).await }
    });
    assert_eq!(answer_method(&mut dev2, "node-2").await, json!({"n": 3}));
    let (status, body) = caller.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["payload"], json!({"on": "node-2"}));

    // And back to node 1 (take-over the other way).
    let mut dev = connect(&n1, "cb-1", &key, 3600).await;
    closed_within(&mut dev2, Duration::from_secs(5)).await;
    subscribe_all(&mut dev, "cb-1").await;
    wait_state(&hub2, "cb-1", "Connected").await;

    // NATS down: node 2 answers like for an offline device, quickly; local calls still work.
    let mut third = connect(&n1, "cb-3", &key3, 3600).await;
    subscribe_all(&mut third, "cb-3").await;
    wait_state(&hub2, "cb-3", "Connected").await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    offline_within(&hub2, "cb-1", Duration::from_secs(5)).await;
    let (status, body) = call(&hub2, "GET", "/devices/cb-none", None).await;
    assert_eq!(status, 200, "{body}");
    // A device disabled during the outage: its revocation cannot travel now ...
    disable(&hub2, "cb-3").await;
    // NATS back: delivery resumes without a restart ...
    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut caller = tokio::spawn({
            let hub2 = service(&n2);
            async move { invoke(&hub2, "cb-1", 5).await }
        });
        tokio::select! {
            r = &mut caller => {
                let (status, body) = r.unwrap();
                assert_eq!(status, 404, "{body}");
                assert!(Instant::now() < deadline, "delivery did not resume: {body}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            payload = answer_method(&mut dev, "node-1") => {
                assert_eq!(payload, json!({"n": 5}));
                let (status, body) = caller.await.unwrap();
                assert_eq!(status, 200, "{body}");
                break;
            }
        }
    }

    // ... and node 1 closed the connection of the device disabled meanwhile.
    closed_within(&mut third, Duration::from_secs(5)).await;

    // Revocation through node 2: disabling the device closes its connection on node 1.
    disable(&hub2, "cb-1").await;
    closed_within(&mut dev, Duration::from_secs(5)).await;
    wait_state(&hub2, "cb-1", "Disconnected").await;
    assert!(!n1.log().contains("panicked"), "{}", n1.log());
    assert!(!n2.log().contains("panicked"), "{}", n2.log());
    // The outage was logged once, not per call.
    assert_eq!(n2.log().matches("NATS bus lost").count(), 1, "{}", n2.log());

    sdk_device_on_node_1(&n1, &n2).await;

    // Node 1 dies with a device connected: node 2 answers like for an offline device at once,
    // and shows the device disconnected once node 1's lease is stale.
    let mut other = connect(&n1, "cb-2", &key2, 3600).await;
    subscribe_all(&mut other, "cb-2").await;
    wait_state(&hub2, "cb-2", "Connected").await;
    n1.kill9();
    offline_within(&hub2, "cb-2", Duration::from_secs(5)).await;
    wait_state(&hub2, "cb-2", "Disconnected").await;
}

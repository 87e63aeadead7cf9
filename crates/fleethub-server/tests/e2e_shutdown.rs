//! Graceful shutdown of the real binary: on SIGTERM the listeners close at once (new
//! connections are refused), a request in flight still gets its whole answer, and the process
//! exits within the grace period.

mod common;

use common::ServerProcess;
use fleethub_server::listener::SHUTDOWN_GRACE;
use fleethub_service_client::hub::MethodInvocation;
use fleethub_service_client::{
    CaTrust, Condition, Credentials, HttpsTransport, ServiceClient, TlsTarget,
};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn hub(s: &ServerProcess) -> ServiceClient<HttpsTransport> {
    let credentials =
        Credentials::from_connection_string(&s.info.hub_service_connection_string).unwrap();
    let target = TlsTarget::new(
        &CaTrust::File(s.ca_pem()),
        &credentials.host_name,
        &format!("127.0.0.1:{}", s.https_port),
    )
    .unwrap();
    ServiceClient::hub(HttpsTransport::new(target), credentials)
}

fn refused(port: u16) -> bool {
    matches!(
        std::net::TcpStream::connect(("127.0.0.1", port)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_refuses_new_ones_and_exits() {
    let mut s = ServerProcess::start();
    let service = hub(&s);
    service
        .put_device(
            &fleethub_api::Device {
                device_id: "sleeper".into(),
                ..Default::default()
            },
            Condition::None,
        )
        .await
        .unwrap();

    // A request that stays in flight for 3 s: a direct method to an offline device waits
    // `connectTimeoutInSeconds` for it to come online, then answers 404 DeviceNotOnline.
    let in_flight = tokio::spawn(async move {
        let mut call = MethodInvocation::new("reboot", json!({}));
        call.connect_timeout_in_seconds = Some(3);
        call.response_timeout_in_seconds = Some(5);
        let started = Instant::now();
        let r = service.invoke_method("sleeper", None, &call).await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;

    let pid = s.child.as_ref().unwrap().id();
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let signalled = Instant::now();

    // New connections are refused while the request is still being served.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !(refused(s.https_port) && refused(s.mqtt_port)) {
        assert!(
            Instant::now() < deadline,
            "listeners still accept after SIGTERM; log: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended before the listeners closed"
    );

    // The request in flight gets its whole answer.
    let (result, took) = in_flight.await.unwrap();
    let e = result.unwrap_err();
    let se = e
        .service()
        .unwrap_or_else(|| panic!("not an HTTP answer: {e:#?}"));
    assert_eq!(se.status, 404, "{e}");
    assert_eq!(se.code.as_deref(), Some("DeviceNotOnline"), "{e}");
    assert!(took >= Duration::from_secs(2), "{took:?}");

    // The process exits within the grace period.
    let mut child = s.child.take().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < SHUTDOWN_GRACE + Duration::from_secs(2),
            "still running {:?} after SIGTERM; log: {}",
            signalled.elapsed(),
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}; log: {}", s.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "drained connections should let the process exit soon after the last answer: {:?}",
        signalled.elapsed()
    );
}

/// Devices publish QoS 1 while SIGTERM arrives: every acknowledged message is in the store
/// afterwards, a device's session closes cleanly (its PUBACKs, then a TLS close_notify: no
/// abrupt end), the process exits within the bound and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_mqtt_load_keeps_every_acknowledged_message_and_closes_cleanly() {
    use common::device::{connect, put_device, sdk_client, service};
    use fleethub_device::Message;
    use fleethub_mqtt_codec::{Packet, Publish, QoS};
    use fleethub_store::TelemetryStore;
    use std::sync::{Arc, Mutex};

    let mut s = ServerProcess::start();
    let hub = service(&s);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut senders = Vec::new();
    for d in 0..4 {
        let id = format!("load-{d}");
        let key = put_device(&hub, &id, json!({"deviceId": id})).await;
        let client = sdk_client(&s, &id, &key).await;
        let acked = acked.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..1_000_000u32 {
                let mid = format!("{id}-{i}");
                let msg = Message::new(format!("{{\"seq\":{i}}}")).with_message_id(mid.clone());
                match client.send_event(msg).await {
                    Ok(()) => acked.lock().unwrap().push(mid),
                    Err(_) => break,
                }
            }
            client.close().await;
        }));
    }
    // A raw device that keeps a window of QoS 1 publishes in flight and reads what comes back.
    let key = put_device(&hub, "raw", json!({"deviceId": "raw"})).await;
    let raw = connect(&s, "raw", &key, 3600).await;
    let raw_acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let (mut reader, mut writer) = (raw.reader, raw.writer);
    let reads = {
        let raw_acked = raw_acked.clone();
        tokio::spawn(async move {
            loop {
                match reader.next().await {
                    Ok(Some(Packet::PubAck(pkid))) => {
                        raw_acked.lock().unwrap().push(format!("raw-{pkid}"));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
    };
    let writes = tokio::spawn(async move {
        for pkid in 1..=u16::MAX {
            let topic = format!("devices/raw/messages/events/%24.mid=raw-{pkid}");
            let p = Publish::new(topic, QoS::AtLeastOnce, pkid, b"{}".to_vec());
            if writer.send(&Packet::Publish(p)).await.is_err() {
                return;
            }
            if pkid % 16 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 400 || raw_acked.lock().unwrap().len() < 200 {
        assert!(
            Instant::now() < deadline,
            "load did not start; log: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let pid = s.child.as_ref().unwrap().id();
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let signalled = Instant::now();
    let mut child = s.child.take().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < SHUTDOWN_GRACE,
            "still running {:?} after SIGTERM; log: {}",
            signalled.elapsed(),
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}; log: {}", s.log());
    let closed = tokio::time::timeout(Duration::from_secs(5), reads)
        .await
        .expect("raw device's stream did not end")
        .unwrap();
    assert_eq!(
        closed,
        Ok(()),
        "the session should end with a clean close; log: {}",
        s.log()
    );
    writes.abort();
    for t in senders {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    assert!(!s.log().contains("panicked"), "log: {}", s.log());

    // Restart on the same data directory: every acknowledged message is there.
    s.restart();
    s.kill9();
    let store = fleethub_store::sqlite::SqliteStore::open(&s.data_dir.join("store.db")).unwrap();
    let mut stored = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let page = store.read_telemetry(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.sequence_number;
        for m in page {
            if let Some(id) = m.system_properties.get("message-id") {
                stored.insert(id.clone());
            }
        }
    }
    let mut all = acked.lock().unwrap().clone();
    all.extend(raw_acked.lock().unwrap().iter().cloned());
    let lost: Vec<_> = all.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        all.len(),
        &lost[..lost.len().min(5)]
    );
}

//! End-to-end overload throttles (docs/configuration.md, "Throttling"), one test per
//! transport, each on a server started with low limits: HTTPS answers 429 with Azure's
//! `ThrottlingException` body and a `Retry-After` header in that spelling; DPS over MQTT answers
//! on `$dps/registrations/res/429/?$rid=..&retry-after=N`; MQTT telemetry over the limit gets
//! its PUBACKs late but every message is stored and the connection stays up; twin requests
//! over MQTT get status 429.

mod common;

use common::ServerProcess;
use common::device::{connect, put_device, service};
use fleethub_device::ClientTlsConfig;
use fleethub_device::tls::TlsStream;
use fleethub_mqtt_codec::{
    Connect, ConnectReturnCode, FramedRead, FramedWrite, Packet, Publish, QoS, Subscribe,
};
use fleethub_store::TelemetryStore;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

fn expiry() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

async fn tls(s: &ServerProcess, port: u16) -> TlsStream {
    ClientTlsConfig::with_ca_file(s.ca_pem())
        .unwrap()
        .connect("localhost", port)
        .await
        .unwrap()
}

/// Sends one raw HTTP/1.1 request and returns the response head (byte-exact) and body.
async fn raw_request(s: &ServerProcess, request: &str) -> (String, String) {
    let mut stream = tls(s, s.https_port).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut all))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8(all).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (format!("{head}\r\n"), body.to_string())
}

fn status(head: &str) -> u16 {
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_answers_429_with_retry_after_over_the_device_to_cloud_limit() {
    let (s, _tmp) = ServerProcess::start_with_config(
        "[throttle.device_to_cloud]\nper_device = 0.5\nburst_secs = 2\n",
    );
    let hub = service(&s);
    let key = put_device(&hub, "http-1", json!({"deviceId": "http-1"})).await;
    let host = &s.info.hub_host;
    let token =
        fleethub_core::sas::build_token(&format!("{host}/devices/http-1"), &key, expiry(), None)
            .unwrap();
    let send = |n: u32| {
        let body = format!("{{\"n\":{n}}}");
        format!(
            "POST /devices/http-1/messages/events?api-version=2020-09-30 HTTP/1.1\r\n\
             Host: {host}\r\nAuthorization: {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // One message per two seconds, a bucket of one: the first passes, the second is refused.
    let (head, _) = raw_request(&s, &send(1)).await;
    assert_eq!(status(&head), 204, "{head}");
    let (head, body) = raw_request(&s, &send(2)).await;
    assert_eq!(status(&head), 429, "{head}");
    assert!(
        head.contains("\r\nRetry-After: 2\r\n") || head.contains("\r\nRetry-After: 1\r\n"),
        "Retry-After in Azure's spelling: {head}"
    );
    assert!(
        head.contains("\r\niothub-errorcode: ThrottlingException\r\n"),
        "{head}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    let message = v["Message"].as_str().unwrap();
    assert!(message.starts_with("ErrorCode:ThrottlingException;"), "{v}");
    assert!(message.contains("device-to-cloud sends"), "{v}");
    // After the wait, the device may send again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (head, _) = raw_request(&s, &send(3)).await;
    assert_eq!(status(&head), 204, "{head}");
    // The refusal is counted, not logged at INFO.
    let (_, metrics) = raw_request(
        &s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        metrics.contains("\nfleethub_throttled_operations_total 1\n"),
        "{metrics}"
    );
    assert!(!s.log().contains("throttled"), "{}", s.log());
}

/// A raw MQTT client on a TLS stream.
struct Mqtt {
    reader: FramedRead<ReadHalf<TlsStream>>,
    writer: FramedWrite<WriteHalf<TlsStream>>,
}

impl Mqtt {
    async fn next_publish(&mut self) -> Publish {
        loop {
            let p = tokio::time::timeout(Duration::from_secs(10), self.reader.next())
                .await
                .expect("a packet in time")
                .unwrap();
            match p {
                Some(Packet::Publish(p)) => return p,
                Some(_) => {}
                None => panic!("connection closed"),
            }
        }
    }
}

fn create_enrollment(s: &ServerProcess, reg: &str) -> String {
    let (ok, out, err) = s.cli(&["dps", "enrollment", "create", "--registration-id", reg]);
    assert!(ok, "enrollment create failed: {err}");
    let v: Value = serde_json::from_str(&out).expect("JSON output");
    v["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dps_over_mqtt_answers_429_with_the_throttles_retry_after() {
    let (s, _tmp) = ServerProcess::start_with_config(
        "[throttle.dps_registrations]\nper_device = 0.5\nburst_secs = 2\n",
    );
    let reg = "throttled-reg";
    let key = create_enrollment(&s, reg);
    let scope = &s.info.id_scope;
    let (rd, wr) = tokio::io::split(tls(&s, s.mqtt_port).await);
    let mut c = Mqtt {
        reader: FramedRead::new(rd, 1 << 20),
        writer: FramedWrite::new(wr),
    };
    let token = fleethub_core::sas::build_token(
        &format!("{scope}/registrations/{reg}"),
        &key,
        expiry(),
        Some("registration"),
    )
    .unwrap();
    let mut connect = Connect::new(reg, true, 60);
    connect.username = Some(format!(
        "{scope}/registrations/{reg}/api-version=2019-03-31"
    ));
    connect.password = Some(token.into_bytes());
    c.writer.send(&Packet::Connect(connect)).await.unwrap();
    match c.reader.next().await.unwrap() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Accepted),
        other => panic!("{other:?}"),
    }
    let sub = Subscribe::new(
        1,
        vec![("$dps/registrations/res/#".into(), QoS::AtMostOnce)],
    );
    c.writer.send(&Packet::Subscribe(sub)).await.unwrap();
    let body = json!({"registrationId": reg}).to_string();
    let register = |rid: u16| {
        Packet::Publish(Publish::new(
            format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}"),
            QoS::AtMostOnce,
            0,
            body.clone().into_bytes(),
        ))
    };
    c.writer.send(&register(1)).await.unwrap();
    let p = c.next_publish().await;
    assert!(
        p.topic.starts_with("$dps/registrations/res/202/?$rid=1"),
        "{}",
        p.topic
    );
    c.writer.send(&register(2)).await.unwrap();
    let p = c.next_publish().await;
    assert!(
        p.topic == "$dps/registrations/res/429/?$rid=2&retry-after=2"
            || p.topic == "$dps/registrations/res/429/?$rid=2&retry-after=1",
        "{}",
        p.topic
    );
    let v: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(v["errorCode"], 429001, "{v}");
    // The bucket is the registration's, whatever the transport: HTTPS is refused too.
    let https_token = fleethub_core::sas::build_token(
        &format!("{scope}/registrations/{reg}"),
        &key,
        expiry(),
        Some("registration"),
    )
    .unwrap();
    let request = format!(
        "PUT /{scope}/registrations/{reg}/register?api-version=2021-06-01 HTTP/1.1\r\n\
         Host: localhost\r\nAuthorization: {https_token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (head, resp_body) = raw_request(&s, &request).await;
    assert_eq!(status(&head), 429, "{head}");
    assert!(head.contains("\r\nRetry-After: "), "{head}");
    assert!(head.contains("\r\nx-ms-error-code: 429001\r\n"), "{head}");
    let v: Value = serde_json::from_str(&resp_body).unwrap();
    assert_eq!(v["errorCode"], 429001, "{v}");
    // Honouring retry-after, the device gets through.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.writer.send(&register(3)).await.unwrap();
    let p = c.next_publish().await;
    assert!(
        p.topic.starts_with("$dps/registrations/res/202/?$rid=3"),
        "{}",
        p.topic
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_telemetry_over_the_limit_is_acknowledged_late_and_all_stored() {
    // 20 messages per second and a bucket of 5 for each device; twin reads 1 per 2 s.
    let (mut s, _tmp) = ServerProcess::start_with_config(
        "[throttle.device_to_cloud]\nper_device = 20\nburst_secs = 0.25\n\
         [throttle.twin_reads]\nper_device = 0.5\nburst_secs = 2\n",
    );
    let hub = service(&s);
    let key = put_device(&hub, "busy", json!({"deviceId": "busy"})).await;
    let calm_key = put_device(&hub, "calm", json!({"deviceId": "calm"})).await;
    let mut busy = connect(&s, "busy", &key, 3600).await;
    let mut calm = connect(&s, "calm", &calm_key, 3600).await;

    // A device under its quota, publishing 4 per second meanwhile: never held up.
    let calm_task = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        for pkid in 1..=10u16 {
            let topic = format!("devices/calm/messages/events/%24.mid=calm-{pkid}");
            let p = Publish::new(topic, QoS::AtLeastOnce, pkid, b"{}".to_vec());
            let sent = Instant::now();
            calm.writer.send(&Packet::Publish(p)).await.unwrap();
            match calm.reader.next().await.unwrap() {
                Some(Packet::PubAck(id)) => assert_eq!(id, pkid),
                other => panic!("{other:?}"),
            }
            worst = worst.max(sent.elapsed());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        worst
    });

    // The busy device sends 45 at once: 5 fit the bucket, 40 more take 2 s at 20/s.
    let n: u16 = 45;
    let started = Instant::now();
    for pkid in 1..=n {
        let topic = format!("devices/busy/messages/events/%24.mid=busy-{pkid}");
        let p = Publish::new(topic, QoS::AtLeastOnce, pkid, b"{}".to_vec());
        busy.writer.send(&Packet::Publish(p)).await.unwrap();
    }
    let mut acked = Vec::new();
    while acked.len() < usize::from(n) {
        let p = tokio::time::timeout(Duration::from_secs(20), busy.reader.next())
            .await
            .expect("PUBACKs keep coming")
            .unwrap();
        match p {
            Some(Packet::PubAck(id)) => acked.push(id),
            other => panic!("expected PUBACK, got {other:?}; log: {}", s.log()),
        }
    }
    let took = started.elapsed();
    assert_eq!(acked, (1..=n).collect::<Vec<_>>(), "in order, none missing");
    assert!(
        took >= Duration::from_millis(1800),
        "45 messages at 20/s with a bucket of 5 must take about 2 s, took {took:?}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    let calm_worst = calm_task.await.unwrap();
    assert!(
        calm_worst < Duration::from_secs(1),
        "a device under its quota waited {calm_worst:?}"
    );

    // The connection is still up and serves twin requests, refused over their own limit.
    let sub = Subscribe::new(1, vec![("$iothub/twin/res/#".into(), QoS::AtMostOnce)]);
    busy.writer.send(&Packet::Subscribe(sub)).await.unwrap();
    let mut statuses = Vec::new();
    for rid in 1..=2 {
        let get = Publish::new(
            format!("$iothub/twin/GET/?$rid={rid}"),
            QoS::AtMostOnce,
            0,
            Vec::new(),
        );
        busy.writer.send(&Packet::Publish(get)).await.unwrap();
        loop {
            let p = tokio::time::timeout(Duration::from_secs(10), busy.reader.next())
                .await
                .unwrap()
                .unwrap();
            if let Some(Packet::Publish(p)) = p {
                statuses.push((
                    p.topic.clone(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                ));
                break;
            }
        }
    }
    assert!(
        statuses[0].0.starts_with("$iothub/twin/res/200/?$rid=1"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses[1].0, "$iothub/twin/res/429/?$rid=2",
        "{statuses:?}"
    );
    assert!(statuses[1].1.contains("429001"), "{statuses:?}");

    // Every acknowledged message is in the store.
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
    for pkid in 1..=n {
        assert!(stored.contains(&format!("busy-{pkid}")), "busy-{pkid} lost");
    }
    for pkid in 1..=10 {
        assert!(stored.contains(&format!("calm-{pkid}")), "calm-{pkid} lost");
    }
}

/// `fleethub bench saturate` against the real server: over-quota devices are served at their
/// quota, under-quota devices at what they offer, with no errors and bounded latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_bench_is_served_at_the_limit() {
    let (s, _tmp) =
        ServerProcess::start_with_config("[throttle.device_to_cloud]\nper_device = 20\n");
    let base = fleethub_bench::TelemetryBenchOptions {
        inflight: 4,
        duration: Duration::from_secs(4),
        warmup: Duration::from_secs(1),
        host: s.info.hub_host.clone(),
        dial: Some("127.0.0.1".into()),
        port: s.mqtt_port,
        https_port: s.https_port,
        ca_pem_path: s.ca_pem(),
        hub_service_connection_string: Some(s.info.hub_service_connection_string.clone()),
        server_pid: s.child.as_ref().map(std::process::Child::id),
        launcher: fleethub_bench::Launcher::InProcess,
        ..Default::default()
    };
    let report = fleethub_bench::run_saturate_bench(fleethub_bench::SaturateOptions {
        base,
        over_devices: 4,
        under_devices: 4,
        under_rate: 4.0,
        per_device_limit: Some(20.0),
        global_limit: None,
    })
    .await
    .unwrap();
    let text = format!("{report}\nlog: {}", s.log());
    assert_eq!(report.allowed_per_sec, Some(96.0), "{text}");
    let ratio = report.served_vs_allowed.unwrap();
    assert!((0.8..=1.1).contains(&ratio), "{text}");
    assert!(report.over.per_device_per_sec <= 22.0, "{text}");
    assert_eq!((report.over.errors, report.under.errors), (0, 0), "{text}");
    assert!(report.under.p99_ms < 1000.0, "{text}");
    assert!(report.server_rss_max_bytes > 0, "{text}");
}

/// A device waiting for its PUBACKs under the throttle is still cut off at once when it is
/// disabled, and what was waiting is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_ends_a_paced_connection_at_once() {
    let (mut s, _tmp) = ServerProcess::start_with_config(
        "[throttle.device_to_cloud]\nper_device = 1\nburst_secs = 1\n",
    );
    let hub = service(&s);
    let key = put_device(&hub, "paced", json!({"deviceId": "paced"})).await;
    let mut dev = connect(&s, "paced", &key, 3600).await;
    for pkid in 1..=30u16 {
        let topic = format!("devices/paced/messages/events/%24.mid=paced-{pkid}");
        let p = Publish::new(topic, QoS::AtLeastOnce, pkid, b"{}".to_vec());
        dev.writer.send(&Packet::Publish(p)).await.unwrap();
    }
    // At one message per second the last PUBACK is about 30 s away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let disabled = json!({"deviceId": "paced", "status": "disabled"});
    let (status, v) = common::device::call(&hub, "PUT", "/devices/paced", Some(&disabled)).await;
    assert_eq!(status, 200, "{v}");
    let disabled_at = Instant::now();
    let mut acked = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match dev.reader.next().await {
                Ok(Some(Packet::PubAck(id))) => acked.push(id),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "a disabled device stayed connected while its PUBACKs were paced; log: {}",
        s.log()
    );
    assert!(disabled_at.elapsed() < Duration::from_secs(5));
    assert!(acked.len() < 10, "{acked:?}");
    s.kill9();
    let store = fleethub_store::sqlite::SqliteStore::open(&s.data_dir.join("store.db")).unwrap();
    let page = store.read_telemetry(0, 1000).await.unwrap();
    let stored: Vec<&str> = page
        .iter()
        .filter_map(|m| m.system_properties.get("message-id").map(String::as_str))
        .collect();
    assert!(
        stored.len() <= acked.len(),
        "stored {stored:?}, acked {acked:?}"
    );
}

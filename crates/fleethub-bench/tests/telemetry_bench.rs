//! `run_telemetry_bench` against an in-test fake hub: the bulk registry API (`POST /devices`,
//! service SAS checked) on an HTTPS listener and an MQTT/TLS listener that checks each
//! device's SAS against the keys the bench registered, and PUBACKs telemetry. The same MQTT
//! listener without credentials stands in for mosquitto.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fleethub_bench::{
    Launcher, Target, TelemetryBenchOptions, TelemetryBenchReport, run_telemetry_bench,
};
use fleethub_core::sas::SasToken;
use fleethub_mqtt_codec::{ConnAck, ConnectReturnCode, Packet, QoS, decode, encode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const SERVICE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const HUB: &str = "localhost";

#[derive(Default)]
struct State {
    /// device -> primary key
    devices: Mutex<HashMap<String, String>>,
    deleted: Mutex<HashSet<String>>,
    bulk_requests: AtomicU64,
    publishes: AtomicU64,
    pings: AtomicU64,
    /// Check device SAS tokens (fleethub) or accept anonymous clients (mosquitto).
    check_sas: bool,
}

impl State {
    fn device_ok(&self, client_id: &str, username: Option<&str>, password: &[u8]) -> bool {
        if client_id.ends_with("-3") {
            return false; // proves connect errors are counted
        }
        if !self.check_sas {
            return username.is_none() && password.is_empty();
        }
        let Some(key) = self.devices.lock().unwrap().get(client_id).cloned() else {
            return false;
        };
        let Ok(token) = SasToken::parse(&String::from_utf8_lossy(password)) else {
            return false;
        };
        username == Some(&format!("{HUB}/{client_id}/?api-version=2021-04-12"))
            && token.verify_signature(&key).unwrap()
            && token.covers(&format!("{HUB}/devices/{client_id}"))
    }
}

struct Pki {
    ca_path: PathBuf,
    acceptor: TlsAcceptor,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![HUB.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let ca_path = std::env::temp_dir().join(format!(
        "fleethub-telemetry-bench-ca-{}-{nanos}.pem",
        std::process::id()
    ));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    Pki {
        ca_path,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

fn respond(status: u16, body: String) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn bulk(state: &State, parts: &http::request::Parts, body: &[u8]) -> http::Response<Full<Bytes>> {
    assert_eq!(parts.method, "POST");
    assert_eq!(parts.uri.path(), "/devices");
    assert_eq!(parts.uri.query(), Some("api-version=2021-04-12"));
    let auth = parts.headers["authorization"].to_str().unwrap();
    let token = SasToken::parse(auth).unwrap();
    assert_eq!(token.skn.as_deref(), Some("iothubowner"));
    if !token.verify_signature(SERVICE_KEY).unwrap() || !token.covers(HUB) {
        return respond(
            401,
            r#"{"Message":"ErrorCode:IotHubUnauthorizedAccess"}"#.into(),
        );
    }
    state.bulk_requests.fetch_add(1, Ordering::SeqCst);
    let items: Vec<Value> = serde_json::from_slice(body).unwrap();
    assert!(!items.is_empty() && items.len() <= 100);
    for item in items {
        let id = item["id"].as_str().unwrap().to_string();
        match item["importMode"].as_str().unwrap() {
            "create" => {
                assert_eq!(item["authentication"]["type"], "sas");
                let key = item["authentication"]["symmetricKey"]["primaryKey"]
                    .as_str()
                    .unwrap();
                state.devices.lock().unwrap().insert(id, key.to_string());
            }
            "delete" => {
                state.deleted.lock().unwrap().insert(id);
            }
            other => panic!("unexpected importMode {other}"),
        }
    }
    respond(
        200,
        json!({"isSuccessful": true, "errors": [], "warnings": []}).to_string(),
    )
}

async fn https_listener(pki: &Pki, state: Arc<State>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = pki.acceptor.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, state) = (acceptor.clone(), state.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: http::Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        Ok::<_, std::convert::Infallible>(bulk(&state, &parts, &body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

/// CONNECT (credentials checked) -> CONNACK; PUBLISH QoS 1 -> PUBACK; PINGREQ -> PINGRESP.
async fn mqtt_listener(pki: &Pki, state: Arc<State>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = pki.acceptor.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, state) = (acceptor.clone(), state.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (mut buf, mut out) = (BytesMut::new(), BytesMut::new());
                let mut client = String::new();
                loop {
                    let packet = loop {
                        if let Some(p) = decode(&mut buf, 1 << 20).unwrap() {
                            break Some(p);
                        }
                        match tls.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => break None,
                            Ok(_) => {}
                        }
                    };
                    let Some(packet) = packet else { return };
                    out.clear();
                    match packet {
                        Packet::Connect(c) => {
                            let ok = state.device_ok(
                                &c.client_id,
                                c.username.as_deref(),
                                c.password.as_deref().unwrap_or_default(),
                            );
                            let code = if ok {
                                ConnectReturnCode::Accepted
                            } else {
                                ConnectReturnCode::NotAuthorized
                            };
                            client = c.client_id;
                            encode(&Packet::ConnAck(ConnAck::new(code, false)), &mut out).unwrap();
                        }
                        Packet::Publish(p) => {
                            assert_eq!(p.topic, format!("devices/{client}/messages/events/"));
                            assert_eq!(p.qos, QoS::AtLeastOnce);
                            assert_eq!(p.payload.len(), 64);
                            state.publishes.fetch_add(1, Ordering::SeqCst);
                            encode(&Packet::PubAck(p.pkid), &mut out).unwrap();
                        }
                        Packet::PingReq => {
                            state.pings.fetch_add(1, Ordering::SeqCst);
                            encode(&Packet::PingResp, &mut out).unwrap();
                        }
                        Packet::Disconnect => return,
                        other => panic!("unexpected {other:?}"),
                    }
                    if tls.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn options(pki: &Pki, target: Target, port: u16, https_port: u16) -> TelemetryBenchOptions {
    TelemetryBenchOptions {
        target,
        devices: 6,
        rate: None,
        inflight: 2,
        payload_bytes: 64,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        processes: 2,
        connect_concurrency: 2,
        host: HUB.into(),
        dial: Some("127.0.0.1".into()),
        port,
        ca_pem_path: pki.ca_path.clone(),
        hub_service_connection_string: Some(format!(
            "HostName={HUB};SharedAccessKeyName=iothubowner;SharedAccessKey={SERVICE_KEY}"
        )),
        https_port,
        server_pid: Some(std::process::id()),
        launcher: Launcher::InProcess,
        ..Default::default()
    }
}

fn check_common(r: &TelemetryBenchReport) {
    // Device `tb-{run}-3` is refused by the fake.
    assert_eq!(r.connect_errors, 1, "{r}");
    assert!(r.first_error.as_deref().unwrap().contains("-3"), "{r}");
    assert_eq!((r.connected_at_start, r.connected), (5, 5), "{r}");
    assert_eq!(r.publish_errors, 0, "{r}");
    assert_eq!(r.errors, 1);
    assert!(r.server_rss_bytes > 0 && r.server_rss_total_per_connection_bytes > 0.0);
    let v = serde_json::to_value(r).unwrap();
    for k in [
        "messagesPerSec",
        "p50Ms",
        "p99Ms",
        "errors",
        "connected",
        "serverRssBytes",
    ] {
        assert!(v[k].is_number(), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleethub_max_creates_devices_publishes_and_cleans_up() {
    let pki = pki();
    let state = Arc::new(State {
        check_sas: true,
        ..Default::default()
    });
    let https = https_listener(&pki, state.clone()).await;
    let mqtt = mqtt_listener(&pki, state.clone()).await;
    let r = run_telemetry_bench(options(&pki, Target::Fleethub, mqtt, https))
        .await
        .unwrap();
    check_common(&r);
    assert_eq!((r.mode.as_str(), r.target.as_str()), ("max", "fleethub"));
    assert!(r.messages > 0 && r.messages_per_sec > 0.0, "{r}");
    assert!(r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms && r.max_ms >= r.p99_ms);
    // Every counted message was PUBACKed by the fake (plus warm-up and late ones).
    assert!(state.publishes.load(Ordering::SeqCst) >= r.messages);
    assert!(r.server_cpu_cores > 0.0 && r.server_cpu_us_per_msg > 0.0);
    let created: HashSet<String> = state.devices.lock().unwrap().keys().cloned().collect();
    assert_eq!(created.len(), 6);
    assert_eq!(*state.deleted.lock().unwrap(), created, "devices deleted");
    assert_eq!(state.bulk_requests.load(Ordering::SeqCst), 2);
    let _ = std::fs::remove_file(&pki.ca_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_rate_mode_paces_the_load() {
    let pki = pki();
    let state = Arc::new(State::default());
    let mqtt = mqtt_listener(&pki, state.clone()).await;
    let mut opts = options(&pki, Target::Mosquitto, mqtt, 0);
    opts.rate = Some(300.0);
    opts.hub_service_connection_string = None;
    let r = run_telemetry_bench(opts).await.unwrap();
    check_common(&r);
    assert_eq!(r.mode, "rate");
    // 300/s offered to 6 devices, one of which is refused: about 250 in the 1 s window.
    assert!((200..=300).contains(&r.messages), "{r}");
    assert_eq!(r.device_create_errors, 0);
    let _ = std::fs::remove_file(&pki.ca_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_only_holds_connections_with_keep_alive() {
    let pki = pki();
    let state = Arc::new(State::default());
    let mqtt = mqtt_listener(&pki, state.clone()).await;
    let mut opts = options(&pki, Target::Mosquitto, mqtt, 0);
    opts.connect_only = true;
    opts.keep_alive = Duration::from_secs(1);
    opts.duration = Duration::from_millis(2500);
    let r = run_telemetry_bench(opts).await.unwrap();
    check_common(&r);
    assert_eq!(r.mode, "connect-only");
    assert_eq!((r.messages, r.messages_per_sec), (0, 0.0));
    assert_eq!(state.publishes.load(Ordering::SeqCst), 0);
    assert!(state.pings.load(Ordering::SeqCst) >= 5, "keep-alive pings");
    let _ = std::fs::remove_file(&pki.ca_path);
}

#[tokio::test]
async fn wrong_service_key_fails_before_connecting() {
    let pki = pki();
    let state = Arc::new(State {
        check_sas: true,
        ..Default::default()
    });
    let https = https_listener(&pki, state.clone()).await;
    let mut opts = options(&pki, Target::Fleethub, 1, https);
    opts.hub_service_connection_string = Some(format!(
        "HostName={HUB};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
        fleethub_core::keys::generate_key()
    ));
    let err = run_telemetry_bench(opts).await.unwrap_err();
    assert!(format!("{err:#}").contains("401"), "{err:#}");
    let _ = std::fs::remove_file(&pki.ca_path);
}

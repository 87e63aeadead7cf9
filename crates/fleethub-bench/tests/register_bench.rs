//! `run_register_bench` against an in-test fake DPS: the service API (enrollment groups)
//! and the device API over HTTPS on one TLS listener, and a DPS MQTT listener. The fakes
//! verify every SAS token (service key; group-derived device keys).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use fleethub_bench::{RegisterBenchOptions, Transport, run_register_bench};
use fleethub_core::keys::derive_device_key;
use fleethub_core::sas::SasToken;
use fleethub_mqtt_codec::{
    ConnAck, ConnectReturnCode, Packet, Publish, QoS, SubAck, SubscribeReturnCode, decode, encode,
};
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
const SCOPE: &str = "0ne00000BEN";
const DPS_HOST_NAME: &str = "dps.fleethub.local";

#[derive(Default)]
struct State {
    group_key: Mutex<Option<String>>,
    group_id: Mutex<Option<String>>,
    deleted: AtomicUsize,
    registered: Mutex<HashSet<String>>,
    connections: AtomicUsize,
}

impl State {
    /// Verifies a device token against the group-derived key for `reg_id`.
    fn device_ok(&self, token: &str, reg_id: &str) -> bool {
        let Some(group_key) = self.group_key.lock().unwrap().clone() else {
            return false;
        };
        let key = derive_device_key(&group_key, reg_id).unwrap();
        let Ok(token) = SasToken::parse(token) else {
            return false;
        };
        token.verify_signature(&key).unwrap()
            && token.covers(&format!("{SCOPE}/registrations/{reg_id}"))
    }

    /// Registration IDs ending in `-3` are rejected, to prove errors are counted.
    fn register(&self, reg_id: &str) -> Option<String> {
        if reg_id.ends_with("-3") {
            return None;
        }
        self.registered.lock().unwrap().insert(reg_id.to_string());
        Some(
            json!({"operationId": format!("op-{reg_id}"), "status": "assigned",
                "registrationState": {"registrationId": reg_id, "assignedHub": "hub.fleethub.local",
                "deviceId": reg_id, "status": "assigned", "substatus": "initialAssignment"}})
            .to_string(),
        )
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
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
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
    let ca_path = std::env::temp_dir().join(format!("fleethub-bench-ca-{}.pem", uuid_like()));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    Pki {
        ca_path,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn respond(status: u16, body: String) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn handle(state: &State, parts: &http::request::Parts, body: &[u8]) -> http::Response<Full<Bytes>> {
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let segments: Vec<&str> = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    match (parts.method.as_str(), segments.as_slice()) {
        (method, ["enrollmentGroups", id]) => {
            let token = SasToken::parse(auth).unwrap();
            assert_eq!(token.skn.as_deref(), Some("provisioningserviceowner"));
            assert!(token.covers(DPS_HOST_NAME));
            if !token.verify_signature(SERVICE_KEY).unwrap() {
                return respond(
                    401,
                    r#"{"errorCode":401002,"message":"Unauthorized"}"#.into(),
                );
            }
            if method == "PUT" {
                let group: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(group["enrollmentGroupId"], *id);
                assert_eq!(group["attestation"]["type"], "symmetricKey");
                let key = group["attestation"]["symmetricKey"]["primaryKey"]
                    .as_str()
                    .unwrap();
                *state.group_key.lock().unwrap() = Some(key.to_string());
                *state.group_id.lock().unwrap() = Some(id.to_string());
                respond(200, group.to_string())
            } else {
                assert_eq!(method, "DELETE");
                assert_eq!(state.group_id.lock().unwrap().as_deref(), Some(*id));
                state.deleted.fetch_add(1, Ordering::SeqCst);
                respond(204, String::new())
            }
        }
        ("PUT", [scope, "registrations", reg_id, "register"]) => {
            assert_eq!(*scope, SCOPE);
            if !state.device_ok(auth, reg_id) {
                return respond(
                    401,
                    r#"{"errorCode":401002,"message":"Unauthorized"}"#.into(),
                );
            }
            match state.register(reg_id) {
                Some(body) => respond(200, body),
                None => respond(
                    401,
                    r#"{"errorCode":401002,"message":"Unauthorized"}"#.into(),
                ),
            }
        }
        _ => respond(404, "{}".into()),
    }
}

/// The HTTPS listener: service API + device API.
async fn https_listener(pki: &Pki, state: Arc<State>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = pki.acceptor.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            state.connections.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: http::Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        Ok::<_, std::convert::Infallible>(handle(&state, &parts, &body))
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

/// The MQTT listener: CONNECT (SAS checked) -> SUBSCRIBE -> register -> 200 assigned.
async fn mqtt_listener(pki: &Pki, state: Arc<State>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = pki.acceptor.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = BytesMut::new();
                let mut out = BytesMut::new();
                let mut reg_id = String::new();
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
                            let token = String::from_utf8(c.password.unwrap_or_default()).unwrap();
                            let code = if state.device_ok(&token, &c.client_id) {
                                ConnectReturnCode::Accepted
                            } else {
                                ConnectReturnCode::NotAuthorized
                            };
                            reg_id = c.client_id;
                            encode(&Packet::ConnAck(ConnAck::new(code, false)), &mut out).unwrap();
                        }
                        Packet::Subscribe(s) => {
                            let codes = vec![SubscribeReturnCode::Success(QoS::AtLeastOnce)];
                            encode(&Packet::SubAck(SubAck::new(s.pkid, codes)), &mut out).unwrap();
                        }
                        Packet::Publish(p) => {
                            encode(&Packet::PubAck(p.pkid), &mut out).unwrap();
                            let rid = p.topic.rsplit("$rid=").next().unwrap().to_string();
                            let (status, body) = match state.register(&reg_id) {
                                Some(body) => (200, body),
                                None => (401, r#"{"errorCode":401002,"message":"no"}"#.into()),
                            };
                            let topic = format!("$dps/registrations/res/{status}/?$rid={rid}");
                            let resp = Publish::new(topic, QoS::AtMostOnce, 0, Bytes::from(body));
                            encode(&Packet::Publish(resp), &mut out).unwrap();
                        }
                        Packet::Disconnect => return,
                        _ => {}
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

fn options(pki: &Pki, transport: Transport, port: u16, service_port: u16) -> RegisterBenchOptions {
    RegisterBenchOptions {
        count: 8,
        concurrency: 3,
        transport,
        dps_host: "localhost".into(),
        port,
        id_scope: SCOPE.into(),
        ca_pem_path: pki.ca_path.clone(),
        dps_service_connection_string: format!(
            "HostName={DPS_HOST_NAME};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={SERVICE_KEY}"
        ),
        service_port,
        handshake_count: 0,
        progress: fleethub_bench::ProgressMode::Lines,
    }
}

fn check(report: &fleethub_bench::RegisterBenchReport, state: &State, transport: &str) {
    assert_eq!(report.transport, transport);
    assert_eq!((report.count, report.concurrency), (8, 3));
    // bench-{run}-3 is rejected by the fake server.
    assert_eq!(report.registered, 7, "{report}");
    assert_eq!(report.registration_errors, 1);
    assert!(
        report.first_error.as_deref().unwrap().contains("-3"),
        "{report}"
    );
    assert_eq!((report.handshake_count, report.handshakes), (8, 8));
    assert_eq!(report.errors, 1);
    assert!(report.registrations_per_sec > 0.0 && report.tls_handshakes_per_sec > 0.0);
    let expected = report.registrations_per_sec / report.tls_handshakes_per_sec;
    assert!((report.ratio - expected).abs() < 1e-9);
    assert!(report.p50_ms > 0.0 && report.p99_ms >= report.p50_ms);
    assert_eq!(state.deleted.load(Ordering::SeqCst), 1, "group deleted");
    let registered = state.registered.lock().unwrap();
    assert_eq!(registered.len(), 7);
    let group = state.group_id.lock().unwrap().clone().unwrap();
    assert_eq!(report.enrollment_group_id, group);
    assert!(
        registered
            .iter()
            .all(|r| r.starts_with(&format!("{group}-")))
    );
    let json = serde_json::to_value(report).unwrap();
    assert!(json["registrationsPerSec"].is_number() && json["p99Ms"].is_number());
}

#[tokio::test]
async fn https_bench_registers_through_a_fresh_group() {
    let pki = pki();
    let state = Arc::new(State::default());
    let port = https_listener(&pki, state.clone()).await;
    let report = run_register_bench(options(&pki, Transport::Https, port, port))
        .await
        .unwrap();
    check(&report, &state, "https");
    // 2 service calls (create + delete, possibly on one keep-alive connection),
    // one connection per registration and per handshake.
    let conns = state.connections.load(Ordering::SeqCst);
    assert!((17..=18).contains(&conns), "{conns}");
    let _ = std::fs::remove_file(&pki.ca_path);
}

#[tokio::test]
async fn mqtt_bench_registers_through_a_fresh_group() {
    let pki = pki();
    let state = Arc::new(State::default());
    let service_port = https_listener(&pki, state.clone()).await;
    let mqtt_port = mqtt_listener(&pki, state.clone()).await;
    let report = run_register_bench(options(&pki, Transport::Mqtt, mqtt_port, service_port))
        .await
        .unwrap();
    check(&report, &state, "mqtt");
    let _ = std::fs::remove_file(&pki.ca_path);
}

#[tokio::test]
async fn group_creation_failure_is_an_error() {
    let pki = pki();
    let state = Arc::new(State::default());
    let port = https_listener(&pki, state).await;
    let mut opts = options(&pki, Transport::Https, port, port);
    // Wrong service key: the fake answers 401.
    opts.dps_service_connection_string = format!(
        "HostName={DPS_HOST_NAME};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={}",
        fleethub_core::keys::generate_key()
    );
    let err = run_register_bench(opts).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("create enrollment group") && text.contains("401"),
        "{text}"
    );
    let _ = std::fs::remove_file(&pki.ca_path);
}

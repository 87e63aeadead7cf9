//! Provisioning flow tests: the shared state machine, the MQTT flow against an in-test
//! broker (in memory and over TLS) and the HTTPS flow against an in-test DPS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleethub_core::sas::SasToken;
use fleethub_mqtt_codec::{ConnAck, ConnectReturnCode, Packet, QoS};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::*;
use crate::mqtt_client::MqttError;
use crate::mqtt_client::tests::{FakeBroker, pair};
use crate::test_support::TestPki;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SCOPE: &str = "0ne00000A0A";

fn builder(pki: &TestPki) -> ProvisioningClientBuilder {
    ProvisioningClient::builder()
        .global_endpoint("localhost")
        .id_scope(SCOPE)
        .registration_id("dev-01")
        .symmetric_key(KEY)
        .ca_pem(pki.ca_pem.clone())
}

fn assigning(op: &str) -> String {
    json!({"operationId": op, "status": "assigning",
           "registrationState": {"registrationId": "dev-01", "status": "assigning"}})
    .to_string()
}

fn assigned(op: &str, payload: Option<Value>) -> String {
    let mut state = json!({"registrationId": "dev-01", "assignedHub": "hub.fleethub.local",
        "deviceId": "dev-01", "status": "assigned", "substatus": "initialAssignment",
        "createdDateTimeUtc": "2024-05-06T18:26:43Z", "etag": "e1"});
    if let Some(p) = payload {
        state["payload"] = p;
    }
    json!({"operationId": op, "status": "assigned", "registrationState": state}).to_string()
}

const UNAUTHORIZED: &str = r#"{"errorCode":401002,"trackingId":"a5c087cd","message":"Unauthorized","timestampUtc":"2021-10-13T09:00:13Z","info":{}}"#;

// ---------------------------------------------------------------- state machine

#[test]
fn interpret_covers_every_status_class() {
    assert_eq!(
        interpret(
            202,
            assigning("op1").as_bytes(),
            Some(3),
            &PollPolicy::default()
        )
        .unwrap(),
        Next::Poll {
            operation_id: "op1".into(),
            after: Duration::from_secs(3)
        }
    );
    assert_eq!(
        interpret(429, b"", None, &PollPolicy::default()).unwrap(),
        Next::Retry {
            after: Duration::from_secs(2)
        }
    );
    assert_eq!(
        interpret(503, b"not json", Some(100), &PollPolicy::default()).unwrap(),
        Next::Retry {
            after: Duration::from_mins(1)
        }
    );
    let Next::Done(r) = interpret(
        200,
        assigned("op1", None).as_bytes(),
        None,
        &PollPolicy::default(),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            r.assigned_hub.as_str(),
            r.device_id.as_str(),
            r.substatus.as_deref()
        ),
        ("hub.fleethub.local", "dev-01", Some("initialAssignment"))
    );
    let err = interpret(401, UNAUTHORIZED.as_bytes(), None, &PollPolicy::default()).unwrap_err();
    assert!(err.is_unauthorized());
    assert!(matches!(
        &err,
        ProvisioningError::Service { status: 401, error_code: Some(401002), message, tracking_id: Some(t) }
            if message == "Unauthorized" && t == "a5c087cd"
    ));
    assert_eq!(
        err.to_string(),
        "DPS answered 401 (errorCode 401002): Unauthorized"
    );

    let failed = json!({"operationId": "op", "status": "failed", "registrationState":
        {"registrationId": "dev-01", "status": "failed", "errorCode": 400209, "errorMessage": "no hub"}});
    let err = interpret(
        200,
        failed.to_string().as_bytes(),
        None,
        &PollPolicy::default(),
    )
    .unwrap_err();
    assert!(matches!(
        &err,
        ProvisioningError::RegistrationFailed { status, error_code: Some(400209), .. } if status == "failed"
    ));
    assert_eq!(
        err.to_string(),
        "registration failed (errorCode 400209): no hub"
    );
    let disabled = json!({"operationId": "op", "status": "disabled"});
    assert!(matches!(
        interpret(
            200,
            disabled.to_string().as_bytes(),
            None,
            &PollPolicy::default()
        ),
        Err(ProvisioningError::RegistrationFailed { .. })
    ));
}

#[test]
fn poll_policy_bounds_the_wait() {
    let p = PollPolicy::default();
    assert_eq!(p.delay(None), Duration::from_secs(2));
    assert_eq!(p.delay(Some(0)), Duration::from_secs(1));
    assert_eq!(p.delay(Some(600)), Duration::from_mins(1));
    assert_eq!(PollPolicy::IMMEDIATE.delay(Some(5)), Duration::ZERO);
    // Only `assigning` polls follow the policy; throttling keeps the standard clamp.
    let poll = interpret(
        202,
        assigning("o").as_bytes(),
        Some(3),
        &PollPolicy::IMMEDIATE,
    )
    .unwrap();
    assert_eq!(
        poll,
        Next::Poll {
            operation_id: "o".into(),
            after: Duration::ZERO
        }
    );
    let retry = interpret(429, b"", Some(0), &PollPolicy::IMMEDIATE).unwrap();
    assert_eq!(
        retry,
        Next::Retry {
            after: Duration::from_secs(1)
        }
    );
}

#[test]
fn interpret_rejects_malformed_responses() {
    for (status, body) in [
        (200, "{"),
        (200, r#"{"status":"assigned"}"#),
        (200, r#"{"operationId":"o","status":"assigned"}"#),
        (
            200,
            r#"{"operationId":"o","status":"assigned","registrationState":{"registrationId":"d"}}"#,
        ),
        (200, r#"{"operationId":"o","status":"unassigned"}"#),
    ] {
        assert!(
            matches!(
                interpret(status, body.as_bytes(), None, &PollPolicy::default()),
                Err(ProvisioningError::InvalidResponse(_))
            ),
            "{body}"
        );
    }
}

#[test]
fn service_errors_accept_both_error_shapes() {
    let hub =
        r#"{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized","ExceptionMessage":"x"}"#;
    assert!(matches!(
        service_error(403, hub.as_bytes()),
        ProvisioningError::Service { status: 403, error_code: None, message, .. } if message.contains("Unauthorized")
    ));
    assert!(matches!(
        service_error(404, b"plain text"),
        ProvisioningError::Service { message, .. } if message == "plain text"
    ));
    assert!(matches!(
        service_error(400, br#"{"errorCode":"400004","message":"bad"}"#),
        ProvisioningError::Service {
            error_code: Some(400004),
            ..
        }
    ));
    assert!(matches!(
        service_error(400, b""),
        ProvisioningError::Service { message, .. } if message == "(empty body)"
    ));
}

// ---------------------------------------------------------------- builder

#[test]
fn builder_validates_and_derives_group_keys() {
    let pki = TestPki::new();
    let c = builder(&pki).build().unwrap();
    assert_eq!((c.port(), c.transport()), (8883, Transport::Mqtt));
    assert_eq!(c.timeout(), DEFAULT_TIMEOUT);
    assert!(!format!("{c:?}").contains(KEY));
    let c = builder(&pki).transport(Transport::Https).build().unwrap();
    assert_eq!(c.port(), 443);
    let c = builder(&pki).port(9999).build().unwrap();
    assert_eq!(c.port(), 9999);

    // Test vector from docs/protocol-notes.md, "SAS tokens".
    let c = builder(&pki).group_key(KEY).build().unwrap();
    assert_eq!(
        c.device_key(),
        "luaCqHSmg758Dy2PlrF3Vl83Pcf53G9Nc/vj86Xl0d4="
    );

    assert!(matches!(
        builder(&pki).id_scope(" ").build(),
        Err(ProvisioningError::Config(_))
    ));
    assert!(matches!(
        builder(&pki).registration_id("a/b").build(),
        Err(ProvisioningError::Config(_))
    ));
    assert!(matches!(
        builder(&pki).symmetric_key("short").build(),
        Err(ProvisioningError::Key(_))
    ));
    assert!(matches!(
        ProvisioningClient::builder()
            .id_scope("s")
            .registration_id("r")
            .ca_pem(pki.ca_pem.clone())
            .build(),
        Err(ProvisioningError::Config(_))
    ));
    assert!(matches!(
        builder(&pki).ca_pem_file("/nonexistent.pem").build(),
        Err(ProvisioningError::Tls(_))
    ));
}

#[test]
fn transport_parses_and_prints() {
    assert_eq!("MQTT".parse::<Transport>(), Ok(Transport::Mqtt));
    assert_eq!("https".parse::<Transport>(), Ok(Transport::Https));
    assert!("amqp".parse::<Transport>().is_err());
    assert_eq!(Transport::Https.to_string(), "https");
}

#[test]
fn sas_token_signs_the_device_resource() {
    let pki = TestPki::new();
    let c = builder(&pki).build().unwrap();
    let token = SasToken::parse(&c.sas_token().unwrap()).unwrap();
    assert_eq!(token.sr_raw, "0ne00000A0A%2Fregistrations%2Fdev-01");
    assert_eq!(token.skn.as_deref(), Some("registration"));
    assert!(token.verify_signature(KEY).unwrap());
    let ttl = token.expiry - fleethub_core::time_util::now_unix();
    assert!((3590..=3600).contains(&ttl), "{ttl}");
}

// ---------------------------------------------------------------- MQTT flow

#[tokio::test]
async fn mqtt_assigning_then_poll_then_assigned() {
    let pki = TestPki::new();
    let client = builder(&pki).build().unwrap();
    let (stream, mut broker) = pair();
    let server = tokio::spawn(async move {
        let c = broker.accept().await;
        assert_eq!(c.client_id, "dev-01");
        assert_eq!(c.protocol_level, 4);
        assert_eq!(
            c.username.as_deref(),
            Some(
                format!(
                    "0ne00000A0A/registrations/dev-01/api-version=2019-03-31&ClientVersion=fleethub-device%2F{}",
                    env!("CARGO_PKG_VERSION")
                )
                .as_str()
            )
        );
        let token = SasToken::parse(std::str::from_utf8(&c.password.unwrap()).unwrap()).unwrap();
        assert!(token.verify_signature(KEY).unwrap());
        assert!(token.covers("0ne00000A0A/registrations/dev-01"));

        let filters = broker.expect_subscribe().await;
        assert_eq!(
            filters,
            vec![("$dps/registrations/res/#".to_string(), QoS::AtLeastOnce)]
        );

        let p = broker.expect_publish().await;
        assert_eq!(p.topic, "$dps/registrations/PUT/iotdps-register/?$rid=1");
        assert_eq!(p.qos, QoS::AtLeastOnce);
        let body: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(body, json!({"registrationId": "dev-01", "payload": null}));
        // Noise first: a response for another rid must be ignored.
        broker
            .publish(
                "$dps/registrations/res/200/?$rid=99",
                QoS::AtMostOnce,
                0,
                "{}",
            )
            .await;
        broker
            .publish(
                "$dps/registrations/res/202/?$rid=1&retry-after=1",
                QoS::AtLeastOnce,
                1,
                &assigning("5.op.1"),
            )
            .await;
        assert_eq!(broker.recv().await, Some(Packet::PubAck(1)));
        let asked = Instant::now();

        let p = broker.expect_publish().await;
        assert!(
            asked.elapsed() >= Duration::from_millis(900),
            "honours retry-after"
        );
        assert_eq!(
            p.topic,
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=5.op.1"
        );
        assert_eq!(&p.payload[..], b" ");
        broker
            .publish(
                "$dps/registrations/res/200/?$rid=2",
                QoS::AtLeastOnce,
                2,
                &assigned("5.op.1", Some(json!({"hello": "device"}))),
            )
            .await;
        assert_eq!(broker.recv().await, Some(Packet::PubAck(2)));
        assert_eq!(broker.recv().await, Some(Packet::Disconnect));
    });
    let result = client.register_mqtt_over(stream).await.unwrap();
    server.await.unwrap();
    assert_eq!(result.status, "assigned");
    assert_eq!(result.operation_id, "5.op.1");
    assert_eq!(result.assigned_hub, "hub.fleethub.local");
    assert_eq!(result.device_id, "dev-01");
    assert_eq!(result.substatus.as_deref(), Some("initialAssignment"));
    assert_eq!(result.payload, Some(json!({"hello": "device"})));
    assert_eq!(result.registration_state.etag.as_deref(), Some("e1"));
}

#[tokio::test]
async fn mqtt_sends_the_custom_payload() {
    let pki = TestPki::new();
    let client = builder(&pki)
        .payload(json!({"modelId": "dtmi:x;1"}))
        .build()
        .unwrap();
    let (stream, mut broker) = pair();
    let server = tokio::spawn(async move {
        broker.accept().await;
        broker.expect_subscribe().await;
        let p = broker.expect_publish().await;
        let body: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(body["payload"], json!({"modelId": "dtmi:x;1"}));
        broker
            .publish(
                "$dps/registrations/res/200/?$rid=1",
                QoS::AtMostOnce,
                0,
                &assigned("op", None),
            )
            .await;
    });
    let result = client.register_mqtt_over(stream).await.unwrap();
    assert_eq!(result.device_id, "dev-01");
    server.await.unwrap();
}

#[tokio::test]
async fn mqtt_401_maps_the_json_error_body() {
    let pki = TestPki::new();
    let client = builder(&pki).build().unwrap();
    let (stream, mut broker) = pair();
    tokio::spawn(async move {
        broker.accept().await;
        broker.expect_subscribe().await;
        broker.expect_publish().await;
        broker
            .publish(
                "$dps/registrations/res/401/?$rid=1",
                QoS::AtLeastOnce,
                1,
                UNAUTHORIZED,
            )
            .await;
        while broker.recv().await.is_some() {}
    });
    let err = client.register_mqtt_over(stream).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert!(matches!(
        err,
        ProvisioningError::Service {
            status: 401,
            error_code: Some(401002),
            ..
        }
    ));
}

#[tokio::test]
async fn mqtt_connack_5_is_connection_refused() {
    let pki = TestPki::new();
    let client = builder(&pki).build().unwrap();
    let (stream, mut broker) = pair();
    tokio::spawn(async move {
        broker.expect_connect().await;
        broker
            .send(Packet::ConnAck(ConnAck::new(
                ConnectReturnCode::NotAuthorized,
                false,
            )))
            .await;
    });
    let err = client.register_mqtt_over(stream).await.unwrap_err();
    assert!(err.is_unauthorized());
    assert!(
        matches!(
            err,
            ProvisioningError::ConnectionRefused {
                code: 5,
                reason: "not authorized"
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("CONNACK code 5"));
}

#[tokio::test]
async fn mqtt_throttling_repeats_the_register_request() {
    let pki = TestPki::new();
    let client = builder(&pki).build().unwrap();
    let (stream, mut broker) = pair();
    let server = tokio::spawn(async move {
        broker.accept().await;
        broker.expect_subscribe().await;
        let p = broker.expect_publish().await;
        assert!(p.topic.ends_with("?$rid=1"));
        broker
            .publish(
                "$dps/registrations/res/429/?$rid=1&retry-after=1",
                QoS::AtMostOnce,
                0,
                r#"{"errorCode":429001,"message":"throttled"}"#,
            )
            .await;
        let p = broker.expect_publish().await;
        assert_eq!(p.topic, "$dps/registrations/PUT/iotdps-register/?$rid=2");
        broker
            .publish(
                "$dps/registrations/res/200/?$rid=2",
                QoS::AtMostOnce,
                0,
                &assigned("op", None),
            )
            .await;
    });
    let result = client.register_mqtt_over(stream).await.unwrap();
    assert_eq!(result.assigned_hub, "hub.fleethub.local");
    server.await.unwrap();
}

#[tokio::test]
async fn mqtt_silent_server_hits_the_overall_timeout() {
    let pki = TestPki::new();
    let client = builder(&pki)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (stream, mut broker) = pair();
    let server = tokio::spawn(async move {
        broker.accept().await;
        broker.expect_subscribe().await;
        broker.expect_publish().await;
        // Keep the connection open until the client gives up.
        while broker.recv().await.is_some() {}
    });
    let err = client.register_mqtt_over(stream).await.unwrap_err();
    assert!(matches!(err, ProvisioningError::Timeout(_)), "{err}");
    server.await.unwrap();
}

#[tokio::test]
async fn mqtt_connection_drop_is_reported() {
    let pki = TestPki::new();
    let client = builder(&pki).build().unwrap();
    let (stream, mut broker) = pair();
    tokio::spawn(async move {
        broker.accept().await;
        broker.expect_subscribe().await;
        broker.expect_publish().await;
    });
    let err = client.register_mqtt_over(stream).await.unwrap_err();
    assert!(
        matches!(err, ProvisioningError::Mqtt(MqttError::ConnectionLost(_))),
        "{err}"
    );
}

#[tokio::test]
async fn mqtt_register_over_tls_on_a_configured_port() {
    let pki = TestPki::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = pki.acceptor();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut broker = FakeBroker::new(tls);
        broker.accept().await;
        broker.expect_subscribe().await;
        broker.expect_publish().await;
        broker
            .publish(
                "$dps/registrations/res/200/?$rid=1",
                QoS::AtLeastOnce,
                5,
                &assigned("op", None),
            )
            .await;
        assert_eq!(broker.recv().await, Some(Packet::PubAck(5)));
        assert_eq!(broker.recv().await, Some(Packet::Disconnect));
    });
    let client = builder(&pki)
        .global_endpoint("127.0.0.1")
        .port(port)
        .build()
        .unwrap();
    let result = client.register().await.unwrap();
    assert_eq!(result.device_id, "dev-01");
    server.await.unwrap();
}

// ---------------------------------------------------------------- HTTPS flow

type Handler =
    Arc<dyn Fn(&http::request::Parts, &[u8]) -> http::Response<Full<Bytes>> + Send + Sync>;

/// An in-test DPS device API over TLS; returns (port, connection count, request count).
async fn fake_dps(pki: &TestPki, handler: Handler) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = pki.acceptor();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: http::Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        Ok::<_, std::convert::Infallible>(handler(&parts, &body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, conns)
}

fn json_response(
    status: u16,
    body: String,
    retry_after: Option<&str>,
) -> http::Response<Full<Bytes>> {
    let mut b = http::Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8");
    if let Some(r) = retry_after {
        b = b.header("retry-after", r);
    }
    b.body(Full::new(Bytes::from(body))).unwrap()
}

#[tokio::test]
async fn https_register_then_poll_on_one_connection() {
    let pki = TestPki::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let handler: Handler = Arc::new(move |parts, body| {
        let auth = parts
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        let token = SasToken::parse(auth).unwrap();
        assert!(token.verify_signature(KEY).unwrap());
        assert_eq!(token.skn.as_deref(), Some("registration"));
        assert_eq!(parts.headers["accept"], "application/json");
        log.lock()
            .unwrap()
            .push(format!("{} {}", parts.method, parts.uri));
        match parts.method.as_str() {
            "PUT" => {
                assert_eq!(
                    parts.headers["content-type"],
                    "application/json; charset=utf-8"
                );
                let body: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(
                    body,
                    json!({"registrationId": "dev-01", "payload": {"modelId": "m"}})
                );
                json_response(
                    202,
                    json!({"operationId": "5.a.b", "status": "assigning"}).to_string(),
                    Some("1"),
                )
            }
            _ => json_response(200, assigned("5.a.b", Some(json!({"k": 1}))), None),
        }
    });
    let (port, conns) = fake_dps(&pki, handler).await;
    let client = builder(&pki)
        .transport(Transport::Https)
        .port(port)
        .payload(json!({"modelId": "m"}))
        .build()
        .unwrap();
    let started = Instant::now();
    let result = client.register().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "honours Retry-After"
    );
    assert_eq!(result.assigned_hub, "hub.fleethub.local");
    assert_eq!(result.payload, Some(json!({"k": 1})));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "PUT /0ne00000A0A/registrations/dev-01/register?api-version=2021-06-01".to_string(),
            "GET /0ne00000A0A/registrations/dev-01/operations/5.a.b?api-version=2021-06-01"
                .to_string(),
        ]
    );
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn https_omits_absent_payload_and_maps_401() {
    let pki = TestPki::new();
    let handler: Handler = Arc::new(|_, body| {
        let body: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(body, json!({"registrationId": "dev-01"}));
        json_response(401, UNAUTHORIZED.to_string(), None)
    });
    let (port, _) = fake_dps(&pki, handler).await;
    let client = builder(&pki)
        .transport(Transport::Https)
        .port(port)
        .build()
        .unwrap();
    let err = client.register().await.unwrap_err();
    assert!(err.is_unauthorized());
    assert!(
        matches!(&err, ProvisioningError::Service { status: 401, error_code: Some(401002), message, .. } if message == "Unauthorized"),
        "{err}"
    );
}

#[tokio::test]
async fn https_retries_server_errors() {
    let pki = TestPki::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    let handler: Handler = Arc::new(move |parts, _| {
        assert_eq!(parts.method, "PUT");
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            json_response(503, "{}".into(), Some("1"))
        } else {
            json_response(200, assigned("op", None), None)
        }
    });
    let (port, _) = fake_dps(&pki, handler).await;
    let client = builder(&pki)
        .transport(Transport::Https)
        .port(port)
        .build()
        .unwrap();
    assert_eq!(client.register().await.unwrap().device_id, "dev-01");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------- MQTT writes

/// A stream that records what each write call carried.
struct RecordedWrites<S> {
    inner: S,
    writes: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for RecordedWrites<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for RecordedWrites<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            self.writes.lock().unwrap().push(buf[..n].to_vec());
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The packets of one write, by name.
fn packet_names(write: &[u8]) -> Vec<&'static str> {
    let mut buf = bytes::BytesMut::from(write);
    let mut names = Vec::new();
    while let Some(p) = fleethub_mqtt_codec::decode(&mut buf, 1 << 20).unwrap() {
        names.push(match p {
            Packet::PubAck(_) => "PUBACK",
            other => other.name(),
        });
    }
    assert!(buf.is_empty(), "a write ends inside a packet");
    names
}

#[tokio::test]
async fn mqtt_sends_connect_subscribe_and_register_in_one_write_and_acks_with_the_next() {
    let pki = TestPki::new();
    let client = builder(&pki)
        .poll_policy(PollPolicy::IMMEDIATE)
        .build()
        .unwrap();
    let (stream, mut broker) = pair();
    let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stream = RecordedWrites {
        inner: stream,
        writes: writes.clone(),
    };
    let server = tokio::spawn(async move {
        // All three arrive before the broker answers anything.
        assert!(matches!(broker.recv().await, Some(Packet::Connect(_))));
        let Some(Packet::Subscribe(s)) = broker.recv().await else {
            panic!("expected SUBSCRIBE")
        };
        let Some(Packet::Publish(register)) = broker.recv().await else {
            panic!("expected PUBLISH")
        };
        assert_eq!(
            register.topic,
            "$dps/registrations/PUT/iotdps-register/?$rid=1"
        );
        assert_ne!(register.pkid, s.pkid);
        broker
            .send(Packet::ConnAck(ConnAck::new(
                ConnectReturnCode::Accepted,
                false,
            )))
            .await;
        let granted = vec![fleethub_mqtt_codec::SubscribeReturnCode::Success(
            QoS::AtLeastOnce,
        )];
        broker
            .send(Packet::SubAck(fleethub_mqtt_codec::SubAck::new(
                s.pkid, granted,
            )))
            .await;
        broker.send(Packet::PubAck(register.pkid)).await;
        broker
            .publish(
                "$dps/registrations/res/202/?$rid=1&retry-after=3",
                QoS::AtLeastOnce,
                7,
                &assigning("op-9"),
            )
            .await;
        assert_eq!(broker.recv().await, Some(Packet::PubAck(7)));
        let poll = broker.expect_publish().await;
        assert_eq!(
            poll.topic,
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=op-9"
        );
        broker
            .publish(
                "$dps/registrations/res/200/?$rid=2",
                QoS::AtLeastOnce,
                8,
                &assigned("op-9", None),
            )
            .await;
        assert_eq!(broker.recv().await, Some(Packet::PubAck(8)));
        assert_eq!(broker.recv().await, Some(Packet::Disconnect));
        assert_eq!(broker.recv().await, None);
    });
    let result = client.register_mqtt_over(stream).await.unwrap();
    server.await.unwrap();
    assert_eq!(result.operation_id, "op-9");
    let writes: Vec<_> = writes
        .lock()
        .unwrap()
        .iter()
        .map(|w| packet_names(w))
        .collect();
    assert_eq!(
        writes,
        vec![
            vec!["CONNECT", "SUBSCRIBE", "PUBLISH"],
            vec!["PUBACK", "PUBLISH"],
            vec!["PUBACK", "DISCONNECT"],
        ]
    );
}

#[tokio::test]
async fn mqtt_acks_an_answer_at_once_before_waiting_to_poll() {
    let pki = TestPki::new();
    let client = builder(&pki).build().unwrap();
    let (stream, mut broker) = pair();
    let server = tokio::spawn(async move {
        broker.accept().await;
        broker.expect_subscribe().await;
        broker.expect_publish().await;
        broker
            .publish(
                "$dps/registrations/res/202/?$rid=1&retry-after=2",
                QoS::AtLeastOnce,
                1,
                &assigning("op"),
            )
            .await;
        let answered = Instant::now();
        assert_eq!(broker.recv().await, Some(Packet::PubAck(1)));
        assert!(
            answered.elapsed() < Duration::from_millis(500),
            "PUBACK held back"
        );
        let p = broker.expect_publish().await;
        assert!(
            answered.elapsed() >= Duration::from_millis(1900),
            "honours retry-after"
        );
        assert!(p.topic.contains("operationId=op"));
        broker
            .publish(
                "$dps/registrations/res/200/?$rid=2",
                QoS::AtMostOnce,
                0,
                &assigned("op", None),
            )
            .await;
    });
    client.register_mqtt_over(stream).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn mqtt_refused_subscription_is_an_invalid_response() {
    let pki = TestPki::new();
    let client = builder(&pki).build().unwrap();
    let (stream, mut broker) = pair();
    tokio::spawn(async move {
        broker.accept().await;
        let Some(Packet::Subscribe(s)) = broker.recv().await else {
            panic!("expected SUBSCRIBE")
        };
        let refused = vec![fleethub_mqtt_codec::SubscribeReturnCode::Failure];
        broker
            .send(Packet::SubAck(fleethub_mqtt_codec::SubAck::new(
                s.pkid, refused,
            )))
            .await;
        while broker.recv().await.is_some() {}
    });
    let err = client.register_mqtt_over(stream).await.unwrap_err();
    assert!(
        matches!(&err, ProvisioningError::InvalidResponse(m) if m.contains("refused")),
        "{err}"
    );
}

//! End-to-end: the AMQP device plane of the real `fleethub` binary with the fe2o3-amqp client.
//! Two devices and a module multiplexed on ONE connection, each with its own `$cbs` token:
//! telemetry (read back over REST with its properties), refusals (a wrong key, another
//! identity's links, a module token on the device's links, an oversized message), presence,
//! C2D complete/abandon/reject, twin GET/PATCH/desired notifications, a direct method, and
//! revocation (a disabled device's links close at once; the other device's go on).

mod common;

use common::ServerProcess;
use common::device::{call, put_device, service};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use fe2o3_amqp_types::definitions::{self, AmqpError, ErrorCondition, LinkError};
use fe2o3_amqp_types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Message, MessageAnnotations, MessageId, Outcome,
    Properties, annotations::OwnedKey,
};
use fe2o3_amqp_types::primitives::{Binary, SimpleValue, Symbol, Value};
use serde_json::json;
use std::time::Duration;

type Msg = Message<Body<Value>>;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn amqp_connection(s: &ServerProcess) -> ConnectionHandle<()> {
    let tls = fleethub_device::ClientTlsConfig::with_ca_file(s.ca_pem())
        .unwrap()
        .connect("localhost", s.amqp_port)
        .await
        .unwrap();
    Connection::builder()
        .container_id("e2e-amqp-device")
        .hostname("localhost")
        .sasl_profile(SaslProfile::Anonymous)
        .open_with_stream(tls)
        .await
        .unwrap()
}

fn message(
    app: &[(&str, SimpleValue)],
    ann: &[(&str, Value)],
    props: Properties,
    body: &[u8],
) -> Msg {
    let mut a = ApplicationProperties::default();
    for (k, v) in app {
        a.0.insert((*k).to_string(), v.clone());
    }
    let mut m = MessageAnnotations::default();
    for (k, v) in ann {
        m.0.insert(OwnedKey::Symbol(Symbol::from(*k)), v.clone());
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: Some(m),
        properties: Some(props),
        application_properties: Some(a),
        body: Body::Data(vec![Data(Binary::from(body.to_vec()))].into()),
        footer: None,
    }
}

fn body_of(m: &Msg) -> Vec<u8> {
    match &m.body {
        Body::Data(d) => d.iter().flat_map(|x| x.0.iter().copied()).collect(),
        Body::Value(AmqpValue(Value::String(s))) => s.clone().into_bytes(),
        Body::Value(AmqpValue(Value::Binary(b))) => b.to_vec(),
        _ => Vec::new(),
    }
}

/// `$cbs`: a sender for requests, a receiver for the replies.
struct Cbs {
    tx: Sender,
    rx: Receiver,
    n: u32,
}

impl Cbs {
    async fn open(session: &mut SessionHandle<()>) -> Cbs {
        let tx = Sender::attach(session, "cbs-tx", "$cbs").await.unwrap();
        let rx = Receiver::builder()
            .name("cbs-rx")
            .source("$cbs")
            .target("cbs")
            .attach(session)
            .await
            .unwrap();
        Cbs { tx, rx, n: 0 }
    }

    /// Puts a token for `audience`; returns the reply's status-code.
    async fn put(&mut self, audience: &str, token: &str) -> i32 {
        self.n += 1;
        let mut app = ApplicationProperties::default();
        for (k, v) in [
            ("operation", "put-token"),
            ("type", "servicebus.windows.net:sastoken"),
            ("name", audience),
        ] {
            app.0.insert(k.into(), SimpleValue::String(v.into()));
        }
        let req: Msg = Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                message_id: Some(MessageId::String(format!("put-{}", self.n))),
                reply_to: Some("cbs".into()),
                ..Properties::default()
            }),
            application_properties: Some(app),
            body: Body::Value(AmqpValue(Value::String(token.into()))),
            footer: None,
        };
        self.tx.send(req).await.unwrap();
        let d = tokio::time::timeout(Duration::from_secs(10), self.rx.recv::<Body<Value>>())
            .await
            .expect("cbs reply")
            .unwrap();
        self.rx.accept(&d).await.unwrap();
        match d
            .message()
            .application_properties
            .as_ref()
            .unwrap()
            .0
            .get("status-code")
        {
            Some(SimpleValue::Int(n)) => *n,
            other => panic!("status-code {other:?}"),
        }
    }
}

/// A device's SAS token for `{host}/devices/{id}[/modules/{m}]`, and that resource.
fn device_token(host: &str, id: &str, key: &str, secs: u64) -> (String, String) {
    let resource = format!("{host}/devices/{id}");
    let token = fleethub_core::sas::build_token(&resource, key, now() + secs, None).unwrap();
    (resource, token)
}

/// The error a sender link was closed with.
async fn sender_error(s: &mut Sender) -> definitions::Error {
    match tokio::time::timeout(Duration::from_secs(10), s.on_detach()).await {
        Ok(
            fe2o3_amqp::link::DetachError::RemoteClosedWithError(e)
            | fe2o3_amqp::link::DetachError::RemoteDetachedWithError(e),
        ) => e,
        other => panic!("expected a detach with an error, got {other:?}"),
    }
}

async fn events_after(
    hub: &fleethub_service_client::ServiceClient<fleethub_service_client::HttpsTransport>,
    want: usize,
) -> Vec<serde_json::Value> {
    for _ in 0..50 {
        let (status, page) = call(hub, "GET", "/messages/events", None).await;
        assert_eq!(status, 200, "{page}");
        let msgs = page["messages"].as_array().cloned().unwrap_or_default();
        if msgs.len() >= want {
            return msgs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {want} events");
}

#[tokio::test]
async fn devices_multiplexed_on_one_connection() {
    let server = ServerProcess::start();
    let hub = service(&server);
    let host = server.info.hub_host.clone();
    let k1 = put_device(&hub, "amqp-dev-1", json!({"deviceId": "amqp-dev-1"})).await;
    let k2 = put_device(&hub, "amqp-dev-2", json!({"deviceId": "amqp-dev-2"})).await;
    let resp = hub
        .send(
            "PUT",
            "/devices/amqp-dev-1/modules/m1",
            &[],
            vec![],
            Some(&json!({"deviceId": "amqp-dev-1", "moduleId": "m1"})),
        )
        .await
        .unwrap();
    let module: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(resp.status, 200, "{module}");
    let km = module["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();

    let mut conn = amqp_connection(&server).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut cbs = Cbs::open(&mut session).await;

    // A token signed with another key is refused; each identity puts its own.
    let (r1, _) = device_token(&host, "amqp-dev-1", &k1, 600);
    let wrong = fleethub_core::sas::build_token(&r1, &k2, now() + 600, None).unwrap();
    assert_eq!(cbs.put(&r1, &wrong).await, 401);
    let (r1, t1) = device_token(&host, "amqp-dev-1", &k1, 600);
    let (r2, t2) = device_token(&host, "amqp-dev-2", &k2, 600);
    let (rm, tm) = device_token(&host, "amqp-dev-1/modules/m1", &km, 600);
    assert_eq!(cbs.put(&r1, &t1).await, 200);
    assert_eq!(cbs.put(&r2, &t2).await, 200);
    assert_eq!(cbs.put(&rm, &tm).await, 200);

    // Telemetry of both devices and the module, accepted once stored.
    let mut s1 = Sender::attach(
        &mut session,
        "d1-events",
        "/devices/amqp-dev-1/messages/events",
    )
    .await
    .unwrap();
    let mut s2 = Sender::attach(
        &mut session,
        "d2-events",
        "/devices/amqp-dev-2/messages/events",
    )
    .await
    .unwrap();
    let mut sm = Sender::attach(
        &mut session,
        "m1-events",
        "/devices/amqp-dev-1/modules/m1/messages/events",
    )
    .await
    .unwrap();
    let props = Properties {
        message_id: Some(MessageId::String("msg-1".into())),
        correlation_id: Some(MessageId::String("corr-1".into())),
        content_type: Some(Symbol::from("application/json")),
        content_encoding: Some(Symbol::from("utf-8")),
        ..Properties::default()
    };
    let m1 = message(
        &[("colour", SimpleValue::String("red".into()))],
        &[],
        props,
        b"{\"t\":21}",
    );
    assert!(matches!(s1.send(m1).await.unwrap(), Outcome::Accepted(_)));
    let m2 = message(&[], &[], Properties::default(), b"two");
    assert!(matches!(s2.send(m2).await.unwrap(), Outcome::Accepted(_)));
    let m3 = message(&[], &[], Properties::default(), b"module");
    assert!(matches!(sm.send(m3).await.unwrap(), Outcome::Accepted(_)));
    let events = events_after(&hub, 3).await;
    let e1 = events
        .iter()
        .find(|e| e["deviceId"] == "amqp-dev-1" && e.get("moduleId").is_none())
        .expect("device 1's event");
    assert_eq!(e1["systemProperties"]["message-id"], "msg-1", "{e1}");
    assert_eq!(e1["systemProperties"]["correlation-id"], "corr-1");
    assert_eq!(e1["systemProperties"]["content-type"], "application/json");
    assert_eq!(e1["systemProperties"]["content-encoding"], "utf-8");
    assert_eq!(
        e1["systemProperties"]["iothub-connection-device-id"],
        "amqp-dev-1"
    );
    assert_eq!(e1["properties"]["colour"], "red");
    assert!(events.iter().any(|e| e["deviceId"] == "amqp-dev-2"));
    assert!(
        events
            .iter()
            .any(|e| e["deviceId"] == "amqp-dev-1" && e["moduleId"] == "m1")
    );

    // Oversized: rejected with amqp:link:message-size-exceeded, nothing stored.
    let big = message(&[], &[], Properties::default(), &vec![b'x'; 300 * 1024]);
    match s1.send(big).await.unwrap() {
        Outcome::Rejected(r) => assert_eq!(
            r.error.unwrap().condition,
            ErrorCondition::LinkError(LinkError::MessageSizeExceeded)
        ),
        other => panic!("{other:?}"),
    }

    // Far over the limit: the link is closed as soon as the transfers pass it (nothing that
    // large is buffered).
    let mut big_link = Sender::attach(
        &mut session,
        "d1-huge",
        "/devices/amqp-dev-1/messages/events",
    )
    .await
    .unwrap();
    let huge = message(
        &[],
        &[],
        Properties::default(),
        &vec![b'y'; 2 * 1024 * 1024],
    );
    let sent = tokio::time::timeout(Duration::from_secs(10), big_link.send(huge))
        .await
        .expect("an answer to a huge message");
    assert!(
        format!("{sent:?}").contains("MessageSizeExceeded"),
        "{sent:?}"
    );

    // Presence.
    let (_, shown) = call(&hub, "GET", "/devices/amqp-dev-1", None).await;
    assert_eq!(shown["connectionState"], "Connected", "{shown}");
    assert!(shown["lastActivityTime"].as_str().is_some(), "{shown}");
    // Metrics count the AMQP identities and their messages like MQTT's.
    let metrics = hub
        .send("GET", "/metrics", &[], vec![], None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.lines().any(|l| l == "fleethub_connected_devices 3"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "fleethub_telemetry_messages_total 3"),
        "{text}"
    );

    batched(&hub, &mut s1).await;
    refusals(&server, &mut session, (&rm, &tm)).await;
    c2d(&hub, &mut session).await;
    twin(&hub, &mut session).await;
    method(&hub, &mut session).await;

    revocation(&hub, (&mut s1, &mut s2), &mut cbs, &host, &k2).await;
    let _ = conn.close().await;
}

/// A delivery in the batch format the C SDK sends (message format 0x80013700, each data
/// section an encoded message): every message of it is stored, then the delivery accepted.
async fn batched(
    hub: &fleethub_service_client::ServiceClient<fleethub_service_client::HttpsTransport>,
    s1: &mut Sender,
) {
    use fe2o3_amqp_types::messaging::message::__private::Serializable;
    let section = |id: &str| {
        let m = message(
            &[("batched", SimpleValue::String("yes".into()))],
            &[],
            Properties {
                message_id: Some(MessageId::String(id.into())),
                ..Properties::default()
            },
            id.as_bytes(),
        );
        Data(Binary::from(serde_amqp::to_vec(&Serializable(m)).unwrap()))
    };
    let outer: Msg = Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: None,
        application_properties: None,
        body: Body::Data(vec![section("b-1"), section("b-2")].into()),
        footer: None,
    };
    let sendable = fe2o3_amqp::Sendable::builder()
        .message(outer)
        .message_format(0x8001_3700)
        .build();
    assert!(matches!(
        s1.send(sendable).await.unwrap(),
        Outcome::Accepted(_)
    ));
    let events = events_after(hub, 5).await;
    for id in ["b-1", "b-2"] {
        let e = events
            .iter()
            .find(|e| e["systemProperties"]["message-id"] == id)
            .unwrap_or_else(|| panic!("{id} not stored: {events:?}"));
        assert_eq!(e["deviceId"], "amqp-dev-1");
        assert_eq!(e["properties"]["batched"], "yes");
    }
}

/// Links of an identity without a token are refused; a module token does not open the
/// device's links (a fresh connection holding only the module token).
async fn refusals(server: &ServerProcess, session: &mut SessionHandle<()>, (rm, tm): (&str, &str)) {
    let mut other = Sender::attach(session, "d3-events", "/devices/amqp-dev-3/messages/events")
        .await
        .unwrap();
    let e = sender_error(&mut other).await;
    assert_eq!(
        e.condition,
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
        "{e:?}"
    );
    {
        let mut c2 = amqp_connection(server).await;
        let mut sess2 = Session::begin(&mut c2).await.unwrap();
        let mut cbs2 = Cbs::open(&mut sess2).await;
        assert_eq!(cbs2.put(rm, tm).await, 200);
        let mut wrong_link =
            Sender::attach(&mut sess2, "m-on-d", "/devices/amqp-dev-1/messages/events")
                .await
                .unwrap();
        let e = sender_error(&mut wrong_link).await;
        assert_eq!(
            e.condition,
            ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess)
        );
        let _ = c2.close().await;
    }
}

/// Revocation: disabling device 2 closes its link at once (and it no longer shows connected);
/// device 1 goes on; a renewed token of the disabled device is refused.
async fn revocation(
    hub: &fleethub_service_client::ServiceClient<fleethub_service_client::HttpsTransport>,
    (s1, s2): (&mut Sender, &mut Sender),
    cbs: &mut Cbs,
    host: &str,
    k2: &str,
) {
    let (status, d2) = call(hub, "GET", "/devices/amqp-dev-2", None).await;
    assert_eq!(status, 200);
    let mut disabled = d2.clone();
    disabled["status"] = json!("disabled");
    let (status, _) = call(hub, "PUT", "/devices/amqp-dev-2", Some(&disabled)).await;
    assert_eq!(status, 200);
    let e = sender_error(s2).await;
    assert_eq!(
        e.condition,
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
        "{e:?}"
    );
    assert_eq!(
        state_soon(hub, "amqp-dev-2", "Disconnected").await,
        "Disconnected"
    );
    let after = message(&[], &[], Properties::default(), b"still here");
    assert!(matches!(
        s1.send(after).await.unwrap(),
        Outcome::Accepted(_)
    ));
    // A renewed token of the disabled device is refused.
    let (r2, t2) = device_token(host, "amqp-dev-2", k2, 600);
    assert_eq!(cbs.put(&r2, &t2).await, 401);
}

/// The device's `connectionState` once it is `want` (polled for up to 3 s), else the last one.
async fn state_soon(
    hub: &fleethub_service_client::ServiceClient<fleethub_service_client::HttpsTransport>,
    id: &str,
    want: &str,
) -> String {
    let mut last = String::new();
    for _ in 0..30 {
        let (_, d) = call(hub, "GET", &format!("/devices/{id}"), None).await;
        last = d["connectionState"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// The next delivery (within 10 s).
async fn next(rx: &mut Receiver) -> fe2o3_amqp::link::delivery::Delivery<Body<Value>> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv::<Body<Value>>())
        .await
        .expect("a message")
        .unwrap()
}

/// C2D: complete (accepted), abandon (released: delivered again) and reject.
async fn c2d(
    hub: &fleethub_service_client::ServiceClient<fleethub_service_client::HttpsTransport>,
    session: &mut SessionHandle<()>,
) {
    for (i, id) in ["c-1", "c-2"].iter().enumerate() {
        let (status, body) = call(
            hub,
            "POST",
            "/devices/amqp-dev-1/messages/deviceBound",
            Some(&json!({"body": format!("hello {i}"), "messageId": id, "properties": {"k": "v"}})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut rx = Receiver::builder()
        .name("d1-c2d")
        .source("/devices/amqp-dev-1/messages/devicebound")
        .target("c2d")
        .auto_accept(false)
        .attach(session)
        .await
        .unwrap();
    let d = next(&mut rx).await;
    let p = d.message().properties.clone().unwrap();
    assert_eq!(p.message_id, Some(MessageId::String("c-1".into())));
    assert_eq!(body_of(d.message()), b"hello 0");
    assert_eq!(
        d.message()
            .application_properties
            .as_ref()
            .unwrap()
            .0
            .get("k"),
        Some(&SimpleValue::String("v".into()))
    );
    rx.accept(&d).await.unwrap();
    let d = next(&mut rx).await;
    assert_eq!(
        d.message().properties.as_ref().unwrap().message_id,
        Some(MessageId::String("c-2".into()))
    );
    rx.release(&d).await.unwrap();
    let d = next(&mut rx).await;
    assert_eq!(
        d.message().properties.as_ref().unwrap().message_id,
        Some(MessageId::String("c-2".into())),
        "abandoned: delivered again"
    );
    assert_eq!(d.message().header.as_ref().unwrap().delivery_count, 1);
    rx.reject(&d, None).await.unwrap();
    // Nothing is left to deliver.
    assert!(
        tokio::time::timeout(Duration::from_millis(800), rx.recv::<Body<Value>>())
            .await
            .is_err()
    );
    rx.close().await.unwrap();
}

fn twin_request(op: &str, resource: Option<&str>, corr: &str, body: &[u8]) -> Msg {
    let mut ann: Vec<(&str, Value)> = vec![("operation", Value::String(op.into()))];
    if let Some(r) = resource {
        ann.push(("resource", Value::String(r.into())));
    }
    message(
        &[],
        &ann,
        Properties {
            correlation_id: Some(MessageId::String(corr.into())),
            ..Properties::default()
        },
        body,
    )
}

fn ann_of<'a>(m: &'a Msg, key: &str) -> Option<&'a Value> {
    m.message_annotations
        .as_ref()?
        .0
        .get(&OwnedKey::Symbol(Symbol::from(key)))
}

/// Twin: GET, PATCH reported (status 204 with the new version), desired notifications.
async fn twin(
    hub: &fleethub_service_client::ServiceClient<fleethub_service_client::HttpsTransport>,
    session: &mut SessionHandle<()>,
) {
    let address = "/devices/amqp-dev-1/twin";
    let mut tx = Sender::attach(session, "twin-tx", address).await.unwrap();
    let mut rx = Receiver::builder()
        .name("twin-rx")
        .source(address)
        .target("twin")
        .attach(session)
        .await
        .unwrap();
    let reply = async |rx: &mut Receiver| {
        let d = next(rx).await;
        rx.accept(&d).await.unwrap();
        d.into_message()
    };
    tx.send(twin_request("GET", None, "g-1", b" "))
        .await
        .unwrap();
    let r = reply(&mut rx).await;
    assert_eq!(
        r.properties.as_ref().unwrap().correlation_id,
        Some(MessageId::String("g-1".into()))
    );
    assert_eq!(ann_of(&r, "status"), Some(&Value::Int(200)));
    let doc: serde_json::Value = serde_json::from_slice(&body_of(&r)).unwrap();
    assert!(
        doc["desired"].is_object() && doc["reported"].is_object(),
        "{doc}"
    );

    tx.send(twin_request(
        "PATCH",
        Some("/properties/reported"),
        "p-1",
        b"{\"fw\":\"1.2\"}",
    ))
    .await
    .unwrap();
    let r = reply(&mut rx).await;
    assert_eq!(ann_of(&r, "status"), Some(&Value::Int(204)));
    assert!(matches!(ann_of(&r, "version"), Some(Value::Long(v)) if *v >= 2));
    let (_, t) = call(hub, "GET", "/twins/amqp-dev-1", None).await;
    assert_eq!(t["properties"]["reported"]["fw"], "1.2", "{t}");

    let bad = twin_request("PATCH", Some("/properties/reported"), "p-2", b"{");
    tx.send(bad).await.unwrap();
    let r = reply(&mut rx).await;
    assert_eq!(ann_of(&r, "status"), Some(&Value::Int(400)));

    tx.send(twin_request(
        "PUT",
        Some("/notifications/twin/properties/desired"),
        "n-1",
        b" ",
    ))
    .await
    .unwrap();
    let r = reply(&mut rx).await;
    assert_eq!(ann_of(&r, "status"), Some(&Value::Int(200)));
    let (status, _) = call(
        hub,
        "PATCH",
        "/twins/amqp-dev-1",
        Some(&json!({"properties": {"desired": {"interval": 5}}})),
    )
    .await;
    assert_eq!(status, 200);
    let patch = reply(&mut rx).await;
    assert_eq!(patch.properties.as_ref().unwrap().correlation_id, None);
    let doc: serde_json::Value = serde_json::from_slice(&body_of(&patch)).unwrap();
    assert_eq!(doc["interval"], 5, "{doc}");
    assert!(doc["$version"].is_u64());
    tx.close().await.unwrap();
    rx.close().await.unwrap();
}

/// A direct method on device 2: request with its name and payload, the response's status and
/// payload back to the caller.
async fn method(
    hub: &fleethub_service_client::ServiceClient<fleethub_service_client::HttpsTransport>,
    session: &mut SessionHandle<()>,
) {
    let address = "/devices/amqp-dev-2/methods/devicebound";
    let mut rx = Receiver::builder()
        .name("methods-rx")
        .source(address)
        .target("methods")
        .attach(session)
        .await
        .unwrap();
    let mut tx = Sender::attach(session, "methods-tx", address)
        .await
        .unwrap();
    let invocation =
        json!({"methodName": "reboot", "payload": {"delay": 1}, "responseTimeoutInSeconds": 10});
    let caller = call(hub, "POST", "/twins/amqp-dev-2/methods", Some(&invocation));
    let device = async {
        let d = next(&mut rx).await;
        rx.accept(&d).await.unwrap();
        let req = d.into_message();
        assert_eq!(
            req.application_properties
                .as_ref()
                .unwrap()
                .0
                .get("IoThub-methodname"),
            Some(&SimpleValue::String("reboot".into()))
        );
        let payload: serde_json::Value = serde_json::from_slice(&body_of(&req)).unwrap();
        assert_eq!(payload, json!({"delay": 1}));
        let corr = req.properties.as_ref().unwrap().correlation_id.clone();
        assert!(matches!(corr, Some(MessageId::Uuid(_))), "{corr:?}");
        let resp = message(
            &[("IoThub-status", SimpleValue::Int(201))],
            &[],
            Properties {
                correlation_id: corr,
                ..Properties::default()
            },
            b"{\"done\":true}",
        );
        assert!(matches!(tx.send(resp).await.unwrap(), Outcome::Accepted(_)));
    };
    let ((status, result), ()) = tokio::join!(caller, device);
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["status"], 201, "{result}");
    assert_eq!(result["payload"], json!({"done": true}));
    tx.close().await.unwrap();
    rx.close().await.unwrap();
}

/// Token expiry and renewal (no skew tolerated): a device whose token runs out has its link
/// closed with `amqp:unauthorized-access`; one that puts a new token in time keeps its links.
#[tokio::test]
async fn expiry_closes_links_and_renewal_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("fleethub.toml");
    std::fs::write(&config, "token_skew_secs = 0\n").unwrap();
    let server = ServerProcess::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        common::free_port(),
        &["--config", config.to_str().unwrap()],
    );
    let hub = service(&server);
    let host = server.info.hub_host.clone();
    let ka = put_device(&hub, "amqp-exp-a", json!({"deviceId": "amqp-exp-a"})).await;
    let kb = put_device(&hub, "amqp-exp-b", json!({"deviceId": "amqp-exp-b"})).await;
    let mut conn = amqp_connection(&server).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut cbs = Cbs::open(&mut session).await;
    let (ra, ta) = device_token(&host, "amqp-exp-a", &ka, 3);
    let (rb, tb) = device_token(&host, "amqp-exp-b", &kb, 3);
    assert_eq!(cbs.put(&ra, &ta).await, 200);
    assert_eq!(cbs.put(&rb, &tb).await, 200);
    let mut sa = Sender::attach(
        &mut session,
        "a-events",
        "/devices/amqp-exp-a/messages/events",
    )
    .await
    .unwrap();
    let mut sb = Sender::attach(
        &mut session,
        "b-events",
        "/devices/amqp-exp-b/messages/events",
    )
    .await
    .unwrap();
    // Device b renews in time.
    let (rb, tb) = device_token(&host, "amqp-exp-b", &kb, 600);
    assert_eq!(cbs.put(&rb, &tb).await, 200);
    let started = std::time::Instant::now();
    let e = sender_error(&mut sa).await;
    assert_eq!(
        e.condition,
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // The expired identity no longer shows connected; the renewed one does (same connection).
    assert_eq!(
        state_soon(&hub, "amqp-exp-a", "Disconnected").await,
        "Disconnected"
    );
    let (_, b) = call(&hub, "GET", "/devices/amqp-exp-b", None).await;
    assert_eq!(b["connectionState"], "Connected", "{b}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = message(&[], &[], Properties::default(), b"renewed");
    assert!(matches!(sb.send(m).await.unwrap(), Outcome::Accepted(_)));
    let _ = conn.close().await;
}

/// A device that grants no credit on its method and twin receivers: an invocation times out at
/// the hub (504, as on MQTT when the device does not answer), nothing piles up, and disabling
/// the device still closes those links at once.
#[tokio::test]
async fn a_device_without_credit_is_bounded_and_still_revocable() {
    let server = ServerProcess::start();
    let hub = service(&server);
    let host = server.info.hub_host.clone();
    let key = put_device(&hub, "amqp-nocredit", json!({"deviceId": "amqp-nocredit"})).await;
    let mut conn = amqp_connection(&server).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut cbs = Cbs::open(&mut session).await;
    let (r, t) = device_token(&host, "amqp-nocredit", &key, 600);
    assert_eq!(cbs.put(&r, &t).await, 200);
    let no_credit = |name: &str, address: &str| {
        Receiver::builder()
            .name(name)
            .source(address)
            .target(name)
            .credit_mode(fe2o3_amqp::link::receiver::CreditMode::Manual)
    };
    let mut methods = no_credit("m-rx", "/devices/amqp-nocredit/methods/devicebound")
        .attach(&mut session)
        .await
        .unwrap();
    let mut twin = no_credit("t-rx", "/devices/amqp-nocredit/twin")
        .attach(&mut session)
        .await
        .unwrap();
    let mut twin_tx = Sender::attach(&mut session, "t-tx", "/devices/amqp-nocredit/twin")
        .await
        .unwrap();
    let invocation =
        json!({"methodName": "reboot", "payload": null, "responseTimeoutInSeconds": 5});
    let started = std::time::Instant::now();
    let (status, body) = call(
        &hub,
        "POST",
        "/twins/amqp-nocredit/methods",
        Some(&invocation),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    // Twin requests are accepted; their replies wait for credit that never comes.
    for i in 0..3 {
        let out = twin_tx
            .send(twin_request("GET", None, &format!("g-{i}"), b" "))
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    }
    let (_, d) = call(&hub, "GET", "/devices/amqp-nocredit", None).await;
    let mut disabled = d.clone();
    disabled["status"] = json!("disabled");
    let (status, _) = call(&hub, "PUT", "/devices/amqp-nocredit", Some(&disabled)).await;
    assert_eq!(status, 200);
    for rx in [&mut methods, &mut twin] {
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv::<Body<Value>>()).await;
        assert!(
            format!("{got:?}").contains("UnauthorizedAccess"),
            "{:?}",
            got.map(|r| r.map(|_| ()))
        );
    }
    let _ = conn.close().await;
}

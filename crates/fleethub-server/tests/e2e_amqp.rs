//! End-to-end: the AMQP service plane of the real `fleethub` binary, with the fe2o3-amqp client:
//! `$cbs` put-token (401, then 200), `$management` READ, Event Hubs receivers on every partition
//! reading telemetry a device sent over MQTT (annotations and properties), refusals (a partition
//! that does not exist, an unknown consumer group, no token), epochs (`amqp:link:stolen`), the
//! `messages/events` redirect, and service-side C2D on `/messages/devicebound`.

mod common;

use common::ServerProcess;
use common::device::{connect, put_device, service};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::{LinkStateError, RecvError};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use fe2o3_amqp_types::definitions::{self, AmqpError, ErrorCondition, Fields, LinkError};
use fe2o3_amqp_types::messaging::{
    AmqpValue, ApplicationProperties, Body, Message, MessageId, Outcome, Properties, Source,
    annotations::OwnedKey,
};
use fe2o3_amqp_types::primitives::{SimpleValue, Symbol, Value};
use fleethub_mqtt_codec::{Packet, Publish, QoS};
use serde_json::json;
use std::time::Duration;

type Msg = Message<Body<Value>>;

/// The hub's service policy (name, key) from its connection string.
fn policy(s: &ServerProcess) -> (String, String) {
    let cs = &s.info.hub_service_connection_string;
    let get = |k: &str| {
        cs.split(';')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    (get("SharedAccessKeyName"), get("SharedAccessKey"))
}

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
        .container_id("e2e-amqp")
        .hostname("localhost")
        .sasl_profile(SaslProfile::Anonymous)
        .open_with_stream(tls)
        .await
        .unwrap()
}

fn request(props: &[(&str, &str)], body: &str, id: &str) -> Msg {
    let mut app = ApplicationProperties::default();
    for (k, v) in props {
        app.0
            .insert((*k).to_string(), SimpleValue::String((*v).to_string()));
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            message_id: Some(MessageId::String(id.into())),
            reply_to: Some("e2e-reply".into()),
            ..Properties::default()
        }),
        application_properties: Some(app),
        body: Body::Value(AmqpValue(Value::String(body.into()))),
        footer: None,
    }
}

fn status(m: &Msg) -> i32 {
    match m
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

/// A request/response pair on `$cbs` or `$management`.
struct Rpc {
    tx: Sender,
    rx: Receiver,
    n: u32,
}

impl Rpc {
    async fn open(session: &mut SessionHandle<()>, node: &str) -> Rpc {
        let tx = Sender::attach(session, format!("{node}-tx"), node)
            .await
            .unwrap();
        let rx = Receiver::builder()
            .name(format!("{node}-rx"))
            .source(node)
            .target("e2e-reply")
            .attach(session)
            .await
            .unwrap();
        Rpc { tx, rx, n: 0 }
    }

    async fn call(&mut self, props: &[(&str, &str)], body: &str) -> Msg {
        self.n += 1;
        let id = format!("req-{}", self.n);
        self.tx.send(request(props, body, &id)).await.unwrap();
        let d = tokio::time::timeout(Duration::from_secs(10), self.rx.recv::<Body<Value>>())
            .await
            .expect("reply")
            .unwrap();
        self.rx.accept(&d).await.unwrap();
        let m = d.into_message();
        assert_eq!(
            m.properties.as_ref().unwrap().correlation_id,
            Some(MessageId::String(id))
        );
        m
    }
}

async fn put_token(cbs: &mut Rpc, token: &str, audience: &str) -> i32 {
    status(
        &cbs.call(
            &[
                ("operation", "put-token"),
                ("type", "servicebus.windows.net:sastoken"),
                ("name", audience),
            ],
            token,
        )
        .await,
    )
}

fn selector(expr: &str) -> Source {
    let mut filter = fe2o3_amqp_types::messaging::FilterSet::new();
    filter.insert(
        Symbol::from("apache.org:selector-filter:string"),
        Value::Described(Box::new(serde_amqp::described::Described {
            descriptor: serde_amqp::descriptor::Descriptor::Name(Symbol::from(
                "apache.org:selector-filter:string",
            )),
            value: Value::String(expr.into()),
        })),
    );
    Source::builder().address("").filter(filter).build()
}

async fn receiver(
    session: &mut SessionHandle<()>,
    address: &str,
    filter: Option<&str>,
    epoch: Option<i64>,
) -> Receiver {
    let mut source = filter.map_or_else(Source::default, selector);
    source.address = Some(address.to_string());
    let mut b = Receiver::builder()
        .name(format!("rx-{address}-{epoch:?}-{}", rand::random::<u32>()))
        .source(source)
        .target("e2e");
    if let Some(e) = epoch {
        let mut f = Fields::new();
        f.insert(Symbol::from("com.microsoft:epoch"), Value::Long(e));
        b = b.properties(f);
    }
    b.attach(session).await.unwrap()
}

/// The error a refused link was detached with.
async fn detach_error(r: &mut Receiver) -> definitions::Error {
    match tokio::time::timeout(Duration::from_secs(10), r.recv::<Body<Value>>()).await {
        Ok(Err(RecvError::LinkStateError(
            LinkStateError::RemoteClosedWithError(e) | LinkStateError::RemoteDetachedWithError(e),
        ))) => e,
        other => panic!(
            "expected a detach with an error, got {:?}",
            other.map(|r| r.map(|_| ()))
        ),
    }
}

fn annotation<'a>(m: &'a Msg, key: &str) -> Option<&'a Value> {
    m.message_annotations
        .as_ref()?
        .0
        .get(&OwnedKey::Symbol(Symbol::from(key)))
}

/// What the steps share: the hub's names and its service policy.
struct Target {
    host: String,
    event_hub: String,
    policy: String,
    key: String,
    amqp_port: u16,
}

impl Target {
    fn partition(&self, group: &str, n: u32) -> String {
        format!("{}/ConsumerGroups/{group}/Partitions/{n}", self.event_hub)
    }

    fn token(&self, audience: &str) -> String {
        fleethub_core::sas::build_token(audience, &self.key, now() + 600, Some(&self.policy))
            .unwrap()
    }
}

async fn send_telemetry(server: &ServerProcess) {
    let hub = service(server);
    let key = put_device(&hub, "amqp-d1", json!({"deviceId": "amqp-d1"})).await;
    let mut dev = connect(server, "amqp-d1", &key, 600).await;
    for i in 0..3u16 {
        let publish = Publish::new(
            "devices/amqp-d1/messages/events/colour=red",
            QoS::AtLeastOnce,
            i + 1,
            format!("{{\"i\":{i}}}").into_bytes(),
        );
        dev.writer.send(&Packet::Publish(publish)).await.unwrap();
        assert!(matches!(
            dev.reader.next().await.unwrap(),
            Some(Packet::PubAck(_))
        ));
    }
}

/// Without a token a receiver is refused.
async fn no_token_is_refused(hub: &Target, session: &mut SessionHandle<()>) {
    let mut rx = receiver(session, &hub.partition("$Default", 0), None, None).await;
    let err = detach_error(&mut rx).await;
    assert_eq!(
        err.condition,
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
        "{err:?}"
    );
}

/// CBS: a wrong signature is 401, the policy's token 200.
async fn cbs_tokens(hub: &Target, session: &mut SessionHandle<()>) -> Rpc {
    let mut cbs = Rpc::open(session, "$cbs").await;
    let audience = format!("sb://{}/{}", hub.host, hub.event_hub);
    let wrong_key = fleethub_core::keys::generate_key();
    let bad =
        fleethub_core::sas::build_token(&audience, &wrong_key, now() + 600, Some(&hub.policy))
            .unwrap();
    assert_eq!(put_token(&mut cbs, &bad, &audience).await, 401);
    assert_eq!(
        put_token(&mut cbs, &hub.token(&audience), &audience).await,
        200
    );
    cbs
}

/// $management READ of the event hub and of a partition that does not exist.
async fn management(hub: &Target, session: &mut SessionHandle<()>) {
    let mut mgmt = Rpc::open(session, "$management").await;
    let eh = hub.event_hub.as_str();
    let reply = mgmt
        .call(
            &[
                ("operation", "READ"),
                ("type", "com.microsoft:eventhub"),
                ("name", eh),
            ],
            "",
        )
        .await;
    assert_eq!(status(&reply), 200);
    let Body::Value(AmqpValue(Value::Map(map))) = &reply.body else {
        panic!("{:?}", reply.body)
    };
    assert_eq!(
        map.get(&Value::String("partition_count".into())),
        Some(&Value::Int(4))
    );
    let missing = mgmt
        .call(
            &[
                ("operation", "READ"),
                ("type", "com.microsoft:partition"),
                ("name", eh),
                ("partition", "9"),
            ],
            "",
        )
        .await;
    assert_eq!(status(&missing), 400);
}

/// Every partition from the start: the three events, with IoT Hub's annotations; returns the
/// device's partition.
async fn partitions_from_the_start(hub: &Target, session: &mut SessionHandle<()>) -> u32 {
    let mut got = Vec::new();
    for partition in 0..4 {
        let address = hub.partition("$Default", partition);
        let mut rx = receiver(
            session,
            &address,
            Some("amqp.annotation.x-opt-offset > '-1'"),
            None,
        )
        .await;
        while let Ok(Ok(d)) =
            tokio::time::timeout(Duration::from_millis(700), rx.recv::<Body<Value>>()).await
        {
            rx.accept(&d).await.unwrap();
            got.push((partition, d.into_message()));
        }
        rx.close().await.unwrap();
    }
    assert_eq!(got.len(), 3, "events: {got:?}");
    let (partition, first) = &got[0];
    assert!(
        got.iter().all(|(p, _)| p == partition),
        "one device, one partition"
    );
    assert_eq!(
        annotation(first, "x-opt-sequence-number"),
        Some(&Value::Long(0))
    );
    assert!(matches!(
        annotation(first, "x-opt-offset"),
        Some(Value::String(_))
    ));
    assert!(matches!(
        annotation(first, "x-opt-enqueued-time"),
        Some(Value::Timestamp(_))
    ));
    assert_eq!(
        annotation(first, "iothub-connection-device-id"),
        Some(&Value::String("amqp-d1".into()))
    );
    assert_eq!(
        first
            .application_properties
            .as_ref()
            .unwrap()
            .0
            .get("colour"),
        Some(&SimpleValue::String("red".into()))
    );
    *partition
}

/// From a sequence number (exclusive): only the last event.
async fn from_sequence_number(hub: &Target, session: &mut SessionHandle<()>, partition: u32) {
    let address = hub.partition("$Default", partition);
    let mut rx = receiver(
        session,
        &address,
        Some("amqp.annotation.x-opt-sequence-number > '1'"),
        None,
    )
    .await;
    let delivery = rx.recv::<Body<Value>>().await.unwrap();
    assert_eq!(
        annotation(delivery.message(), "x-opt-sequence-number"),
        Some(&Value::Long(2))
    );
    rx.close().await.unwrap();
}

/// Refusals: a partition that does not exist, an unknown consumer group, a bad selector.
async fn refusals(hub: &Target, session: &mut SessionHandle<()>) {
    for (address, filter, want) in [
        (
            hub.partition("$Default", 9),
            None,
            "com.microsoft:argument-out-of-range",
        ),
        (hub.partition("nobody", 0), None, "amqp:not-found"),
        (
            hub.partition("$Default", 0),
            Some("amqp.annotation.x-opt-offset < 'x'"),
            "com.microsoft:argument-error",
        ),
    ] {
        let mut rx = receiver(session, &address, filter, None).await;
        let err = detach_error(&mut rx).await;
        let condition = match &err.condition {
            ErrorCondition::Custom(c) => c.as_str().to_string(),
            ErrorCondition::AmqpError(AmqpError::NotFound) => "amqp:not-found".to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(condition, want, "{address}: {err:?}");
    }
}

/// Epochs: a higher epoch steals the partition.
async fn epochs(hub: &Target, session: &mut SessionHandle<()>) {
    let address = hub.partition("$Default", 0);
    let latest = Some("amqp.annotation.x-opt-offset > '@latest'");
    let mut owner = receiver(session, &address, latest, Some(1)).await;
    let _thief = receiver(session, &address, latest, Some(2)).await;
    let err = detach_error(&mut owner).await;
    assert_eq!(
        err.condition,
        ErrorCondition::LinkError(LinkError::Stolen),
        "{err:?}"
    );
}

/// The redirect of messages/events to the Event Hubs-compatible name.
async fn redirect(hub: &Target, session: &mut SessionHandle<()>) {
    let address = format!("amqps://{}/messages/events/$management", hub.host);
    let mut rx = receiver(session, &address, None, None).await;
    let err = detach_error(&mut rx).await;
    assert_eq!(
        err.condition,
        ErrorCondition::LinkError(LinkError::Redirect),
        "{err:?}"
    );
    let info = err.info.unwrap();
    assert_eq!(
        info.get(&Symbol::from("address")),
        Some(&Value::String(format!(
            "amqps://{}:{}/{}/$management",
            hub.host, hub.amqp_port, hub.event_hub
        )))
    );
}

/// Service-side C2D: needs a token for the hub (or below it), then queues for the device.
async fn c2d(hub: &Target, server: &ServerProcess, session: &mut SessionHandle<()>, cbs: &mut Rpc) {
    assert_eq!(put_token(cbs, &hub.token(&hub.host), &hub.host).await, 200);
    let mut c2d = Sender::attach(session, "c2d", "/messages/devicebound")
        .await
        .unwrap();
    let mut msg = request(&[("iothub-ack", "full")], "to the device", "c2d-1");
    msg.properties.as_mut().unwrap().to = Some("/devices/amqp-d1/messages/devicebound".into());
    assert!(matches!(c2d.send(msg).await.unwrap(), Outcome::Accepted(_)));
    let mut nobody = request(&[], "x", "c2d-2");
    nobody.properties.as_mut().unwrap().to = Some("/devices/nobody/messages/devicebound".into());
    match c2d.send(nobody).await.unwrap() {
        Outcome::Rejected(rejected) => assert_eq!(
            rejected.error.unwrap().condition,
            ErrorCondition::AmqpError(AmqpError::NotFound)
        ),
        other => panic!("{other:?}"),
    }
    let (code, device) =
        common::device::call(&service(server), "GET", "/devices/amqp-d1", None).await;
    assert_eq!(code, 200);
    assert_eq!(device["cloudToDeviceMessageCount"], 1, "{device}");
    c2d.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_service_plane() {
    let server = ServerProcess::start();
    send_telemetry(&server).await;
    let host = server.info.hub_host.clone();
    let (policy, key) = policy(&server);
    let hub = Target {
        event_hub: host.split('.').next().unwrap().to_string(),
        host,
        policy,
        key,
        amqp_port: server.amqp_port,
    };
    let mut conn = amqp_connection(&server).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    no_token_is_refused(&hub, &mut session).await;
    let mut cbs = cbs_tokens(&hub, &mut session).await;
    management(&hub, &mut session).await;
    let partition = partitions_from_the_start(&hub, &mut session).await;
    from_sequence_number(&hub, &mut session, partition).await;
    refusals(&hub, &mut session).await;
    epochs(&hub, &mut session).await;
    redirect(&hub, &mut session).await;
    c2d(&hub, &server, &mut session, &mut cbs).await;
    session.end().await.unwrap();
    conn.close().await.unwrap();
}

/// A flood of links on one connection: the links past the limit are refused with
/// `amqp:resource-limit-exceeded`, the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_per_connection_are_bounded() {
    let server = ServerProcess::start();
    let mut conn = amqp_connection(&server).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..fleethub_amqp::AmqpConfig::default().max_links_per_connection {
        open.push(receiver(&mut session, "$cbs", None, None).await);
    }
    let mut refused = receiver(&mut session, "$cbs", None, None).await;
    let err = detach_error(&mut refused).await;
    assert_eq!(
        err.condition,
        ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded),
        "{err:?}"
    );
    // Closing links makes room again: a request/response pair works.
    for _ in 0..2 {
        open.pop().unwrap().close().await.unwrap();
    }
    let mut cbs = Rpc::open(&mut session, "$cbs").await;
    let (policy, key) = policy(&server);
    let host = server.info.hub_host.clone();
    let token = fleethub_core::sas::build_token(&host, &key, now() + 60, Some(&policy)).unwrap();
    assert_eq!(put_token(&mut cbs, &token, &host).await, 200);
}

/// A token that expires without renewal closes the links it opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_closes_its_links() {
    let server = ServerProcess::start();
    let mut conn = amqp_connection(&server).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut cbs = Rpc::open(&mut session, "$cbs").await;
    let (policy, key) = policy(&server);
    let host = server.info.hub_host.clone();
    let event_hub = host.split('.').next().unwrap().to_string();
    let audience = format!("sb://{host}/{event_hub}");
    let short = fleethub_core::sas::build_token(&audience, &key, now() + 3, Some(&policy)).unwrap();
    assert_eq!(put_token(&mut cbs, &short, &audience).await, 200);
    let address = format!("{event_hub}/ConsumerGroups/$Default/Partitions/0");
    let mut rx = receiver(&mut session, &address, None, None).await;
    let started = std::time::Instant::now();
    let err = detach_error(&mut rx).await;
    assert_eq!(
        err.condition,
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

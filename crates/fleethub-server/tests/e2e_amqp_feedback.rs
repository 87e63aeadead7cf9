//! End-to-end: C2D feedback kept across a restart of the real `fleethub` binary, read with the
//! fe2o3-amqp client on `/messages/servicebound/feedback`: a message sent with `iothub-ack=full`
//! is purged, the server is killed (-9) and started again, and the `Purged` record is still
//! delivered; a batch the reader does not settle comes again on the next link, an accepted one
//! does not.

mod common;

use common::ServerProcess;
use common::device::{call, put_device, service};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use fe2o3_amqp_types::messaging::{
    AmqpValue, ApplicationProperties, Body, Message, MessageId, Outcome, Properties,
};
use fe2o3_amqp_types::primitives::{SimpleValue, Value};
use serde_json::json;
use std::time::Duration;

type Msg = Message<Body<Value>>;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A connection and session whose `$cbs` grant covers the hub (the service policy's token).
async fn open(s: &ServerProcess) -> (ConnectionHandle<()>, SessionHandle<()>) {
    let tls = fleethub_device::ClientTlsConfig::with_ca_file(s.ca_pem())
        .unwrap()
        .connect("localhost", s.amqp_port)
        .await
        .unwrap();
    let mut conn = Connection::builder()
        .container_id("e2e-feedback")
        .hostname("localhost")
        .sasl_profile(SaslProfile::Anonymous)
        .open_with_stream(tls)
        .await
        .unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let cs = &s.info.hub_service_connection_string;
    let get = |k: &str| {
        cs.split(';')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let host = s.info.hub_host.clone();
    let token = fleethub_core::sas::build_token(
        &host,
        &get("SharedAccessKey"),
        now() + 600,
        Some(&get("SharedAccessKeyName")),
    )
    .unwrap();
    let mut tx = Sender::attach(&mut session, "cbs-tx", "$cbs")
        .await
        .unwrap();
    let mut rx = Receiver::builder()
        .name("cbs-rx")
        .source("$cbs")
        .target("e2e-reply")
        .attach(&mut session)
        .await
        .unwrap();
    let mut app = ApplicationProperties::default();
    for (k, v) in [
        ("operation", "put-token"),
        ("type", "servicebus.windows.net:sastoken"),
        ("name", host.as_str()),
    ] {
        app.0.insert(k.into(), SimpleValue::String(v.into()));
    }
    let put: Msg = Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            message_id: Some(MessageId::String("put-1".into())),
            reply_to: Some("e2e-reply".into()),
            ..Properties::default()
        }),
        application_properties: Some(app),
        body: Body::Value(AmqpValue(Value::String(token))),
        footer: None,
    };
    tx.send(put).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), rx.recv::<Body<Value>>())
        .await
        .expect("put-token reply")
        .unwrap();
    rx.accept(&reply).await.unwrap();
    let status = reply
        .message()
        .application_properties
        .as_ref()
        .and_then(|a| a.0.get("status-code").cloned());
    assert_eq!(status, Some(SimpleValue::Int(200)));
    (conn, session)
}

async fn feedback_receiver(session: &mut SessionHandle<()>, name: &str) -> Receiver {
    Receiver::attach(session, name, "/messages/servicebound/feedback")
        .await
        .unwrap()
}

/// The records of the next feedback message (within `wait`), with the delivery to settle.
async fn next_batch(
    rx: &mut Receiver,
    wait: Duration,
) -> Option<(
    serde_json::Value,
    fe2o3_amqp::link::delivery::Delivery<Body<Value>>,
)> {
    let d = tokio::time::timeout(wait, rx.recv::<Body<Value>>())
        .await
        .ok()?
        .unwrap();
    let bytes: Vec<u8> = match d.body() {
        Body::Data(batch) => batch.iter().flat_map(|d| d.0.to_vec()).collect(),
        other => panic!("feedback body {other:?}"),
    };
    Some((serde_json::from_slice(&bytes).unwrap(), d))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_survives_a_restart_and_is_read_until_accepted() {
    let mut server = ServerProcess::start();
    put_device(&service(&server), "fb-d1", json!({"deviceId": "fb-d1"})).await;
    {
        let (mut conn, mut session) = open(&server).await;
        let mut c2d = Sender::attach(&mut session, "c2d", "/messages/devicebound")
            .await
            .unwrap();
        let mut app = ApplicationProperties::default();
        app.0
            .insert("iothub-ack".into(), SimpleValue::String("full".into()));
        let msg: Msg = Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                message_id: Some(MessageId::String("fb-1".into())),
                to: Some("/devices/fb-d1/messages/devicebound".into()),
                ..Properties::default()
            }),
            application_properties: Some(app),
            body: Body::Value(AmqpValue(Value::String("hello".into()))),
            footer: None,
        };
        assert!(matches!(c2d.send(msg).await.unwrap(), Outcome::Accepted(_)));
        c2d.close().await.unwrap();
        session.end().await.unwrap();
        conn.close().await.unwrap();
    }
    let (code, purged) = call(&service(&server), "DELETE", "/devices/fb-d1/commands", None).await;
    assert_eq!(code, 200, "{purged}");
    assert_eq!(purged["totalMessagesPurged"], 1, "{purged}");

    server.restart();
    let (mut conn, mut session) = open(&server).await;
    let mut rx = feedback_receiver(&mut session, "fb-1").await;
    let (records, delivery) = next_batch(&mut rx, Duration::from_secs(10))
        .await
        .expect("the record from before the restart");
    let r = &records[0];
    assert_eq!(r["originalMessageId"], "fb-1", "{records}");
    assert_eq!(r["statusCode"], "Purged", "{records}");
    assert_eq!(r["deviceId"], "fb-d1", "{records}");
    // Not settled: the link goes, the batch comes again on the next one.
    drop(delivery);
    rx.close().await.unwrap();
    let mut rx = feedback_receiver(&mut session, "fb-2").await;
    let (again, delivery) = next_batch(&mut rx, Duration::from_secs(10))
        .await
        .expect("the unsettled batch again");
    assert_eq!(again, records);
    rx.accept(&delivery).await.unwrap();
    rx.close().await.unwrap();
    // Accepted: gone.
    let mut rx = feedback_receiver(&mut session, "fb-3").await;
    assert!(
        next_batch(&mut rx, Duration::from_secs(2)).await.is_none(),
        "an accepted batch came again"
    );
    rx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
}

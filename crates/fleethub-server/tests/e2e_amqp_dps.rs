//! End-to-end: DPS registration over AMQP with the fe2o3-amqp client, as the provisioning
//! SDKs do it: SASL PLAIN (`{idScope}/registrations/{id}` and a SAS token), a sender and a
//! receiver on `{idScope}/registrations/{id}`, `iotdps-register` answered `assigning` with
//! `retry-after`, `iotdps-get-operationstatus` polled to `assigned`; a wrong key refuses the
//! link with `amqp:unauthorized-access` and records the real reason.

mod common;

use common::ServerProcess;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::{DetachError, LinkStateError, RecvError};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use fe2o3_amqp_types::definitions::{AmqpError, ErrorCondition};
use fe2o3_amqp_types::messaging::{
    ApplicationProperties, Body, Data, Message, MessageId, Outcome, Properties,
};
use fe2o3_amqp_types::primitives::{Binary, SimpleValue, Value};
use std::time::Duration;

type Msg = Message<Body<Value>>;

fn create_enrollment(s: &ServerProcess, reg: &str) -> String {
    let (ok, out, err) = s.cli(&["dps", "enrollment", "create", "--registration-id", reg]);
    assert!(ok, "enrollment create failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    v["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn connect(s: &ServerProcess, reg: &str, key: &str) -> ConnectionHandle<()> {
    let scope = &s.info.id_scope;
    let resource = format!("{scope}/registrations/{reg}");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = fleethub_core::sas::build_token(&resource, key, exp, None).unwrap();
    let tls = fleethub_device::ClientTlsConfig::with_ca_file(s.ca_pem())
        .unwrap()
        .connect("localhost", s.amqp_port)
        .await
        .unwrap();
    Connection::builder()
        .container_id(reg)
        .hostname("localhost")
        .sasl_profile(SaslProfile::Plain {
            username: resource,
            password: token,
        })
        .open_with_stream(tls)
        .await
        .unwrap()
}

fn request(props: &[(&str, &str)], corr: &str, body: &[u8]) -> Msg {
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
            correlation_id: Some(MessageId::String(corr.into())),
            ..Properties::default()
        }),
        application_properties: Some(app),
        body: Body::Data(vec![Data(Binary::from(body.to_vec()))].into()),
        footer: None,
    }
}

async fn reply(rx: &mut Receiver, corr: &str) -> (serde_json::Value, Option<SimpleValue>) {
    let d = tokio::time::timeout(Duration::from_secs(10), rx.recv::<Body<Value>>())
        .await
        .expect("a reply")
        .unwrap();
    rx.accept(&d).await.unwrap();
    let m = d.into_message();
    assert_eq!(
        m.properties.as_ref().unwrap().correlation_id,
        Some(MessageId::String(corr.into()))
    );
    let body: Vec<u8> = match &m.body {
        Body::Data(d) => d.iter().flat_map(|x| x.0.iter().copied()).collect(),
        other => panic!("{other:?}"),
    };
    let retry = m
        .application_properties
        .as_ref()
        .and_then(|a| a.0.get("retry-after").cloned());
    (serde_json::from_slice(&body).unwrap(), retry)
}

#[tokio::test]
async fn registration_over_amqp() {
    let s = ServerProcess::start();
    let reg = "amqp-dps-dev";
    let key = create_enrollment(&s, reg);
    let address = format!("{}/registrations/{reg}", s.info.id_scope);
    let mut conn = connect(&s, reg, &key).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut rx = Receiver::builder()
        .name("dps-rx")
        .source(address.as_str())
        .target("dps")
        .attach(&mut session)
        .await
        .unwrap();
    let mut tx = Sender::attach(&mut session, "dps-tx", address.as_str())
        .await
        .unwrap();
    let body = format!("{{\"registrationId\":\"{reg}\"}}");
    let out = tx
        .send(request(
            &[("iotdps-operation-type", "iotdps-register")],
            "r-1",
            body.as_bytes(),
        ))
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    let (op, retry) = reply(&mut rx, "r-1").await;
    let mut status = op["status"].as_str().unwrap().to_string();
    if status == "assigning" {
        assert!(matches!(retry, Some(SimpleValue::String(_))), "{retry:?}");
    }
    let operation_id = op["operationId"].as_str().unwrap().to_string();
    let mut last = op;
    for i in 0..20 {
        if status != "assigning" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let corr = format!("s-{i}");
        tx.send(request(
            &[
                ("iotdps-operation-type", "iotdps-get-operationstatus"),
                ("iotdps-operation-id", &operation_id),
            ],
            &corr,
            b"",
        ))
        .await
        .unwrap();
        last = reply(&mut rx, &corr).await.0;
        status = last["status"].as_str().unwrap().to_string();
    }
    assert_eq!(status, "assigned", "{last}");
    assert_eq!(last["registrationState"]["deviceId"], reg, "{last}");
    // An unknown operation type is rejected, not answered.
    match tx
        .send(request(&[("iotdps-operation-type", "nosuch")], "x-1", b""))
        .await
        .unwrap()
    {
        Outcome::Rejected(r) => assert!(r.error.is_some()),
        other => panic!("{other:?}"),
    }
    let _ = conn.close().await;
}

#[tokio::test]
async fn a_wrong_key_refuses_the_link_and_is_explained() {
    let s = ServerProcess::start();
    let reg = "amqp-dps-bad";
    create_enrollment(&s, reg);
    let wrong = fleethub_core::keys::generate_key();
    let address = format!("{}/registrations/{reg}", s.info.id_scope);
    let mut conn = connect(&s, reg, &wrong).await;
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut tx = Sender::attach(&mut session, "dps-tx", address.as_str())
        .await
        .unwrap();
    let e = match tokio::time::timeout(Duration::from_secs(10), tx.on_detach()).await {
        Ok(DetachError::RemoteClosedWithError(e) | DetachError::RemoteDetachedWithError(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        e.condition,
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess)
    );
    // The receiver is refused too (the login was used up by the failed check).
    let mut rx = Receiver::builder()
        .name("dps-rx")
        .source(address.as_str())
        .target("dps")
        .attach(&mut session)
        .await
        .unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), rx.recv::<Body<Value>>()).await;
    assert!(
        matches!(
            refused,
            Ok(Err(RecvError::LinkStateError(
                LinkStateError::RemoteClosedWithError(_)
                    | LinkStateError::RemoteDetachedWithError(_)
            )))
        ),
        "{:?}",
        refused.map(|r| r.map(|_| ()))
    );
    let (ok, out, err) = s.cli(&["diagnostics", "auth-failures"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("signature mismatch for registration {reg}")),
        "{out}"
    );
    assert!(!out.contains(&wrong), "keys must never be logged");
    let _ = conn.close().await;
}

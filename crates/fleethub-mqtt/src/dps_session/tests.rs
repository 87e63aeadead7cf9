//! [`DpsSession`] without sockets: packets in, actions out.

use super::*;
use fleethub_mqtt_codec::{Subscribe, Unsubscribe};
use fleethub_services::EnrollmentSource;

const REGISTER: &str = "$dps/registrations/PUT/iotdps-register/?$rid=1";
const STATUS: &str = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=op-1";

fn principal() -> DpsPrincipal {
    DpsPrincipal {
        registration_id: "dev-1".into(),
        source: EnrollmentSource::Individual(Box::default()),
        origin: fleethub_services::AuthOrigin::default(),
    }
}

fn session() -> (DpsSession, Instant) {
    let now = Instant::now();
    let s = DpsSession::new(
        "dev-1".into(),
        Ok(principal()),
        3,
        Duration::from_secs(90),
        now,
    );
    (s, now)
}

fn subscribe(s: &mut DpsSession, now: Instant, filters: &[(&str, QoS)]) -> Vec<Action<DpsCall>> {
    let filters = filters.iter().map(|(f, q)| (f.to_string(), *q)).collect();
    s.on_packet(Packet::Subscribe(Subscribe::new(5, filters)), now)
}

fn publish(topic: &str, qos: QoS, pkid: u16, body: &str) -> Packet {
    Packet::Publish(Publish::new(
        topic,
        qos,
        pkid,
        Bytes::from(body.to_string()),
    ))
}

/// The one PUBLISH in `actions`.
fn sent_publish(actions: &[Action<DpsCall>]) -> &Publish {
    let mut it = actions.iter().filter_map(|a| match a {
        Action::Send(Packet::Publish(p)) => Some(p),
        _ => None,
    });
    let p = it.next().expect("a PUBLISH");
    assert!(it.next().is_none(), "one PUBLISH: {actions:?}");
    p
}

fn json(p: &Publish) -> serde_json::Value {
    serde_json::from_slice(&p.payload).unwrap()
}

#[test]
fn only_the_response_filter_is_granted() {
    let (mut s, now) = session();
    let a = subscribe(
        &mut s,
        now,
        &[
            ("$dps/registrations/res/#", QoS::ExactlyOnce),
            ("$dps/registrations/res/+/#", QoS::AtMostOnce),
            ("$iothub/twin/res/#", QoS::AtLeastOnce),
        ],
    );
    let [Action::Send(Packet::SubAck(ack))] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(ack.pkid, 5);
    assert_eq!(
        ack.return_codes,
        vec![
            SubscribeReturnCode::Success(QoS::AtLeastOnce),
            SubscribeReturnCode::Success(QoS::AtMostOnce),
            SubscribeReturnCode::Failure,
        ]
    );
    // The last grant wins: answers go out at QoS 0.
    assert_eq!(s.response_qos, Some(QoS::AtMostOnce));
    let a = s.on_packet(
        Packet::Unsubscribe(Unsubscribe::new(6, vec!["$dps/registrations/res/#".into()])),
        now,
    );
    assert!(matches!(&a[..], [Action::Send(Packet::UnsubAck(6))]));
    assert_eq!(s.response_qos, None);
}

#[test]
fn register_calls_the_service_and_answers_202_with_retry_after() {
    let (mut s, now) = session();
    subscribe(
        &mut s,
        now,
        &[("$dps/registrations/res/#", QoS::AtLeastOnce)],
    );
    let a = s.on_packet(
        publish(
            REGISTER,
            QoS::AtLeastOnce,
            9,
            r#"{"registrationId":"dev-1"}"#,
        ),
        now,
    );
    let [
        Action::Send(Packet::PubAck(9)),
        Action::Call(DpsCall::Register {
            rid,
            principal: p,
            body,
        }),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!((rid.as_str(), p), ("1", &principal()));
    assert_eq!(body.registration_id.as_deref(), Some("dev-1"));
    let op = RegistrationOperationStatus {
        operation_id: "op-1".into(),
        status: "assigning".into(),
        registration_state: None,
    };
    let a = s.on_reply(
        DpsReply {
            rid: "1".into(),
            result: Ok(op),
        },
        now,
    );
    let p = sent_publish(&a);
    assert_eq!(p.topic, "$dps/registrations/res/202/?$rid=1&retry-after=3");
    assert_eq!((p.qos, p.pkid), (QoS::AtLeastOnce, 1));
    assert_eq!(json(p)["operationId"], "op-1");

    let a = s.on_packet(publish(STATUS, QoS::AtMostOnce, 0, ""), now);
    let [
        Action::Call(DpsCall::OperationStatus {
            rid, operation_id, ..
        }),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!((rid.as_str(), operation_id.as_str()), ("2", "op-1"));
    let op = RegistrationOperationStatus {
        operation_id: "op-1".into(),
        status: "assigned".into(),
        registration_state: None,
    };
    let a = s.on_reply(
        DpsReply {
            rid: "2".into(),
            result: Ok(op),
        },
        now,
    );
    let p = sent_publish(&a);
    assert_eq!(p.topic, "$dps/registrations/res/200/?$rid=2");
    assert_eq!(p.pkid, 2, "QoS 1 answers count packet ids up");
}

#[test]
fn refusals_are_answered_on_the_response_topic() {
    let (mut s, now) = session();
    subscribe(
        &mut s,
        now,
        &[("$dps/registrations/res/#", QoS::AtMostOnce)],
    );
    // Service errors keep their status and Azure code.
    let err = dps::Error::OperationNotFound {
        operation_id: "op-1".into(),
        registration_id: "dev-1".into(),
    };
    let message = err.to_string();
    let a = s.on_reply(
        DpsReply {
            rid: "7".into(),
            result: Err(err),
        },
        now,
    );
    let p = sent_publish(&a);
    assert_eq!(p.topic, "$dps/registrations/res/404/?$rid=7");
    assert_eq!((p.qos, p.pkid), (QoS::AtMostOnce, 0));
    assert_eq!(json(p)["errorCode"], 404001);
    assert_eq!(json(p)["message"], message.as_str());
    // A body that is not JSON never reaches the service.
    let a = s.on_packet(publish(REGISTER, QoS::AtMostOnce, 0, "{nope"), now);
    let p = sent_publish(&a);
    assert_eq!(p.topic, "$dps/registrations/res/400/?$rid=1");
    assert_eq!(json(p)["errorCode"], 400004);
    // A malformed registration ID (accepted at CONNECT) is answered on every request.
    let bad = dps::Error::Invalid("bad registration id".into());
    let mut s = DpsSession::new("Bad Id".into(), Err(bad), 3, Duration::from_secs(90), now);
    subscribe(
        &mut s,
        now,
        &[("$dps/registrations/res/#", QoS::AtMostOnce)],
    );
    let a = s.on_packet(publish(STATUS, QoS::AtMostOnce, 0, ""), now);
    let p = sent_publish(&a);
    assert_eq!(p.topic, "$dps/registrations/res/400/?$rid=2");
    assert_eq!(json(p)["message"], "bad registration id");
}

#[test]
fn answers_without_a_subscription_are_dropped() {
    let (mut s, now) = session();
    let op = RegistrationOperationStatus::default();
    assert!(
        s.on_reply(
            DpsReply {
                rid: "1".into(),
                result: Ok(op)
            },
            now
        )
        .is_empty()
    );
}

#[test]
fn protocol_violations_close_the_connection() {
    let (mut s, now) = session();
    let closes = |a: Vec<Action<DpsCall>>| match &a[..] {
        [.., Action::Close(Close::Violation(m))] => m.clone(),
        other => panic!("{other:?}"),
    };
    let m = closes(s.on_packet(publish("$dps/other", QoS::AtMostOnce, 0, ""), now));
    assert!(m.starts_with("registration dev-1: "), "{m}");
    let m = closes(s.on_packet(publish(REGISTER, QoS::ExactlyOnce, 1, ""), now));
    assert_eq!(m, "QoS 2 publish is not supported");
    let m = closes(s.on_packet(Packet::PingResp, now));
    assert_eq!(m, "unexpected PINGRESP from a client");
    assert!(matches!(
        &s.on_packet(Packet::PingReq, now)[..],
        [Action::Send(Packet::PingResp)]
    ));
    assert!(matches!(
        &s.on_packet(Packet::Disconnect, now)[..],
        [Action::Close(Close::Disconnect)]
    ));
}

#[tokio::test(start_paused = true)]
async fn keep_alive_expires_one_and_a_half_intervals_after_the_last_packet() {
    let (mut s, t0) = session();
    tokio::time::advance(Duration::from_mins(1)).await;
    s.on_packet(Packet::PingReq, Instant::now());
    assert_eq!(s.deadline(), t0 + Duration::from_secs(150));
    tokio::time::sleep_until(s.deadline() - Duration::from_secs(1)).await;
    assert!(s.on_timeout(Instant::now()).is_empty());
    tokio::time::sleep_until(s.deadline()).await;
    assert!(matches!(
        &s.on_timeout(Instant::now())[..],
        [Action::Close(Close::KeepAlive(90))]
    ));
}

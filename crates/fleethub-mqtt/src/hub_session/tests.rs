//! [`HubSession`] without sockets: packets, events, replies and timeouts in, actions out.

use super::serve::{from_stored, to_stored};
use super::*;
use fleethub_mqtt_codec::{Subscribe, Unsubscribe};
use fleethub_services::hub::Error as HubError;
use serde_json::json;

const TWIN_RES: &str = "$iothub/twin/res/#";
const DESIRED: &str = "$iothub/twin/PATCH/properties/desired/#";
const METHODS: &str = "$iothub/methods/POST/#";
const C2D: &str = "devices/dev-1/messages/devicebound/#";

fn config(module_id: Option<&str>, persistent: bool) -> HubSessionConfig {
    HubSessionConfig {
        device_id: "dev-1".into(),
        module_id: module_id.map(String::from),
        persistent,
        idle: Duration::from_secs(90),
        token_valid_for: Duration::from_hours(1),
    }
}

fn session() -> (HubSession, Instant) {
    let now = Instant::now();
    (
        HubSession::new(config(None, false), Subscriptions::new(), now),
        now,
    )
}

fn subscribe(s: &mut HubSession, filters: &[(&str, QoS)]) -> Vec<Action<HubCall>> {
    let filters = filters.iter().map(|(f, q)| (f.to_string(), *q)).collect();
    s.on_packet(
        Packet::Subscribe(Subscribe::new(3, filters)),
        Instant::now(),
    )
}

fn publish(topic: &str, qos: QoS, pkid: u16, body: &str) -> Packet {
    Packet::Publish(Publish::new(
        topic,
        qos,
        pkid,
        Bytes::from(body.to_string()),
    ))
}

fn telemetry(qos: QoS, pkid: u16) -> Packet {
    publish("devices/dev-1/messages/events/k=v", qos, pkid, "{}")
}

fn c2d(seq: u64) -> C2dMessage {
    C2dMessage {
        sequence_number: seq,
        device_id: "dev-1".into(),
        message_id: format!("m{seq}"),
        correlation_id: None,
        content_type: None,
        content_encoding: None,
        expiry_unix: 4_102_444_800,
        enqueued_time_utc: String::new(),
        delivery_count: 0,
        ack: None,
        properties: BTreeMap::default(),
        body: format!("body {seq}").into_bytes(),
    }
}

fn publishes(actions: &[Action<HubCall>]) -> Vec<&Publish> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Packet::Publish(p)) => Some(p),
            _ => None,
        })
        .collect()
}

fn violation(actions: &[Action<HubCall>]) -> &str {
    match actions.last() {
        Some(Action::Close(Close::Violation(m))) => m,
        other => panic!("expected a close: {other:?}"),
    }
}

#[test]
fn subscriptions_grant_served_filters_and_refuse_the_rest() {
    use SubscribeReturnCode::{Failure, Success};
    let now = Instant::now();
    let mut s = HubSession::new(config(None, true), Subscriptions::new(), now);
    let a = subscribe(
        &mut s,
        &[
            (TWIN_RES, QoS::AtMostOnce),
            (DESIRED, QoS::ExactlyOnce),
            (METHODS, QoS::AtLeastOnce),
            (C2D, QoS::AtLeastOnce),
            ("devices/other/messages/devicebound/#", QoS::AtLeastOnce),
            ("devices/dev-1/modules/m/inputs/#", QoS::AtLeastOnce),
        ],
    );
    let features = Features {
        desired: true,
        methods: true,
        c2d: true,
    };
    let [
        Action::Call(HubCall::SetFeatures(f)),
        Action::Call(HubCall::SaveSubscriptions(saved)),
        Action::Send(Packet::SubAck(ack)),
        Action::Call(HubCall::PendingC2d),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!(*f, features);
    assert_eq!(saved, s.subscriptions());
    assert_eq!(saved.len(), 4);
    assert_eq!(saved[DESIRED], QoS::AtLeastOnce, "QoS 2 is granted as 1");
    assert_eq!(ack.pkid, 3);
    assert_eq!(
        ack.return_codes,
        [
            Success(QoS::AtMostOnce),
            Success(QoS::AtLeastOnce),
            Success(QoS::AtLeastOnce),
            Success(QoS::AtLeastOnce),
            Failure,
            Failure
        ]
    );
    let a = s.on_packet(
        Packet::Unsubscribe(Unsubscribe::new(4, vec![C2D.into(), METHODS.into()])),
        now,
    );
    let [
        Action::Call(HubCall::SetFeatures(f)),
        Action::Call(HubCall::SaveSubscriptions(saved)),
        Action::Send(Packet::UnsubAck(4)),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!((f.desired, f.methods, f.c2d), (true, false, false));
    assert_eq!(saved.len(), 2);
}

#[test]
fn clean_sessions_are_not_saved_and_modules_get_no_c2d() {
    let now = Instant::now();
    let mut s = HubSession::new(config(Some("m"), false), Subscriptions::new(), now);
    assert_eq!(s.identity(), "dev-1/m");
    let a = subscribe(
        &mut s,
        &[(C2D, QoS::AtLeastOnce), (TWIN_RES, QoS::AtLeastOnce)],
    );
    let [
        Action::Call(HubCall::SetFeatures(f)),
        Action::Send(Packet::SubAck(ack)),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!(*f, Features::default());
    assert_eq!(
        ack.return_codes,
        [
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Success(QoS::AtLeastOnce)
        ]
    );
}

#[test]
fn a_resumed_session_announces_its_features_and_delivers_the_queue() {
    let subs = from_stored(to_stored(
        &[
            (C2D.to_string(), QoS::AtLeastOnce),
            (METHODS.to_string(), QoS::AtMostOnce),
        ]
        .into(),
    ));
    assert_eq!(subs[METHODS], QoS::AtMostOnce);
    assert_eq!(
        to_stored(&subs),
        [(METHODS.to_string(), 0), (C2D.to_string(), 1)].into()
    );
    let mut s = HubSession::new(config(None, true), subs, Instant::now());
    let a = s.on_connected(true);
    // The features are in place before the device sees CONNACK.
    let [
        Action::Call(HubCall::SetFeatures(f)),
        Action::Send(Packet::ConnAck(ack)),
        Action::Call(HubCall::PendingC2d),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!((f.desired, f.methods, f.c2d), (false, true, true));
    assert_eq!(*ack, ConnAck::new(ConnectReturnCode::Accepted, true));
    // Nothing subscribed: nothing to deliver.
    let (mut s, _) = session();
    assert!(matches!(
        &s.on_connected(false)[..],
        [
            Action::Call(HubCall::SetFeatures(_)),
            Action::Send(Packet::ConnAck(ConnAck {
                session_present: false,
                ..
            }))
        ]
    ));
    assert!(s.on_event(HubEvent::C2dAvailable).is_empty());
}

#[test]
fn c2d_in_flight_until_puback_and_not_sent_twice() {
    let (mut s, now) = session();
    subscribe(&mut s, &[(C2D, QoS::AtLeastOnce)]);
    let a = s.on_reply(HubReply::PendingC2d(Ok(vec![c2d(10), c2d(11)])), now);
    let sent = publishes(&a);
    assert_eq!(sent.len(), 2);
    assert_eq!((sent[0].pkid, sent[1].pkid), (1, 2));
    assert_eq!(sent[0].qos, QoS::AtLeastOnce);
    assert!(
        sent[0]
            .topic
            .starts_with("devices/dev-1/messages/devicebound/%24.mid=m10&"),
        "{}",
        sent[0].topic
    );
    assert_eq!(&sent[1].payload[..], b"body 11");
    let marked: Vec<u64> = a
        .iter()
        .filter_map(|a| match a {
            Action::Call(HubCall::MarkC2dDelivered(m)) => Some(m.sequence_number),
            _ => None,
        })
        .collect();
    assert_eq!(marked, [10, 11]);
    // The queue is read again (a new message arrived): the in-flight ones are skipped.
    let a = s.on_reply(
        HubReply::PendingC2d(Ok(vec![c2d(10), c2d(11), c2d(12)])),
        now,
    );
    let sent = publishes(&a);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].pkid, &sent[0].payload[..]), (3, &b"body 12"[..]));
    // PUBACK completes exactly the message it acknowledges; unknown ids are ignored.
    let a = s.on_packet(Packet::PubAck(2), now);
    assert!(matches!(&a[..], [Action::Call(HubCall::CompleteC2d(11))]));
    assert!(s.on_packet(Packet::PubAck(2), now).is_empty());
    assert!(s.on_packet(Packet::PubAck(99), now).is_empty());
    // After the device dropped the subscription nothing more goes out.
    s.on_packet(
        Packet::Unsubscribe(Unsubscribe::new(5, vec![C2D.into()])),
        now,
    );
    assert!(
        s.on_reply(HubReply::PendingC2d(Ok(vec![c2d(13)])), now)
            .is_empty()
    );
}

#[test]
fn c2d_at_qos0_is_done_once_sent() {
    let (mut s, now) = session();
    subscribe(&mut s, &[(C2D, QoS::AtMostOnce)]);
    let a = s.on_reply(HubReply::PendingC2d(Ok(vec![c2d(7)])), now);
    let [
        Action::Send(Packet::Publish(p)),
        Action::Call(HubCall::CompleteC2d(7)),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!((p.qos, p.pkid), (QoS::AtMostOnce, 0));
    let err = HubError::Internal("disk".into());
    assert!(s.on_reply(HubReply::PendingC2d(Err(err)), now).is_empty());
}

#[test]
fn packet_ids_wrap_around_and_skip_ids_in_flight() {
    let (mut s, now) = session();
    subscribe(
        &mut s,
        &[(C2D, QoS::AtLeastOnce), (DESIRED, QoS::AtLeastOnce)],
    );
    // Message 1 takes packet id 1 and stays unacknowledged.
    let a = s.on_reply(HubReply::PendingC2d(Ok(vec![c2d(1)])), now);
    assert_eq!(publishes(&a)[0].pkid, 1);
    let patch = |v: u64| HubEvent::DesiredPatch(json!({ "$version": v }));
    for v in 2..=u16::MAX {
        let a = s.on_event(patch(u64::from(v)));
        assert_eq!(publishes(&a)[0].pkid, v);
    }
    // 65535 wraps to 1, which is still in flight: 2 comes next (0 is never used).
    let a = s.on_event(patch(1));
    let p = publishes(&a)[0];
    assert_eq!(p.pkid, 2);
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=1");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap()["$version"],
        1
    );
    // Once acknowledged, 1 is free again.
    s.on_packet(Packet::PubAck(1), now);
    for _ in 3..=u16::MAX {
        s.on_event(patch(0));
    }
    assert_eq!(publishes(&s.on_event(patch(0)))[0].pkid, 1);
}

#[test]
fn events_follow_the_subscriptions() {
    let (mut s, _) = session();
    let method = || {
        HubEvent::MethodRequest(Box::new(fleethub_services::hub::MethodCall {
            rid: "9".into(),
            name: "reboot".into(),
            payload: b"{}".to_vec(),
        }))
    };
    assert!(s.on_event(method()).is_empty());
    assert!(
        s.on_event(HubEvent::DesiredPatch(json!({"$version": 2})))
            .is_empty()
    );
    subscribe(
        &mut s,
        &[(METHODS, QoS::AtLeastOnce), (DESIRED, QoS::AtMostOnce)],
    );
    let a = s.on_event(method());
    let p = publishes(&a)[0];
    assert_eq!(p.topic, "$iothub/methods/POST/reboot/?$rid=9");
    assert_eq!(
        (p.qos, p.pkid),
        (QoS::AtMostOnce, 0),
        "methods go out at QoS 0"
    );
    let a = s.on_event(HubEvent::DesiredPatch(json!({"$version": 2})));
    assert_eq!(publishes(&a)[0].qos, QoS::AtMostOnce);
    let a = s.on_event(HubEvent::Revoked("device disabled".into()));
    assert_eq!(violation(&a), "dev-1: device disabled; connection closed");
}

#[test]
fn twin_requests_and_replies() {
    let (mut s, now) = session();
    subscribe(&mut s, &[(TWIN_RES, QoS::AtLeastOnce)]);
    let a = s.on_packet(
        publish("$iothub/twin/GET/?$rid=1", QoS::AtLeastOnce, 8, ""),
        now,
    );
    let [
        Action::Send(Packet::PubAck(8)),
        Action::Call(HubCall::GetTwin { rid }),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!(rid, "1");
    let a = s.on_reply(
        HubReply::Twin {
            rid: "1".into(),
            result: Ok(br#"{"desired":{}}"#.to_vec()),
        },
        now,
    );
    let p = publishes(&a)[0];
    assert_eq!(p.topic, "$iothub/twin/res/200/?$rid=1");
    assert_eq!((p.qos, p.pkid), (QoS::AtLeastOnce, 1));
    assert_eq!(&p.payload[..], br#"{"desired":{}}"#);

    let topic = "$iothub/twin/PATCH/properties/reported/?$rid=2";
    let a = s.on_packet(publish(topic, QoS::AtMostOnce, 0, r#"{"a":1}"#), now);
    let [Action::Call(HubCall::PatchReported { rid, patch })] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!((rid.as_str(), patch), ("2", &json!({"a": 1})));
    let reply = HubReply::ReportedPatched {
        rid: "2".into(),
        result: Ok(5),
    };
    let a = s.on_reply(reply, now);
    let p = publishes(&a)[0];
    assert_eq!(p.topic, "$iothub/twin/res/204/?$rid=2&$version=5");
    assert!(p.payload.is_empty());

    // Errors carry the status and Azure's error JSON.
    let reply = HubReply::Twin {
        rid: "3".into(),
        result: Err(HubError::ModuleNotFound {
            device: "dev-1".into(),
            module: "m".into(),
        }),
    };
    let a = s.on_reply(reply, now);
    let p = publishes(&a)[0];
    assert_eq!(p.topic, "$iothub/twin/res/404/?$rid=3");
    let body: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(
        body,
        json!({"errorCode": 404001, "message": "module 'm' of device 'dev-1' not found"})
    );
    // A patch that is not JSON is refused without a service call.
    let a = s.on_packet(
        publish(topic.replace("=2", "=4").as_str(), QoS::AtMostOnce, 0, "{x"),
        now,
    );
    let p = publishes(&a)[0];
    assert_eq!(p.topic, "$iothub/twin/res/400/?$rid=4");
    assert_eq!(a.len(), 1);
}

#[test]
fn twin_replies_without_a_subscription_go_out_at_qos0() {
    let (mut s, now) = session();
    let reply = HubReply::ReportedPatched {
        rid: "1".into(),
        result: Ok(2),
    };
    let a = s.on_reply(reply, now);
    assert_eq!(
        (publishes(&a)[0].qos, publishes(&a)[0].pkid),
        (QoS::AtMostOnce, 0)
    );
}

#[test]
fn method_responses_go_to_the_hub() {
    let (mut s, now) = session();
    let topic = "$iothub/methods/res/200/?$rid=77";
    let a = s.on_packet(publish(topic, QoS::AtMostOnce, 0, "{}"), now);
    let [
        Action::Call(HubCall::MethodResponse {
            rid,
            status,
            payload,
        }),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!(
        (rid.as_str(), *status, &payload[..]),
        ("77", 200, &b"{}"[..])
    );
    assert!(matches!(s.on_reply(HubReply::Done, now)[..], []));
}

#[test]
fn a_burst_of_telemetry_is_stored_once_and_acknowledged_in_order() {
    let (mut s, now) = session();
    assert!(s.on_packet(telemetry(QoS::AtLeastOnce, 5), now).is_empty());
    assert!(s.on_packet(telemetry(QoS::AtMostOnce, 0), now).is_empty());
    assert!(s.on_packet(telemetry(QoS::AtLeastOnce, 6), now).is_empty());
    let a = s.on_burst_end();
    let [Action::Call(HubCall::StoreTelemetry { messages, acks })] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0].properties["k"], "v");
    assert_eq!(acks, &[5, 6]);
    assert!(s.on_burst_end().is_empty());
    let reply = HubReply::TelemetryStored {
        acks: vec![5, 6],
        result: Ok(()),
    };
    let a = s.on_reply(reply, now);
    assert!(matches!(
        &a[..],
        [
            Action::Send(Packet::PubAck(5)),
            Action::Send(Packet::PubAck(6))
        ]
    ));
    // Not stored: not acknowledged, the connection closes (the device resends).
    let reply = HubReply::TelemetryStored {
        acks: vec![7],
        result: Err(HubError::Internal("disk full".into())),
    };
    let a = s.on_reply(reply, now);
    assert_eq!(a.len(), 1);
    assert_eq!(
        violation(&a),
        "dev-1: telemetry not accepted: internal error: disk full"
    );
}

#[test]
fn batches_end_at_other_packets_and_at_the_size_limit() {
    let (mut s, now) = session();
    s.on_packet(telemetry(QoS::AtLeastOnce, 1), now);
    let a = s.on_packet(Packet::PingReq, now);
    let [
        Action::Call(HubCall::StoreTelemetry { messages, .. }),
        Action::Send(Packet::PingResp),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!(messages.len(), 1);
    for i in 1..=TELEMETRY_BATCH as u16 {
        assert!(s.on_packet(telemetry(QoS::AtLeastOnce, i), now).is_empty());
    }
    let a = s.on_packet(telemetry(QoS::AtLeastOnce, 100), now);
    let [Action::Call(HubCall::StoreTelemetry { acks, .. })] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(acks.len(), TELEMETRY_BATCH);
    let a = s.on_packet(Packet::Disconnect, now);
    let [
        Action::Call(HubCall::StoreTelemetry { acks, .. }),
        Action::Close(Close::Disconnect),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!(acks, &[100]);
}

#[test]
fn bad_telemetry_closes_after_storing_the_ones_before_it() {
    let (mut s, now) = session();
    s.on_packet(telemetry(QoS::AtLeastOnce, 1), now);
    let a = s.on_packet(
        publish("devices/dev-2/messages/events/", QoS::AtLeastOnce, 2, ""),
        now,
    );
    let [
        Action::Call(HubCall::StoreTelemetry { acks, .. }),
        Action::Close(_),
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!(acks, &[1]);
    assert_eq!(
        violation(&a),
        "dev-1 may not publish as another identity (topic devices/dev-2/messages/events/)"
    );
    let a = s.on_packet(
        publish("devices/dev-1/messages/events/=v", QoS::AtMostOnce, 0, ""),
        now,
    );
    assert!(
        violation(&a).starts_with("dev-1: bad property bag: "),
        "{a:?}"
    );
}

#[test]
fn refusals_and_protocol_violations() {
    let (mut s, now) = session();
    let a = s.on_packet(
        publish("$iothub/twin/GET/?$rid=1", QoS::ExactlyOnce, 1, ""),
        now,
    );
    assert_eq!(violation(&a), "dev-1: QoS 2 publish is not supported");
    let a = s.on_packet(publish("$iothub/unknown", QoS::AtMostOnce, 0, ""), now);
    assert!(violation(&a).starts_with("dev-1: "), "{a:?}");
    let a = s.on_packet(
        Packet::Connect(fleethub_mqtt_codec::Connect::new("x", true, 0)),
        now,
    );
    assert_eq!(violation(&a), "unexpected CONNECT from a client");

    // CONNECT checks before authentication.
    assert_eq!(
        check_connect("Hub.Example", "hub.example", "dev-1", "dev-1"),
        Ok(())
    );
    let r = check_connect("hub.example", "other.example", "dev-1", "dev-1").unwrap_err();
    assert_eq!(r.code, ConnectReturnCode::NotAuthorized);
    assert_eq!(
        r.reason,
        "user name names hub 'other.example', this hub is 'hub.example'"
    );
    let r = check_connect("hub.example", "hub.example", "dev-1/m", "dev-1").unwrap_err();
    assert_eq!(r.code, ConnectReturnCode::IdentifierRejected);
    assert!(r.reason.contains("must be 'dev-1/m'"), "{}", r.reason);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_and_token_expiry_end_the_session() {
    let t0 = Instant::now();
    let mut cfg = config(None, false);
    cfg.token_valid_for = Duration::from_secs(200);
    let mut s = HubSession::new(cfg, Subscriptions::new(), t0);
    assert_eq!(s.deadline(), t0 + Duration::from_secs(90));
    tokio::time::sleep(Duration::from_secs(80)).await;
    s.on_packet(Packet::PingReq, Instant::now());
    tokio::time::sleep_until(s.deadline()).await;
    assert_eq!(Instant::now(), t0 + Duration::from_secs(170));
    assert!(matches!(
        &s.on_timeout(Instant::now())[..],
        [Action::Close(Close::KeepAlive(90))]
    ));
    // Packets keep it alive, but not past the token.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        s.on_packet(Packet::PingReq, Instant::now());
    }
    assert_eq!(s.deadline(), t0 + Duration::from_secs(200));
    tokio::time::sleep_until(s.deadline()).await;
    let a = s.on_timeout(Instant::now());
    assert_eq!(
        violation(&a),
        "dev-1: SAS token expired; the device must reconnect with a new one"
    );
}

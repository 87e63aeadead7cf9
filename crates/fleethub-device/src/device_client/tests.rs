//! Device client flows against an in-memory broker (`FakeBroker`), with paused time where
//! timing matters (SAS renewal, back-off).

use std::sync::Arc;
use std::time::Duration;

use fleethub_mqtt_codec::{ConnAck, ConnectReturnCode, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::connection::{BoxTransport, Connector, Credentials};
use super::*;
use crate::mqtt_client::tests::FakeBroker;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const HOST: &str = "hub.example";

/// A connector handing the server side of every new connection to the test.
fn connector() -> (Connector, mpsc::UnboundedReceiver<FakeBroker>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let connector: Connector = Arc::new(move || {
        let tx = tx.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(256 * 1024);
            tx.send(FakeBroker::new(server))
                .map_err(|_| DeviceError::Config("test over".into()))?;
            Ok(Box::new(client) as BoxTransport)
        })
    });
    (connector, rx)
}

fn ids(module: Option<&str>) -> Ids {
    Ids {
        host: HOST.into(),
        device_id: "dev-01".into(),
        module_id: module.map(str::to_string),
        gateway: None,
    }
}

/// Starts a client; returns it and the broker of its first connection (CONNACK sent).
async fn start(
    options: DeviceClientOptions,
    session_present: bool,
) -> (
    DeviceClient,
    FakeBroker,
    mpsc::UnboundedReceiver<FakeBroker>,
    fleethub_mqtt_codec::Connect,
) {
    let (conn, mut brokers) = connector();
    let client = tokio::spawn(DeviceClient::connect_with(
        ids(None),
        Credentials::Key(KEY.into()),
        options,
        conn,
    ));
    let mut broker = brokers.recv().await.unwrap();
    let connect = accept(&mut broker, session_present).await;
    let client = client.await.unwrap().unwrap();
    (client, broker, brokers, connect)
}

async fn accept(broker: &mut FakeBroker, session_present: bool) -> fleethub_mqtt_codec::Connect {
    let c = broker.expect_connect().await;
    broker
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Accepted,
            session_present,
        )))
        .await;
    c
}

/// Next packet, answering PINGREQs on the way.
async fn next(broker: &mut FakeBroker) -> Option<Packet> {
    loop {
        match broker.recv().await {
            Some(Packet::PingReq) => broker.send(Packet::PingResp).await,
            other => return other,
        }
    }
}

async fn expect_subscribe(broker: &mut FakeBroker) -> Vec<String> {
    match next(broker).await {
        Some(Packet::Subscribe(s)) => {
            let codes = s
                .filters
                .iter()
                .map(|_| fleethub_mqtt_codec::SubscribeReturnCode::Success(QoS::AtLeastOnce))
                .collect();
            broker
                .send(Packet::SubAck(fleethub_mqtt_codec::SubAck::new(
                    s.pkid, codes,
                )))
                .await;
            s.filters.into_iter().map(|(f, _)| f).collect()
        }
        other => panic!("expected SUBSCRIBE, got {other:?}"),
    }
}

/// Expects a QoS 1 PUBLISH and PUBACKs it.
async fn expect_publish(broker: &mut FakeBroker) -> fleethub_mqtt_codec::Publish {
    match next(broker).await {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.qos, QoS::AtLeastOnce, "{}", p.topic);
            broker.send(Packet::PubAck(p.pkid)).await;
            p
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn rid_of(topic: &str) -> String {
    topic.rsplit_once("$rid=").unwrap().1.to_string()
}

/// Answers one twin GET with `twin`.
async fn serve_twin_get(broker: &mut FakeBroker, twin: &Value) {
    let p = expect_publish(broker).await;
    assert!(
        p.topic.starts_with("$iothub/twin/GET/?$rid="),
        "{}",
        p.topic
    );
    assert_eq!(&p.payload[..], b" ");
    let rid = rid_of(&p.topic);
    broker
        .publish(
            &format!("$iothub/twin/res/200/?$rid={rid}"),
            QoS::AtLeastOnce,
            41,
            &twin.to_string(),
        )
        .await;
    assert_eq!(next(broker).await, Some(Packet::PubAck(41)));
}

#[tokio::test]
async fn connect_packet_and_telemetry_acknowledged() {
    let (client, mut broker, _b, connect) = start(DeviceClientOptions::default(), false).await;
    assert_eq!(connect.client_id, "dev-01");
    assert_eq!(
        connect.username.as_deref(),
        Some(
            format!(
                "hub.example/dev-01/?api-version=2021-04-12&DeviceClientType=fleethub-device%2F{}",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        )
    );
    assert!(!connect.clean_session);
    assert_eq!(connect.keep_alive, 60);
    let password = String::from_utf8(connect.password.unwrap()).unwrap();
    let token = fleethub_core::sas::SasToken::parse(&password).unwrap();
    assert_eq!(token.sr_raw, "hub.example%2Fdevices%2Fdev-01");
    assert_eq!(token.skn, None);
    assert!(token.verify_signature(KEY).unwrap());
    let now = fleethub_core::time_util::now_unix();
    assert!((now + 3590..=now + 3610).contains(&token.expiry));
    assert_eq!(client.status(), ConnectionStatus::Connected);

    // send_event completes only with the PUBACK.
    let sender = client.clone();
    let send = tokio::spawn(async move {
        sender
            .send_event(Message::json(&json!({"t": 1})).with_property("k", "v"))
            .await
    });
    let p = match broker.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        p.topic,
        "devices/dev-01/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&k=v"
    );
    assert_eq!(p.qos, QoS::AtLeastOnce);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!send.is_finished());
    broker.send(Packet::PubAck(p.pkid)).await;
    send.await.unwrap().unwrap();

    let big = Message::new(vec![0u8; 256 * 1024]);
    assert!(matches!(
        client.send_event(big).await,
        Err(DeviceError::MessageTooLarge { .. })
    ));
    client.close().await;
    assert_eq!(next(&mut broker).await, Some(Packet::Disconnect));
    assert!(matches!(
        client.send_event(Message::new("x")).await,
        Err(DeviceError::Closed(_))
    ));
    assert!(matches!(client.status(), ConnectionStatus::Closed { .. }));
}

#[tokio::test]
async fn module_identity() {
    let (conn, mut brokers) = connector();
    let client = tokio::spawn(DeviceClient::connect_with(
        ids(Some("m1")),
        Credentials::Key(KEY.into()),
        DeviceClientOptions::default(),
        conn,
    ));
    let mut broker = brokers.recv().await.unwrap();
    let connect = accept(&mut broker, false).await;
    let client = client.await.unwrap().unwrap();
    assert_eq!(connect.client_id, "dev-01/m1");
    assert!(
        connect
            .username
            .unwrap()
            .starts_with("hub.example/dev-01/m1/?api-version=")
    );
    let token = String::from_utf8(connect.password.unwrap()).unwrap();
    assert!(token.contains("sr=hub.example%2Fdevices%2Fdev-01%2Fmodules%2Fm1&"));
    let send = tokio::spawn({
        let c = client.clone();
        async move { c.send_event(Message::new("x")).await }
    });
    let p = expect_publish(&mut broker).await;
    assert_eq!(p.topic, "devices/dev-01/modules/m1/messages/events/");
    send.await.unwrap().unwrap();
    assert!(matches!(
        client.c2d_messages().await,
        Err(DeviceError::Config(_))
    ));
}

#[tokio::test]
async fn refused_first_connection_is_reported() {
    let (conn, mut brokers) = connector();
    let client = tokio::spawn(DeviceClient::connect_with(
        ids(None),
        Credentials::Key(KEY.into()),
        DeviceClientOptions::default(),
        conn,
    ));
    let mut broker = brokers.recv().await.unwrap();
    broker.expect_connect().await;
    broker
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::NotAuthorized,
            false,
        )))
        .await;
    let err = client.await.unwrap().unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert!(err.to_string().contains("code 5 (not authorized)"), "{err}");
}

#[tokio::test]
async fn twin_get_patch_and_error_status() {
    let (client, mut broker, _b, _) = start(DeviceClientOptions::default(), false).await;
    let twin = json!({"desired": {"fw": "2", "$version": 4}, "reported": {"$version": 1}});
    let get = tokio::spawn({
        let c = client.clone();
        async move { c.get_twin().await }
    });
    assert_eq!(
        expect_subscribe(&mut broker).await,
        vec!["$iothub/twin/res/#"]
    );
    serve_twin_get(&mut broker, &twin).await;
    assert_eq!(get.await.unwrap().unwrap(), twin);

    // Second request: no second SUBSCRIBE.
    let patch = tokio::spawn({
        let c = client.clone();
        async move { c.patch_reported(json!({"fw": "2", "old": null})).await }
    });
    let p = expect_publish(&mut broker).await;
    assert!(
        p.topic
            .starts_with("$iothub/twin/PATCH/properties/reported/?$rid="),
        "{}",
        p.topic
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&p.payload).unwrap(),
        json!({"fw": "2", "old": null})
    );
    let rid = rid_of(&p.topic);
    broker
        .publish(
            &format!("$iothub/twin/res/204/?$rid={rid}&$version=5"),
            QoS::AtMostOnce,
            0,
            "",
        )
        .await;
    assert_eq!(patch.await.unwrap().unwrap(), 5);

    // An error status carries the body's message.
    let patch = tokio::spawn({
        let c = client.clone();
        async move { c.patch_reported(json!({"x": 1})).await }
    });
    let p = expect_publish(&mut broker).await;
    let rid = rid_of(&p.topic);
    // An unrelated response first: ignored.
    broker
        .publish("$iothub/twin/res/200/?$rid=999", QoS::AtMostOnce, 0, "{}")
        .await;
    broker
        .publish(
            &format!("$iothub/twin/res/400/?$rid={rid}"),
            QoS::AtMostOnce,
            0,
            r#"{"errorCode":400004,"message":"patch is not valid"}"#,
        )
        .await;
    match patch.await.unwrap() {
        Err(DeviceError::Twin {
            status: 400,
            error_code: Some(400004),
            message,
        }) => assert_eq!(message, "patch is not valid"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client.patch_reported(json!([1])).await,
        Err(DeviceError::Config(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn twin_request_times_out_without_response() {
    let options = DeviceClientOptions::default().with_operation_timeout(Duration::from_secs(5));
    let (client, mut broker, _b, _) = start(options, false).await;
    let get = tokio::spawn({
        let c = client.clone();
        async move { c.get_twin().await }
    });
    expect_subscribe(&mut broker).await;
    expect_publish(&mut broker).await;
    assert!(matches!(
        get.await.unwrap(),
        Err(DeviceError::Timeout { .. })
    ));
    assert!(lock(&client.shared.twin_pending).is_empty());
}

#[tokio::test]
async fn desired_updates_and_direct_methods() {
    let (client, mut broker, _b, _) = start(DeviceClientOptions::default(), false).await;
    let desired = tokio::spawn({
        let c = client.clone();
        async move { c.desired_updates().await }
    });
    assert_eq!(
        expect_subscribe(&mut broker).await,
        vec!["$iothub/twin/PATCH/properties/desired/#"]
    );
    let mut desired = desired.await.unwrap().unwrap();
    broker
        .publish(
            "$iothub/twin/PATCH/properties/desired/?$version=8",
            QoS::AtLeastOnce,
            3,
            r#"{"interval":5,"$version":8}"#,
        )
        .await;
    assert_eq!(next(&mut broker).await, Some(Packet::PubAck(3)));
    assert_eq!(
        desired.recv().await.unwrap(),
        json!({"interval": 5, "$version": 8})
    );

    let methods = tokio::spawn({
        let c = client.clone();
        async move { c.method_requests().await }
    });
    assert_eq!(
        expect_subscribe(&mut broker).await,
        vec!["$iothub/methods/POST/#"]
    );
    let mut methods = methods.await.unwrap().unwrap();
    broker
        .publish(
            "$iothub/methods/POST/reboot/?$rid=7f",
            QoS::AtMostOnce,
            0,
            r#"{"delay":5}"#,
        )
        .await;
    let req = methods.recv().await.unwrap();
    assert_eq!(
        req,
        MethodRequest {
            name: "reboot".into(),
            rid: "7f".into(),
            payload: json!({"delay": 5})
        }
    );
    let respond = tokio::spawn({
        let c = client.clone();
        async move { c.respond(&req.rid, 200, json!({"ok": true})).await }
    });
    let p = expect_publish(&mut broker).await;
    assert_eq!(p.topic, "$iothub/methods/res/200/?$rid=7f");
    assert_eq!(&p.payload[..], br#"{"ok":true}"#);
    respond.await.unwrap().unwrap();

    // on_method replaces the receiver (no new SUBSCRIBE) and answers by itself.
    let handler = client
        .on_method(|req: MethodRequest| async move {
            if req.name == "reboot" {
                MethodResponse::ok(json!({"rebooting": req.payload}))
            } else {
                MethodResponse::new(404, json!({"error": "unknown method"}))
            }
        })
        .await
        .unwrap();
    assert!(methods.recv().await.is_none());
    broker
        .publish("$iothub/methods/POST/nope/?$rid=2", QoS::AtMostOnce, 0, "")
        .await;
    let p = expect_publish(&mut broker).await;
    assert_eq!(p.topic, "$iothub/methods/res/404/?$rid=2");
    broker
        .publish(
            "$iothub/methods/POST/reboot/?$rid=3",
            QoS::AtMostOnce,
            0,
            "1",
        )
        .await;
    let p = expect_publish(&mut broker).await;
    assert_eq!(p.topic, "$iothub/methods/res/200/?$rid=3");
    assert_eq!(&p.payload[..], br#"{"rebooting":1}"#);

    client.close().await;
    assert!(desired.recv().await.is_none());
    handler.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn c2d_is_acknowledged_only_after_handover() {
    let options = DeviceClientOptions {
        channel_capacity: 1,
        ..DeviceClientOptions::default()
    };
    // A resumed session: the hub delivers a queued message right after CONNACK, before the
    // application asks for C2D messages.
    let (client, mut broker, _b, _) = start(options, true).await;
    let topic = |mid: &str| {
        format!(
            "devices/dev-01/messages/devicebound/%24.mid={mid}&%24.to=%2Fdevices%2Fdev-01%2Fmessages%2FdeviceBound&color=red"
        )
    };
    broker
        .publish(&topic("m0"), QoS::AtLeastOnce, 9, "zero")
        .await;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), broker.recv())
            .await
            .is_err(),
        "nothing may be acknowledged before a receiver exists"
    );
    let rx = tokio::spawn({
        let c = client.clone();
        async move { c.c2d_messages().await }
    });
    // The backlog message is handed over (and acknowledged); the SUBSCRIBE goes out too
    // (in either order: the acknowledgement follows the hand-over in another task).
    let mut acked = false;
    let mut subscribed = false;
    while !(acked && subscribed) {
        match next(&mut broker).await {
            Some(Packet::PubAck(9)) => acked = true,
            Some(Packet::Subscribe(s)) => {
                assert_eq!(
                    s.filters,
                    vec![(
                        "devices/dev-01/messages/devicebound/#".to_string(),
                        QoS::AtLeastOnce
                    )]
                );
                broker
                    .send(Packet::SubAck(fleethub_mqtt_codec::SubAck::new(
                        s.pkid,
                        vec![fleethub_mqtt_codec::SubscribeReturnCode::Success(
                            QoS::AtLeastOnce,
                        )],
                    )))
                    .await;
                subscribed = true;
            }
            other => panic!("{other:?}"),
        }
    }
    let mut rx = rx.await.unwrap().unwrap();
    broker
        .publish(&topic("m1"), QoS::AtLeastOnce, 10, "one")
        .await;
    // The receiver (capacity 1) is full with m0: m1 is not acknowledged yet.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), broker.recv())
            .await
            .is_err()
    );
    let m0 = rx.recv().await.unwrap();
    assert_eq!(
        (m0.message_id.as_deref(), m0.body_text().as_str()),
        (Some("m0"), "zero")
    );
    assert_eq!(next(&mut broker).await, Some(Packet::PubAck(10)));
    let m1 = rx.recv().await.unwrap();
    assert_eq!(m1.message_id.as_deref(), Some("m1"));
    assert_eq!(
        m1.to.as_deref(),
        Some("/devices/dev-01/messages/deviceBound")
    );
    assert_eq!(m1.properties["color"], "red");
    // Dropping the receiver: later messages stay unacknowledged (the hub keeps them).
    drop(rx);
    tokio::task::yield_now().await;
    broker
        .publish(&topic("m2"), QoS::AtLeastOnce, 11, "two")
        .await;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), broker.recv())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn sas_renewal_reconnects_at_eighty_percent_of_the_ttl() {
    let options = DeviceClientOptions::default().with_sas_ttl(Duration::from_secs(100));
    let t0 = Instant::now();
    let (client, mut broker, mut brokers, _) = start(options, false).await;
    let twin = json!({"desired": {"$version": 1}, "reported": {"$version": 1}});
    let get = tokio::spawn({
        let c = client.clone();
        async move { c.get_twin().await }
    });
    expect_subscribe(&mut broker).await;
    serve_twin_get(&mut broker, &twin).await;
    get.await.unwrap().unwrap();

    // 80 s in: DISCONNECT, then a new connection with a new token.
    assert_eq!(next(&mut broker).await, Some(Packet::Disconnect));
    let at = t0.elapsed();
    assert!(
        at >= Duration::from_secs(80) && at < Duration::from_secs(81),
        "{at:?}"
    );
    let mut broker = brokers.recv().await.unwrap();
    let connect = accept(&mut broker, true).await;
    assert!(!connect.clean_session);
    assert_eq!(
        t0.elapsed().as_secs(),
        80,
        "renewal reconnects without back-off"
    );
    // The session was kept: no SUBSCRIBE, twin requests go straight out.
    let get = tokio::spawn({
        let c = client.clone();
        async move { c.get_twin().await }
    });
    serve_twin_get(&mut broker, &twin).await;
    get.await.unwrap().unwrap();

    // Next renewal 80 s later; this time the hub lost the session: the client subscribes
    // again before anything else.
    assert_eq!(next(&mut broker).await, Some(Packet::Disconnect));
    assert_eq!(t0.elapsed().as_secs(), 160);
    let mut broker = brokers.recv().await.unwrap();
    accept(&mut broker, false).await;
    assert_eq!(
        expect_subscribe(&mut broker).await,
        vec!["$iothub/twin/res/#"]
    );
    let mut status = client.status_changes();
    status
        .wait_for(|s| *s == ConnectionStatus::Connected)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropped_connection_fails_in_flight_requests_and_reconnects_with_backoff() {
    let (client, mut broker, mut brokers, _) = start(DeviceClientOptions::default(), false).await;
    let mut status = client.status_changes();
    let get = tokio::spawn({
        let c = client.clone();
        async move { c.get_twin().await }
    });
    expect_subscribe(&mut broker).await;
    expect_publish(&mut broker).await;
    // The hub goes away before answering.
    drop(broker);
    match get.await.unwrap() {
        Err(DeviceError::ConnectionLost(reason)) => {
            assert!(reason.contains("closed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    status.changed().await.unwrap();
    assert!(matches!(
        *status.borrow(),
        ConnectionStatus::Connecting { .. }
    ));

    // A request made while reconnecting waits for the new connection.
    let send = tokio::spawn({
        let c = client.clone();
        async move { c.send_event(Message::new("late")).await }
    });
    let dropped_at = Instant::now();
    // First retry after 0.5..1 s: refuse it with "server unavailable" (retryable).
    let mut broker = brokers.recv().await.unwrap();
    let first = dropped_at.elapsed();
    assert!(
        first >= Duration::from_millis(500) && first <= Duration::from_secs(1),
        "{first:?}"
    );
    broker.expect_connect().await;
    broker
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::ServerUnavailable,
            false,
        )))
        .await;
    // Second retry 1..2 s later; the hub lost the session: re-SUBSCRIBE first.
    let t1 = Instant::now();
    let mut broker = brokers.recv().await.unwrap();
    let second = t1.elapsed();
    assert!(
        second >= Duration::from_secs(1) && second <= Duration::from_secs(2),
        "{second:?}"
    );
    accept(&mut broker, false).await;
    assert_eq!(
        expect_subscribe(&mut broker).await,
        vec!["$iothub/twin/res/#"]
    );
    let p = expect_publish(&mut broker).await;
    assert_eq!(&p.payload[..], b"late");
    send.await.unwrap().unwrap();
    assert_eq!(client.status(), ConnectionStatus::Connected);
}

#[tokio::test(start_paused = true)]
async fn refused_reconnection_closes_the_client() {
    let (client, broker, mut brokers, _) = start(DeviceClientOptions::default(), false).await;
    let mut desired_rx = {
        let c = client.clone();
        let t = tokio::spawn(async move { c.desired_updates().await });
        let mut broker = broker;
        expect_subscribe(&mut broker).await;
        let rx = t.await.unwrap().unwrap();
        drop(broker);
        rx
    };
    let mut broker = brokers.recv().await.unwrap();
    broker.expect_connect().await;
    broker
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::NotAuthorized,
            false,
        )))
        .await;
    assert!(desired_rx.recv().await.is_none());
    match client.status() {
        ConnectionStatus::Closed { reason } => assert!(reason.contains("code 5"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match client.get_twin().await {
        Err(DeviceError::Closed(reason)) => assert!(reason.contains("refused"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_disconnects() {
    let (client, mut broker, _b, _) = start(DeviceClientOptions::default(), false).await;
    let other = client.clone();
    drop(client);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), broker.recv())
            .await
            .is_err()
    );
    drop(other);
    assert_eq!(next(&mut broker).await, Some(Packet::Disconnect));
}

#[tokio::test(start_paused = true)]
async fn renewal_lets_requests_in_flight_finish_and_holds_new_ones() {
    let options = DeviceClientOptions::default().with_sas_ttl(Duration::from_secs(100));
    let t0 = Instant::now();
    let (client, mut broker, mut brokers, _) = start(options, false).await;
    let twin = json!({"desired": {"$version": 1}, "reported": {"$version": 1}});
    let get = tokio::spawn({
        let c = client.clone();
        async move { c.get_twin().await }
    });
    expect_subscribe(&mut broker).await;
    serve_twin_get(&mut broker, &twin).await;
    get.await.unwrap().unwrap();

    // Just before the renewal, a twin request goes out; the hub answers it 3 s later.
    tokio::time::sleep_until(t0 + Duration::from_millis(79_900)).await;
    let get = tokio::spawn({
        let c = client.clone();
        async move { c.get_twin().await }
    });
    let p = match next(&mut broker).await {
        Some(Packet::Publish(p)) => p,
        other => panic!("{other:?}"),
    };
    broker.send(Packet::PubAck(p.pkid)).await;
    tokio::time::sleep_until(t0 + Duration::from_secs(81)).await;
    // Draining: a new operation waits for the next connection.
    assert!(matches!(
        client.status(),
        ConnectionStatus::Connecting { .. }
    ));
    let send = tokio::spawn({
        let c = client.clone();
        async move { c.send_event(Message::new("after renewal")).await }
    });
    tokio::time::sleep_until(t0 + Duration::from_secs(83)).await;
    let rid = rid_of(&p.topic);
    broker
        .publish(
            &format!("$iothub/twin/res/200/?$rid={rid}"),
            QoS::AtMostOnce,
            0,
            &twin.to_string(),
        )
        .await;
    assert_eq!(get.await.unwrap().unwrap(), twin);
    // Only then the DISCONNECT and the new connection, where the held send goes out.
    assert_eq!(next(&mut broker).await, Some(Packet::Disconnect));
    let mut broker = brokers.recv().await.unwrap();
    accept(&mut broker, true).await;
    let p = expect_publish(&mut broker).await;
    assert_eq!(&p.payload[..], b"after renewal");
    send.await.unwrap().unwrap();
}

//! The client against an in-memory broker, and the broker (`FakeBroker`) other tests use.

use super::*;
use fleethub_mqtt_codec::{ConnAck, SubAck};
use tokio::io::DuplexStream;

/// Server side of an in-memory MQTT connection, for tests.
pub(crate) struct FakeBroker<S = DuplexStream> {
    framed: Framed<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FakeBroker<S> {
    pub fn new(stream: S) -> Self {
        FakeBroker {
            framed: Framed::new(stream, 1 << 20),
        }
    }

    /// Next packet from the client; `None` on EOF.
    pub async fn recv(&mut self) -> Option<Packet> {
        let next = tokio::time::timeout(Duration::from_mins(2), self.framed.next());
        match next.await.expect("client went quiet") {
            Ok(p) => p,
            Err(FrameError::Codec(e)) => panic!("client sent a malformed packet: {e}"),
            Err(_) => None,
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        self.framed.send(&packet).await.unwrap();
    }

    pub async fn expect_connect(&mut self) -> fleethub_mqtt_codec::Connect {
        match self.recv().await {
            Some(Packet::Connect(c)) => c,
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    pub async fn accept(&mut self) -> fleethub_mqtt_codec::Connect {
        let c = self.expect_connect().await;
        self.send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Accepted,
            false,
        )))
        .await;
        c
    }

    /// Answers a SUBSCRIBE granting QoS 1; returns the filters.
    pub async fn expect_subscribe(&mut self) -> Vec<(String, QoS)> {
        match self.recv().await {
            Some(Packet::Subscribe(s)) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|_| SubscribeReturnCode::Success(QoS::AtLeastOnce))
                    .collect();
                self.send(Packet::SubAck(SubAck::new(s.pkid, codes))).await;
                s.filters
            }
            other => panic!("expected SUBSCRIBE, got {other:?}"),
        }
    }

    /// Expects a PUBLISH (PUBACKs it when QoS 1).
    pub async fn expect_publish(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => {
                if p.qos == QoS::AtLeastOnce {
                    self.send(Packet::PubAck(p.pkid)).await;
                }
                p
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub async fn publish(&mut self, topic: &str, qos: QoS, pkid: u16, payload: &str) {
        let p = Publish::new(topic, qos, pkid, Bytes::from(payload.to_string()));
        self.send(Packet::Publish(p)).await;
    }
}

pub(crate) fn pair() -> (DuplexStream, FakeBroker) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    (client, FakeBroker::new(server))
}

#[tokio::test]
async fn connect_subscribe_publish_receive() {
    let (stream, mut broker) = pair();
    let server = tokio::spawn(async move {
        let c = broker.accept().await;
        assert_eq!(c.client_id, "dev-01");
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
        assert!(c.clean_session);
        assert_eq!(c.keep_alive, 60);
        let filters = broker.expect_subscribe().await;
        assert_eq!(filters, vec![("a/#".to_string(), QoS::AtLeastOnce)]);
        let p = broker.expect_publish().await;
        assert_eq!(
            (p.topic.as_str(), p.qos, &p.payload[..]),
            ("a/1", QoS::AtLeastOnce, &b"one"[..])
        );
        assert_ne!(p.pkid, 0);
        let p = broker.expect_publish().await;
        assert_eq!((p.topic.as_str(), p.qos), ("a/0", QoS::AtMostOnce));
        // Server -> client, QoS 1: the client must PUBACK it.
        broker.publish("a/in", QoS::AtLeastOnce, 7, "hello").await;
        assert_eq!(broker.recv().await, Some(Packet::PubAck(7)));
        assert_eq!(broker.recv().await, Some(Packet::Disconnect));
        assert_eq!(broker.recv().await, None);
    });
    let opts = MqttOptions::new("dev-01").with_credentials("user", b"secret".to_vec());
    assert!(format!("{opts:?}").contains("redacted"));
    let (client, mut incoming) = MqttClient::connect(stream, opts).await.unwrap();
    assert!(!client.session_present());
    let codes = client
        .subscribe(vec![("a/#".into(), QoS::AtLeastOnce)])
        .await
        .unwrap();
    assert_eq!(codes, vec![SubscribeReturnCode::Success(QoS::AtLeastOnce)]);
    client
        .publish("a/1", QoS::AtLeastOnce, "one")
        .await
        .unwrap();
    client
        .publish("a/0", QoS::AtMostOnce, "zero")
        .await
        .unwrap();
    let p = incoming.recv().await.unwrap();
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("a/in", &b"hello"[..]));
    assert!(matches!(
        client.publish("x", QoS::ExactlyOnce, "").await,
        Err(MqttError::UnsupportedQoS)
    ));
    client.disconnect().await.unwrap();
    server.await.unwrap();
    assert!(incoming.recv().await.is_none());
    assert!(matches!(
        client.publish("a/1", QoS::AtMostOnce, "late").await,
        Err(MqttError::ConnectionLost(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn manual_acks_wait_for_the_application() {
    let (stream, mut broker) = pair();
    let server = tokio::spawn(async move {
        broker.accept().await;
        broker.publish("c2d/1", QoS::AtLeastOnce, 21, "one").await;
        broker.publish("c2d/0", QoS::AtMostOnce, 0, "zero").await;
        // Nothing is acknowledged until the application says so.
        assert!(
            tokio::time::timeout(Duration::from_secs(5), broker.recv())
                .await
                .is_err()
        );
        assert_eq!(broker.recv().await, Some(Packet::PubAck(21)));
        assert_eq!(broker.recv().await, Some(Packet::Disconnect));
    });
    let opts = MqttOptions::new("d").with_manual_acks(true);
    let (client, mut incoming) = MqttClient::connect(stream, opts).await.unwrap();
    let one = incoming.recv().await.unwrap();
    assert_eq!((one.pkid, one.qos), (21, QoS::AtLeastOnce));
    assert_eq!(incoming.recv().await.unwrap().topic, "c2d/0");
    tokio::time::sleep(Duration::from_secs(6)).await;
    client.ack(one.pkid).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    client.disconnect().await.unwrap();
    server.await.unwrap();
    assert!(matches!(client.ack(1), Err(MqttError::ConnectionLost(_))));
}

#[tokio::test]
async fn refused_connack_is_reported_with_its_code() {
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
    let err = MqttClient::connect(stream, MqttOptions::new("d"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        MqttError::Refused(ConnectReturnCode::NotAuthorized)
    ));
    assert!(err.to_string().contains("code 5 (not authorized)"), "{err}");
}

#[tokio::test]
async fn eof_before_connack_and_connack_timeout() {
    let (stream, mut broker) = pair();
    tokio::spawn(async move {
        broker.expect_connect().await;
        drop(broker);
    });
    let err = MqttClient::connect(stream, MqttOptions::new("d"))
        .await
        .unwrap_err();
    assert!(matches!(err, MqttError::ConnectionLost(_)), "{err}");

    let (stream, broker) = pair();
    let opts = MqttOptions::new("d").with_connack_timeout(Duration::from_millis(100));
    let err = MqttClient::connect(stream, opts).await.unwrap_err();
    assert!(matches!(err, MqttError::ConnAckTimeout(_)), "{err}");
    drop(broker);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_pings_and_detects_a_dead_server() {
    let (stream, mut broker) = pair();
    let opts = MqttOptions::new("d").with_keep_alive(Duration::from_secs(30));
    let server = tokio::spawn(async move {
        broker.accept().await;
        assert_eq!(broker.recv().await, Some(Packet::PingReq));
        broker.send(Packet::PingResp).await;
        assert_eq!(broker.recv().await, Some(Packet::PingReq));
        // No PINGRESP this time: the client gives up and closes.
        assert_eq!(broker.recv().await, None);
    });
    let (client, mut incoming) = MqttClient::connect(stream, opts).await.unwrap();
    assert!(incoming.recv().await.is_none());
    server.await.unwrap();
    assert!(client.is_closed());
    let reason = incoming.close_reason().unwrap();
    assert!(reason.contains("PINGRESP"), "{reason}");
}

#[tokio::test]
async fn dropping_all_handles_disconnects() {
    let (stream, mut broker) = pair();
    let server = tokio::spawn(async move {
        broker.accept().await;
        assert_eq!(broker.recv().await, Some(Packet::Disconnect));
    });
    let (client, _incoming) = MqttClient::connect(stream, MqttOptions::new("d"))
        .await
        .unwrap();
    drop(client);
    server.await.unwrap();
}

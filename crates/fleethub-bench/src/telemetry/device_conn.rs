//! One bench device's connection: MQTT (QoS 1 publish, acknowledged by PUBACK) or AMQP (a
//! sender on `/devices/{id}/messages/events` after a `$cbs` put-token, acknowledged by the
//! `accepted` disposition), as the official AMQP device SDKs send telemetry.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use fe2o3_amqp_types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Message, MessageId, Outcome, Properties,
};
use fe2o3_amqp_types::primitives::{Binary, SimpleValue, Value};
use fleethub_device::{ClientTlsConfig, MqttClient};
use fleethub_mqtt_codec::QoS;
use serde::{Deserialize, Serialize};

/// The protocol the bench devices speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceTransport {
    #[default]
    Mqtt,
    Amqp,
}

impl fmt::Display for DeviceTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceTransport::Mqtt => "mqtt",
            DeviceTransport::Amqp => "amqp",
        })
    }
}

impl FromStr for DeviceTransport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mqtt" => Ok(DeviceTransport::Mqtt),
            "amqp" => Ok(DeviceTransport::Amqp),
            other => Err(format!("unknown transport '{other}': use mqtt or amqp")),
        }
    }
}

/// A connected bench device; clones share the connection (one per publishing lane).
#[derive(Clone)]
pub(super) enum DeviceConn {
    Mqtt(MqttClient),
    Amqp(Arc<AmqpDevice>),
}

impl DeviceConn {
    /// Sends one message and waits for its acknowledgement.
    pub(super) async fn send(&self, topic: &str, payload: Bytes) -> Result<(), String> {
        match self {
            DeviceConn::Mqtt(c) => c
                .publish(topic.to_string(), QoS::AtLeastOnce, payload)
                .await
                .map_err(|e| e.to_string()),
            DeviceConn::Amqp(d) => d.send(payload).await,
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        match self {
            DeviceConn::Mqtt(c) => c.is_closed(),
            DeviceConn::Amqp(d) => d.closed.load(Ordering::Relaxed),
        }
    }

    pub(super) async fn disconnect(self) {
        match self {
            DeviceConn::Mqtt(c) => {
                let _ = c.disconnect().await;
            }
            DeviceConn::Amqp(d) => d.close().await,
        }
    }
}

/// An AMQP device: its connection, session and telemetry sender.
pub(super) struct AmqpDevice {
    conn: tokio::sync::Mutex<ConnectionHandle<()>>,
    session: tokio::sync::Mutex<SessionHandle<()>>,
    sender: tokio::sync::Mutex<Sender>,
    closed: AtomicBool,
}

/// Bound on the `$cbs` reply.
const CBS_TIMEOUT: Duration = Duration::from_secs(30);

impl AmqpDevice {
    /// TLS to `host:port`, AMQP open (SASL ANONYMOUS), `$cbs` put-token of `token` for
    /// `{host}/devices/{id}`, then the telemetry sender.
    pub(super) async fn connect(
        tls: &ClientTlsConfig,
        host: &str,
        port: u16,
        id: &str,
        token: &str,
    ) -> Result<AmqpDevice, String> {
        let stream = tls.connect(host, port).await.map_err(|e| e.to_string())?;
        let mut conn = Connection::builder()
            .container_id(id)
            .hostname(host)
            .sasl_profile(SaslProfile::Anonymous)
            .open_with_stream(stream)
            .await
            .map_err(|e| format!("AMQP open: {e}"))?;
        let mut session = Session::begin(&mut conn)
            .await
            .map_err(|e| format!("AMQP begin: {e}"))?;
        put_token(&mut session, &format!("{host}/devices/{id}"), token).await?;
        let sender = Sender::attach(
            &mut session,
            format!("{id}-events"),
            format!("/devices/{id}/messages/events"),
        )
        .await
        .map_err(|e| format!("telemetry link: {e}"))?;
        Ok(AmqpDevice {
            conn: tokio::sync::Mutex::new(conn),
            session: tokio::sync::Mutex::new(session),
            sender: tokio::sync::Mutex::new(sender),
            closed: AtomicBool::new(false),
        })
    }

    async fn send(&self, payload: Bytes) -> Result<(), String> {
        let msg = Message::builder()
            .body(Body::<Value>::Data(
                vec![Data(Binary::from(payload.to_vec()))].into(),
            ))
            .build();
        // The transfer under the lock, the disposition outside it: lanes of one device overlap.
        let fut = {
            let mut s = self.sender.lock().await;
            s.send_batchable(msg).await
        };
        let outcome = match fut {
            Ok(f) => f.await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Outcome::Accepted(_)) => Ok(()),
            Ok(other) => Err(format!("telemetry not accepted: {other:?}")),
            Err(e) => {
                self.closed.store(true, Ordering::Relaxed);
                Err(e.to_string())
            }
        }
    }

    async fn close(&self) {
        let mut conn = self.conn.lock().await;
        let mut session = self.session.lock().await;
        let _ = session.end().await;
        let _ = conn.close().await;
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// One `$cbs` put-token on `session`; `Ok` on status 200.
async fn put_token(
    session: &mut SessionHandle<()>,
    audience: &str,
    token: &str,
) -> Result<(), String> {
    let mut tx = Sender::attach(session, "cbs-tx", "$cbs")
        .await
        .map_err(|e| format!("$cbs sender: {e}"))?;
    let mut rx = Receiver::builder()
        .name("cbs-rx")
        .source("$cbs")
        .target("cbs")
        .attach(session)
        .await
        .map_err(|e| format!("$cbs receiver: {e}"))?;
    let mut app = ApplicationProperties::default();
    for (k, v) in [
        ("operation", "put-token"),
        ("type", "servicebus.windows.net:sastoken"),
        ("name", audience),
    ] {
        app.0.insert(k.into(), SimpleValue::String(v.into()));
    }
    let req = Message::builder()
        .properties(Properties {
            message_id: Some(MessageId::String("put-token".into())),
            reply_to: Some("cbs".into()),
            ..Properties::default()
        })
        .application_properties(app)
        .body(Body::Value(AmqpValue(Value::String(token.into()))))
        .build();
    tx.send(req).await.map_err(|e| format!("put-token: {e}"))?;
    let d = tokio::time::timeout(CBS_TIMEOUT, rx.recv::<Body<Value>>())
        .await
        .map_err(|_| "no $cbs reply".to_string())?
        .map_err(|e| format!("$cbs reply: {e}"))?;
    let _ = rx.accept(&d).await;
    let status = d
        .message()
        .application_properties
        .as_ref()
        .and_then(|a| a.0.get("status-code").cloned());
    let _ = tx.close().await;
    let _ = rx.close().await;
    match status {
        Some(SimpleValue::Int(200)) => Ok(()),
        other => Err(format!("put-token refused: status {other:?}")),
    }
}

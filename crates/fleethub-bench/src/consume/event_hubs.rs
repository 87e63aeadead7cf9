//! The Event Hubs-style consumer of `bench consume`: one AMQPS connection (fe2o3-amqp client,
//! SASL ANONYMOUS), a `$cbs` put-token with the hub's service policy, then receivers on a
//! session, as Event Hubs clients do (see docs/event-hub-endpoint.md and the AMQP sections of
//! docs/protocol-notes.md). The backlog read runs on one such connection per partition (as
//! the official Python `EventHubConsumerClient` does), on one connection with a session per
//! partition (as the Node consumer does) or on one shared session ([`Layout`]; see
//! docs/protocol-notes.md, "Event Hubs consumers: connections, sessions, settlement").

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use fe2o3_amqp_types::definitions::SenderSettleMode;
use fe2o3_amqp_types::messaging::annotations::OwnedKey;
use fe2o3_amqp_types::messaging::{
    AmqpValue, ApplicationProperties, Body, FilterSet, Message, MessageId, Properties, Source,
};
use fe2o3_amqp_types::primitives::{SimpleValue, Symbol, Value};
use fleethub_device::ClientTlsConfig;
use tokio::task::JoinSet;

/// Bound on one `$cbs` reply and on attaching a receiver.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// A receiver that gets nothing for this long while events are still due has stalled.
const STALL_TIMEOUT: Duration = Duration::from_mins(1);
const SELECTOR: &str = "apache.org:selector-filter:string";

pub(super) type Msg = Message<Body<Value>>;

/// Where the backlog read's receivers run (`bench consume --layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One AMQPS connection (with its own `$cbs` token and session) per partition: what the
    /// official Python `azure-eventhub` `EventHubConsumerClient` opens by default (its
    /// `SeparateConnection` mode: one connection per partition consumer).
    #[default]
    ConnectionPerPartition,
    /// One connection, a session per partition: what the official Node `@azure/event-hubs`
    /// consumer opens (rhea-promise begins a session for every receiver it creates).
    SessionPerPartition,
    /// Every receiver on one session of one connection.
    Shared,
}

/// How the backlog read's receivers settle (`bench consume --settle`; see
/// docs/protocol-notes.md, "Event Hubs consumers: connections, sessions, settlement").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Settle {
    /// `snd-settle-mode` left to the sender, every delivery accepted with a Disposition: what
    /// the official Python `azure-eventhub` and Node `@azure/event-hubs` consumers do.
    #[default]
    Accept,
    /// `snd-settle-mode` `settled`: the server sends every transfer pre-settled and the client
    /// sends no Disposition: what the .NET `Azure.Messaging.EventHubs` consumer (and with it
    /// the Azure Functions Event Hubs / IoT Hub trigger) asks for (`SettleMode.SettleOnSend`).
    OnSend,
}

/// An open AMQP connection with a session and a valid token for the event hub.
pub(super) struct Consumer {
    conn: ConnectionHandle<()>,
    /// The first one carries the `$cbs` links; receivers are spread over all of them.
    sessions: Vec<SessionHandle<()>>,
    event_hub: String,
    group: String,
    credit: u32,
    settle: Settle,
}

/// Where a consumer's receivers connect and with what.
pub(super) struct Endpoint<'a> {
    pub tls: &'a ClientTlsConfig,
    pub hub_host: &'a str,
    pub amqp_port: u16,
    /// The hub's service connection string (its policy signs the token).
    pub connection_string: &'a str,
    pub consumer_group: &'a str,
    pub credit: u32,
    pub settle: Settle,
}

impl Consumer {
    pub(super) async fn open(ep: &Endpoint<'_>) -> anyhow::Result<Consumer> {
        let tls = ep
            .tls
            .connect(ep.hub_host, ep.amqp_port)
            .await
            .with_context(|| format!("connecting to AMQPS port {}", ep.amqp_port))?;
        let mut conn = Connection::builder()
            .container_id(format!(
                "fleethub-bench-consume-{}",
                uuid::Uuid::new_v4().simple()
            ))
            .hostname(ep.hub_host)
            .sasl_profile(SaslProfile::Anonymous)
            .open_with_stream(tls)
            .await
            .map_err(|e| anyhow!("AMQP open failed: {e}"))?;
        let mut session = Session::begin(&mut conn)
            .await
            .map_err(|e| anyhow!("AMQP begin failed: {e}"))?;
        let event_hub = ep
            .hub_host
            .split('.')
            .next()
            .unwrap_or(ep.hub_host)
            .to_string();
        put_token(&mut session, ep.hub_host, &event_hub, ep.connection_string).await?;
        Ok(Consumer {
            conn,
            sessions: vec![session],
            event_hub,
            group: ep.consumer_group.to_string(),
            credit: ep.credit,
            settle: ep.settle,
        })
    }

    /// Begins `n` sessions in all on the connection.
    pub(super) async fn sessions(&mut self, n: usize) -> anyhow::Result<()> {
        while self.sessions.len() < n {
            let session = Session::begin(&mut self.conn)
                .await
                .map_err(|e| anyhow!("AMQP begin failed: {e}"))?;
            self.sessions.push(session);
        }
        Ok(())
    }

    /// Attaches a receiver on `partition` with the selector `filter`, on session
    /// `partition % sessions`.
    pub(super) async fn receiver(
        &mut self,
        partition: u32,
        filter: &str,
    ) -> anyhow::Result<Receiver> {
        let address = format!(
            "{}/ConsumerGroups/{}/Partitions/{partition}",
            self.event_hub, self.group
        );
        let mut filters = FilterSet::new();
        filters.insert(
            Symbol::from(SELECTOR),
            Value::Described(Box::new(serde_amqp::described::Described {
                descriptor: serde_amqp::descriptor::Descriptor::Name(Symbol::from(SELECTOR)),
                value: Value::String(filter.into()),
            })),
        );
        let n = self.sessions.len();
        let source = Source::builder()
            .address(address.clone())
            .filter(filters)
            .build();
        let attach = Receiver::builder()
            .name(format!(
                "bench-consume-{partition}-{}",
                uuid::Uuid::new_v4().simple()
            ))
            .source(source)
            .target("fleethub-bench")
            .credit_mode(CreditMode::Auto(self.credit))
            // fe2o3-amqp grants new credit as deliveries are settled; for a pre-settled one
            // it sends no Disposition.
            .auto_accept(true);
        let attach = match self.settle {
            Settle::Accept => attach,
            Settle::OnSend => attach.sender_settle_mode(SenderSettleMode::Settled),
        }
        .attach(&mut self.sessions[partition as usize % n]);
        tokio::time::timeout(RPC_TIMEOUT, attach)
            .await
            .map_err(|_| anyhow!("{address}: no attach within {RPC_TIMEOUT:?}"))?
            .map_err(|e| anyhow!("{address}: attach refused: {e}"))
    }

    pub(super) async fn close(mut self) {
        for mut session in self.sessions.drain(..) {
            let _ = tokio::time::timeout(RPC_TIMEOUT, session.end()).await;
        }
        let _ = tokio::time::timeout(RPC_TIMEOUT, self.conn.close()).await;
    }
}

/// Reads every partition of `last` (partition -> last sequence number) from its start up to
/// that sequence number, one receiver per partition at once, partition `n` on consumer
/// `n % consumers.len()`; returns the events read.
pub(super) async fn read_backlog(
    consumers: &mut [Consumer],
    last: &HashMap<u32, i64>,
) -> anyhow::Result<u64> {
    anyhow::ensure!(!consumers.is_empty(), "no consumer connection");
    let mut tasks = JoinSet::new();
    for (&partition, &last_seq) in last {
        if last_seq < 0 {
            continue;
        }
        let n = consumers.len();
        let mut rx = consumers[partition as usize % n]
            .receiver(partition, "amqp.annotation.x-opt-offset > '-1'")
            .await?;
        tasks.spawn(async move {
            let mut read = 0u64;
            loop {
                let d = tokio::time::timeout(STALL_TIMEOUT, rx.recv::<Body<Value>>())
                    .await
                    .map_err(|_| anyhow!("partition {partition}: nothing for {STALL_TIMEOUT:?} after {read} events"))?
                    .map_err(|e| anyhow!("partition {partition}: receive failed: {e}"))?;
                read += 1;
                if sequence_number(d.message()).is_some_and(|s| s >= last_seq) {
                    break;
                }
            }
            let _ = tokio::time::timeout(RPC_TIMEOUT, rx.close()).await;
            anyhow::Ok(read)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r.map_err(|e| anyhow!("receiver task failed: {e}"))??;
    }
    Ok(total)
}

/// `x-opt-sequence-number` of an event.
pub(super) fn sequence_number(m: &Msg) -> Option<i64> {
    match m
        .message_annotations
        .as_ref()?
        .0
        .get(&OwnedKey::Symbol(Symbol::from("x-opt-sequence-number")))?
    {
        Value::Long(n) => Some(*n),
        _ => None,
    }
}

/// The event body's bytes (a data section, as IoT Hub sends telemetry).
pub(super) fn body_bytes(m: &Msg) -> Option<&[u8]> {
    match &m.body {
        Body::Data(batch) => batch.iter().next().map(|d| d.0.as_slice()),
        Body::Value(AmqpValue(Value::Binary(b))) => Some(b.as_slice()),
        _ => None,
    }
}

/// `$cbs` put-token for `sb://{host}/{event_hub}` signed with the connection string's policy.
async fn put_token(
    session: &mut SessionHandle<()>,
    host: &str,
    event_hub: &str,
    connection_string: &str,
) -> anyhow::Result<()> {
    let get = |k: &str| {
        connection_string
            .split(';')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .ok_or_else(|| anyhow!("the service connection string has no {k}"))
    };
    let (policy, key) = (get("SharedAccessKeyName")?, get("SharedAccessKey")?);
    let audience = format!("sb://{host}/{event_hub}");
    let expiry = fleethub_core::time_util::now_unix() + 4 * 3600;
    let token = fleethub_core::sas::build_token(&audience, key, expiry, Some(policy))
        .context("cannot sign the CBS token")?;
    let mut tx = Sender::attach(session, "bench-cbs-tx", "$cbs")
        .await
        .map_err(|e| anyhow!("$cbs attach failed: {e}"))?;
    let mut rx = Receiver::builder()
        .name("bench-cbs-rx")
        .source("$cbs")
        .target("bench-cbs-reply")
        .attach(session)
        .await
        .map_err(|e| anyhow!("$cbs attach failed: {e}"))?;
    let mut app = ApplicationProperties::default();
    for (k, v) in [
        ("operation", "put-token"),
        ("type", "servicebus.windows.net:sastoken"),
        ("name", audience.as_str()),
    ] {
        app.0
            .insert(k.to_string(), SimpleValue::String(v.to_string()));
    }
    let request: Msg = Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            message_id: Some(MessageId::String("put-token-1".into())),
            reply_to: Some("bench-cbs-reply".into()),
            ..Properties::default()
        }),
        application_properties: Some(app),
        body: Body::Value(AmqpValue(Value::String(token))),
        footer: None,
    };
    tx.send(request)
        .await
        .map_err(|e| anyhow!("$cbs send failed: {e}"))?;
    let reply = tokio::time::timeout(RPC_TIMEOUT, rx.recv::<Body<Value>>())
        .await
        .map_err(|_| anyhow!("no $cbs reply within {RPC_TIMEOUT:?}"))?
        .map_err(|e| anyhow!("$cbs receive failed: {e}"))?;
    rx.accept(&reply)
        .await
        .map_err(|e| anyhow!("$cbs accept failed: {e}"))?;
    let status = reply
        .message()
        .application_properties
        .as_ref()
        .and_then(|a| a.0.get("status-code"))
        .cloned();
    let _ = tx.close().await;
    let _ = rx.close().await;
    match status {
        Some(SimpleValue::Int(200 | 202)) => Ok(()),
        other => bail!("$cbs put-token refused: status {other:?}"),
    }
}

//! [`NatsBus`]: the [`ClusterBus`] over a NATS client. Events are published in order by one
//! task; method calls are NATS requests. What NATS and async-nats do on a missing responder, on
//! a disconnect and at the first connection: docs/protocol-notes.md, "NATS: the cluster bus".

use crate::Error;
use crate::subjects::Subjects;
use bytes::Bytes;
use fleethub_services::cluster::{
    ClusterBus, InvokeFuture, PeerError, PeerEvent, PeerMethod, PeerMethodReply,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Events waiting to be published (bounded: beyond it, events are dropped and logged).
const PUBLISH_QUEUE: usize = 4096;
/// How much longer than the method's own timeout a caller waits for the remote node's answer.
const METHOD_SLACK: Duration = Duration::from_secs(5);
/// How long a starting node waits for its first connection to NATS.
const FIRST_CONNECT: Duration = Duration::from_secs(5);
/// The longest pause between reconnect attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// What travels on an event subject: the event and the node that sent it.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub from: String,
    pub event: PeerEvent,
}

pub struct NatsBus {
    client: async_nats::Client,
    node_id: String,
    subjects: Subjects,
    publish: mpsc::Sender<(String, Bytes)>,
}

impl NatsBus {
    pub(crate) async fn connect(
        url: &str,
        node_id: &str,
        subjects: Subjects,
    ) -> Result<NatsBus, Error> {
        let up = Arc::new(AtomicBool::new(false));
        let flag = up.clone();
        let safe_url = url.split('@').next_back().unwrap_or(url).to_string();
        let client = async_nats::ConnectOptions::new()
            .name(format!("fleethub node {node_id}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .request_timeout(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * attempts as u64).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let flag = flag.clone();
                let url = safe_url.clone();
                async move { on_event(&flag, &url, &event) }
            })
            .connect(url)
            .await
            .map_err(|e| Error::Nats(e.to_string()))?;
        // A node starts ready for cross-node calls when NATS is there; it starts anyway (and
        // connects later by itself) when it is not.
        let deadline = tokio::time::Instant::now() + FIRST_CONNECT;
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    url = url.split('@').next_back().unwrap_or(url),
                    "NATS bus cannot be reached yet: identities on other nodes answer like offline devices until it is (retrying)"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (publish, rx) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher(client.clone(), rx));
        Ok(NatsBus {
            client,
            node_id: node_id.to_string(),
            subjects,
            publish,
        })
    }

    pub(crate) fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    fn is_up(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn queue(&self, subject: String, event: PeerEvent) {
        if !self.is_up() {
            tracing::debug!(subject, "NATS is down: event for another node dropped");
            return;
        }
        let envelope = Envelope {
            from: self.node_id.clone(),
            event,
        };
        let Ok(body) = serde_json::to_vec(&envelope) else {
            return;
        };
        if self.publish.try_send((subject, body.into())).is_err() {
            tracing::warn!("event for another node dropped: the NATS publish queue is full");
        }
    }
}

/// Logs connection changes once each (not per message) and keeps `up` current.
fn on_event(up: &AtomicBool, url: &str, event: &async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            up.store(true, Ordering::SeqCst);
            tracing::info!(url, "NATS bus connected");
        }
        async_nats::Event::Disconnected | async_nats::Event::Closed => {
            if up.swap(false, Ordering::SeqCst) {
                tracing::warn!(
                    url,
                    "NATS bus lost: identities on other nodes answer like offline devices until it is back (reconnecting)"
                );
            }
        }
        other => tracing::debug!(url, event = %other, "NATS client event"),
    }
}

async fn publisher(client: async_nats::Client, mut rx: mpsc::Receiver<(String, Bytes)>) {
    while let Some((subject, body)) = rx.recv().await {
        if let Err(e) = client.publish(subject, body).await {
            tracing::debug!(error = %e, "NATS publish failed");
        }
    }
}

impl ClusterBus for NatsBus {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn send(&self, node: &str, event: PeerEvent) {
        self.queue(self.subjects.events(node), event);
    }

    fn broadcast(&self, event: PeerEvent) {
        self.queue(self.subjects.everyone(), event);
    }

    fn invoke<'a>(&'a self, node: &'a str, call: PeerMethod) -> InvokeFuture<'a> {
        Box::pin(async move {
            if !self.is_up() {
                return Err(PeerError("NATS is down".into()));
            }
            let wait = Duration::from_secs(call.timeout_secs) + METHOD_SLACK;
            let body = serde_json::to_vec(&call).map_err(|e| PeerError(e.to_string()))?;
            let answer = tokio::time::timeout(
                wait,
                self.client
                    .request(self.subjects.methods(node), body.into()),
            )
            .await
            .map_err(|_| PeerError(format!("node '{node}' did not answer in time")))?
            .map_err(|e| PeerError(format!("node '{node}': {e}")))?;
            serde_json::from_slice::<PeerMethodReply>(&answer.payload)
                .map_err(|e| PeerError(format!("node '{node}' answered garbage: {e}")))
        })
    }
}

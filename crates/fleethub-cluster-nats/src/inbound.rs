//! What other nodes send to this one: events (for this node and for every node) are applied to
//! the hub in arrival order; each method call runs in its own task and is answered on the
//! request's reply subject.

use crate::Error;
use crate::bus::Envelope;
use crate::subjects::Subjects;
use fleethub_services::Hub;
use fleethub_services::cluster::{PeerMethod, PeerMethodReply};
use futures_util::StreamExt;
use std::sync::Arc;

pub(crate) async fn listen(
    client: async_nats::Client,
    subjects: &Subjects,
    node_id: &str,
    hub: Arc<Hub>,
) -> Result<(), Error> {
    let sub = |e: async_nats::SubscribeError| Error::Nats(e.to_string());
    let mine = client
        .subscribe(subjects.events(node_id))
        .await
        .map_err(sub)?;
    let all = client.subscribe(subjects.everyone()).await.map_err(sub)?;
    let methods = client
        .subscribe(subjects.methods(node_id))
        .await
        .map_err(sub)?;
    let me = node_id.to_string();
    let h = hub.clone();
    tokio::spawn(async move {
        let mut events = futures_util::stream::select(mine, all);
        while let Some(msg) = events.next().await {
            match serde_json::from_slice::<Envelope>(&msg.payload) {
                Ok(env) if env.from == me => {}
                Ok(env) => h.apply_peer_event(env.event),
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "unreadable cluster event ignored");
                }
            }
        }
    });
    tokio::spawn(async move {
        let mut methods = methods;
        while let Some(msg) = methods.next().await {
            let Some(reply_to) = msg.reply.clone() else {
                continue;
            };
            let (hub, client) = (hub.clone(), client.clone());
            tokio::spawn(async move {
                let reply = match serde_json::from_slice::<PeerMethod>(&msg.payload) {
                    Ok(call) => hub.invoke_method_for_peer(call).await,
                    Err(e) => PeerMethodReply::BadRequest {
                        message: format!("unreadable method call: {e}"),
                    },
                };
                if let Ok(body) = serde_json::to_vec(&reply)
                    && let Err(e) = client.publish(reply_to, body.into()).await
                {
                    tracing::debug!(error = %e, "cannot answer a method call from another node");
                }
            });
        }
    });
    Ok(())
}

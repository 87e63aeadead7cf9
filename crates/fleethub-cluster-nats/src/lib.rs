//! The bus between the nodes of a fleethub cluster, over NATS (docs/scale-out.md, "Cross-node
//! delivery"): implements `fleethub-services`' [`ClusterBus`] and feeds what other nodes send
//! into this node's [`Hub`]. Each node listens on its own subjects (`subjects`); revocations,
//! configuration changes, telemetry appends and new C2D feedback go to every node. While NATS
//! cannot be reached, calls to other nodes fail at once (the hub answers like an offline
//! device), the outage is logged once, and the client reconnects by itself; once connected
//! again, the hub re-checks its connections (revocations sent meanwhile were lost).

mod bus;
mod inbound;
mod subjects;

pub use bus::NatsBus;

use fleethub_services::Hub;
use std::sync::Arc;

/// Why the bus could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nats_url '{0}' is invalid: use nats://HOST:PORT")]
    BadUrl(String),
    #[error("cannot use the NATS bus: {0}")]
    Nats(String),
}

/// Connects to NATS at `url` (retrying in the background while it cannot be reached), listens
/// for this node's messages and joins `hub` to the cluster. `hub_name` (the hub's host name)
/// separates the subjects of different hubs sharing one NATS.
pub async fn join(url: &str, hub_name: &str, node_id: &str, hub: Arc<Hub>) -> Result<(), Error> {
    if !url.starts_with("nats://") {
        return Err(Error::BadUrl(url.to_string()));
    }
    let subjects = subjects::Subjects::new(hub_name, node_id);
    let bus = NatsBus::connect(url, node_id, subjects.clone()).await?;
    inbound::listen(bus.client(), &subjects, node_id, hub.clone()).await?;
    // Whatever other nodes sent while NATS was down is lost: the hub makes up for it.
    let connected = bus.connected();
    let h = hub.clone();
    tokio::spawn(async move {
        loop {
            connected.notified().await;
            h.after_bus_outage().await;
        }
    });
    hub.set_cluster_bus(Arc::new(bus));
    Ok(())
}

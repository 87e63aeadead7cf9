//! `[cluster] node_id`: the name of one node among several sharing a store (docs/scale-out.md).
//! A node holds a lease on its id in the store: a heartbeat (its start's random instance and the
//! time) every [`HEARTBEAT`]. A node starting with an id whose heartbeat is recent watches it for
//! [`WATCH`]: if it advances, another running node has that id and this one refuses to start; if
//! it does not, the holder is gone (killed, crashed, stopped) and this node takes the id over.

use anyhow::{Result, bail};
use fleethub_services::cluster::{Lease, lease_key};
use fleethub_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How often a node renews its lease.
pub const HEARTBEAT: Duration = Duration::from_secs(4);
/// How long a starting node watches a recent heartbeat of its id before taking it over.
pub const WATCH: Duration = Duration::from_secs(10);

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks a node id: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn validate_node_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        bail!("node_id '{id}' is invalid: 1 to 64 letters, digits, '.', '_' or '-'");
    }
    Ok(())
}

/// The lease document and its setting are `fleethub-services`' (other nodes read them to tell
/// whether this one is alive).
fn key(node_id: &str) -> String {
    lease_key(node_id)
}

async fn read(store: &dyn Store, node_id: &str) -> Result<Option<Lease>> {
    Ok(store
        .get_setting(&key(node_id))
        .await?
        .and_then(|v| serde_json::from_str(&v).ok()))
}

/// Claims `node_id` for this process (see the module docs) and keeps renewing it in a
/// background task. Refuses when another running node holds the id.
pub async fn claim(store: Arc<dyn Store>, node_id: &str) -> Result<()> {
    claim_with(store, node_id, HEARTBEAT, WATCH).await
}

async fn claim_with(
    store: Arc<dyn Store>,
    node_id: &str,
    heartbeat: Duration,
    watch: Duration,
) -> Result<()> {
    validate_node_id(node_id)?;
    if let Some(held) = read(store.as_ref(), node_id).await?
        && now_unix().saturating_sub(held.heartbeat_unix) < WATCH.as_secs()
    {
        tracing::info!(
            node_id,
            "node_id was in use moments ago; watching its heartbeat before taking it over"
        );
        tokio::time::sleep(watch).await;
        if read(store.as_ref(), node_id).await? != Some(held) {
            bail!(
                "node_id '{node_id}' is in use by another running node (its heartbeat in the store goes on): give every node its own node_id ([cluster] node_id, --node-id, FLEETHUB_NODE_ID)"
            );
        }
    }
    let instance = format!("{:016x}", rand::random::<u64>());
    let lease = |instance: &str, beat: u64| {
        serde_json::to_string(&Lease {
            instance: instance.to_string(),
            beat,
            heartbeat_unix: now_unix(),
        })
    };
    store
        .put_setting(&key(node_id), &lease(&instance, 0)?)
        .await?;
    tracing::info!(node_id, "node id claimed");
    let node_id = node_id.to_string();
    tokio::spawn(async move {
        let mut logged = false;
        for beat in 1.. {
            tokio::time::sleep(heartbeat).await;
            let Ok(doc) = lease(&instance, beat) else {
                continue;
            };
            match store.put_setting(&key(&node_id), &doc).await {
                Ok(()) => logged = false,
                // Logged once per outage, not per beat.
                Err(e) if !logged => {
                    tracing::warn!(error = %e, node_id, "cannot renew the node id lease");
                    logged = true;
                }
                Err(_) => {}
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEAT: Duration = Duration::from_millis(50);
    const WATCH_SHORT: Duration = Duration::from_millis(300);

    #[test]
    fn node_ids() {
        validate_node_id("node-1.eu_west").unwrap();
        for bad in ["", "a b", "node/1", &"x".repeat(65)] {
            assert!(validate_node_id(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_holder_is_refused_and_a_silent_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(fleethub_store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap());
        // A fresh id is claimed at once.
        claim_with(store.clone(), "n1", BEAT, WATCH_SHORT)
            .await
            .unwrap();
        // A holder that stopped beating (its last heartbeat is recent, then nothing): taken over
        // after the watch.
        let stale = serde_json::to_string(&Lease {
            instance: "gone".into(),
            beat: 7,
            heartbeat_unix: now_unix(),
        })
        .unwrap();
        store.put_setting(&key("n2"), &stale).await.unwrap();
        claim_with(store.clone(), "n2", BEAT, WATCH_SHORT)
            .await
            .unwrap();
        let held = read(store.as_ref(), "n2").await.unwrap().unwrap();
        assert_ne!(held.instance, "gone");
        // "n1" is held by the first claim, which keeps beating: refused.
        let e = claim_with(store.clone(), "n1", BEAT, WATCH_SHORT)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("in use by another running node"), "{e}");
    }
}

//! The `$edgeHub` module twin: reads the desired configuration (routes, TTL), follows
//! desired patches, and reports `schemaVersion`, `lastDesiredVersion`,
//! `lastDesiredStatus {code, description}` and `clients`.

use std::sync::Arc;
use std::time::Duration;

use fleethub_device::DeviceClient;
use serde_json::{Map, Value, json};

use crate::config::EdgeHubConfig;
use crate::hub::{DESIRED_CACHE_KEY, Hub, lock};
use crate::upstream::{Backoff, pause};

/// The edge hub's own module identity.
pub const EDGE_HUB_MODULE: &str = "$edgeHub";
/// Full twin re-read besides patches (Azure's `ConfigRefreshFrequencySecs` default).
const CONFIG_REFRESH: Duration = Duration::from_hours(1);
/// Schema version this edge hub reports.
pub const REPORTED_SCHEMA_VERSION: &str = "1.1";

/// The reported-properties patch for a desired document: 200 when it applied, 400 with the
/// reason when it did not (the previous routes stay).
pub(crate) fn desired_status(version: Option<u64>, result: &Result<(), String>) -> Value {
    let (code, description) = match result {
        Ok(()) => (200, String::new()),
        Err(e) => (400, e.clone()),
    };
    json!({
        "schemaVersion": REPORTED_SCHEMA_VERSION,
        "lastDesiredVersion": version,
        "lastDesiredStatus": {"code": code, "description": description},
    })
}

/// `clients` of the reported properties.
fn clients_patch(hub: &Hub) -> Value {
    let clients = lock(&hub.clients);
    let mut map = Map::new();
    for (id, rec) in clients.iter() {
        map.insert(
            id.clone(),
            json!({
                "status": if rec.connected { "Connected" } else { "Disconnected" },
                "lastConnectedTimeUtc": rec.last_connected,
                "lastDisconnectedTimeUtc": rec.last_disconnected,
            }),
        );
    }
    json!({ "clients": map })
}

/// Applies a desired document; returns what to report.
async fn apply_desired(hub: &Hub, desired: &Value) -> Value {
    let version = desired.get("$version").and_then(Value::as_u64);
    let result = match EdgeHubConfig::from_desired(desired) {
        Ok(config) => {
            tracing::info!(
                "edge hub: applied desired properties version {version:?}: routes {:?}",
                config.route_names()
            );
            hub.set_config(config);
            if let Err(e) = hub
                .queue
                .set_kv(DESIRED_CACHE_KEY, &desired.to_string())
                .await
            {
                tracing::warn!("edge hub: cannot cache the configuration: {e}");
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(
                "edge hub: rejected desired properties version {version:?}: {e}; keeping the previous routes"
            );
            hub.set_error(format!("desired properties rejected: {e}"));
            Err(e.0)
        }
    };
    desired_status(version, &result)
}

async fn report(client: &DeviceClient, patch: Value) -> bool {
    match client.patch_reported(patch).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("edge hub: cannot update the $edgeHub reported properties: {e}");
            false
        }
    }
}

/// Reads the full twin and applies its desired part.
async fn refresh(hub: &Hub, client: &DeviceClient) -> Result<(), String> {
    let twin = client.get_twin().await.map_err(|e| e.to_string())?;
    let desired = twin.get("desired").cloned().unwrap_or(Value::Null);
    let patch = apply_desired(hub, &desired).await;
    report(client, patch).await;
    Ok(())
}

/// Keeps the `$edgeHub` twin connection: (re)connects with back-off, reads the twin, follows
/// desired patches (each one triggers a full read, so no patch is merged wrongly), re-reads
/// it hourly, and reports client presence changes.
pub(crate) async fn run(hub: Arc<Hub>) {
    let mut backoff = Backoff::new();
    'connect: while !hub.is_shutting_down() {
        let client = match hub.upstream.client(EDGE_HUB_MODULE).await {
            Ok(c) => c,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    "edge hub: cannot connect upstream as $edgeHub ({e}); retrying in {delay:?}"
                );
                hub.set_error(e.to_string());
                if !pause(&hub, delay).await {
                    return;
                }
                continue;
            }
        };
        let setup = async {
            let rx = client.desired_updates().await.map_err(|e| e.to_string())?;
            refresh(&hub, &client).await?;
            Ok::<_, String>(rx)
        };
        let mut desired_rx = match setup.await {
            Ok(rx) => rx,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    "edge hub: cannot read the $edgeHub twin ({e}); retrying in {delay:?}"
                );
                hub.set_error(e);
                hub.upstream.invalidate(EDGE_HUB_MODULE).await;
                if !pause(&hub, delay).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        report(&client, clients_patch(&hub)).await;
        let mut refresh_timer =
            tokio::time::interval_at(tokio::time::Instant::now() + CONFIG_REFRESH, CONFIG_REFRESH);
        loop {
            tokio::select! {
                _ = refresh_timer.tick() => {
                    if let Err(e) = refresh(&hub, &client).await {
                        tracing::warn!("edge hub: periodic $edgeHub twin read failed: {e}");
                    }
                }
                patch = desired_rx.recv() => {
                    if patch.is_none() {
                        continue 'connect;
                    }
                    // Coalesce a burst of patches into one read.
                    while desired_rx.try_recv().is_ok() {}
                    if let Err(e) = refresh(&hub, &client).await {
                        tracing::warn!("edge hub: cannot re-read the $edgeHub twin: {e}");
                        if !pause(&hub, Duration::from_secs(1)).await {
                            return;
                        }
                    }
                }
                () = hub.clients_changed.notified() => {
                    report(&client, clients_patch(&hub)).await;
                }
                () = hub.stopped() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_status_patch() {
        assert_eq!(
            desired_status(Some(4), &Ok(())),
            json!({"schemaVersion": "1.1", "lastDesiredVersion": 4,
                   "lastDesiredStatus": {"code": 200, "description": ""}})
        );
        let v = desired_status(Some(5), &Err("route 'r': bad".into()));
        assert_eq!(v["lastDesiredStatus"]["code"], 400);
        assert_eq!(v["lastDesiredStatus"]["description"], "route 'r': bad");
    }
}

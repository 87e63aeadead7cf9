//! The slice of the IoT hub service REST API the telemetry benchmark needs: create and delete
//! device identities in bulk (`POST /devices`, at most 100 `ExportImportDevice` items per
//! request), through the shared service client ([`fleethub_service_client`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleethub_device::ClientTlsConfig;
use fleethub_service_client::hub::{BULK_MAX_ITEMS, bulk_create_items, bulk_delete_items};
use fleethub_service_client::{Credentials, HttpsTransport, ServiceClient, TlsTarget};
use serde_json::Value;
use tokio::task::JoinSet;

/// api-version of the hub service API (what the Node service SDK sends).
pub const HUB_API_VERSION: &str = fleethub_service_client::HUB_API_VERSION;
/// Items per bulk request (the service's limit).
pub const BULK_ITEMS: usize = BULK_MAX_ITEMS;
/// Bulk requests in flight at once (the store groups their commits).
const LANES: usize = 4;
const REQUEST_TIMEOUT: Duration = Duration::from_mins(1);

/// Outcome of a bulk operation over many devices.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BulkOutcome {
    pub ok: usize,
    pub failed: usize,
    pub first_error: Option<String>,
}

/// Hub service API client for device identities.
pub struct HubService {
    /// Where to connect (the TLS config's address overrides apply).
    target: TlsTarget,
    credentials: Credentials,
}

impl HubService {
    /// `hub_host:https_port` is dialled; the token is for the connection string's `HostName`.
    pub fn new(
        tls: ClientTlsConfig,
        hub_host: &str,
        https_port: u16,
        connection_string: &str,
    ) -> anyhow::Result<Self> {
        let credentials = Credentials::from_connection_string(connection_string)
            .context("invalid hub service connection string")?;
        Ok(HubService {
            target: TlsTarget::with_tls(tls, hub_host, &format!("{hub_host}:{https_port}"))?,
            credentials,
        })
    }

    /// Creates `ids` (`importMode: create`), all with the same symmetric keys.
    pub async fn create_devices(
        self: &Arc<Self>,
        ids: &[String],
        primary_key: &str,
        secondary_key: &str,
    ) -> BulkOutcome {
        self.bulk(bulk_create_items(ids, primary_key, secondary_key))
            .await
    }

    /// Deletes `ids` (`importMode: delete`).
    pub async fn delete_devices(self: &Arc<Self>, ids: &[String]) -> BulkOutcome {
        self.bulk(bulk_delete_items(ids)).await
    }

    /// Sends `items` in requests of [`BULK_ITEMS`], [`LANES`] requests at a time; each lane
    /// keeps its HTTPS connection.
    async fn bulk(self: &Arc<Self>, items: Vec<Value>) -> BulkOutcome {
        let chunks: Vec<Vec<Value>> = items.chunks(BULK_ITEMS).map(<[Value]>::to_vec).collect();
        let queue = Arc::new(std::sync::Mutex::new(chunks.into_iter()));
        let mut lanes = JoinSet::new();
        for _ in 0..LANES {
            let (me, queue) = (self.clone(), queue.clone());
            lanes.spawn(async move {
                let client = ServiceClient::hub(
                    HttpsTransport::new(me.target.clone()).with_timeout(REQUEST_TIMEOUT),
                    me.credentials.clone(),
                );
                let mut out = BulkOutcome::default();
                loop {
                    let Some(chunk) = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .next()
                    else {
                        break;
                    };
                    let n = chunk.len();
                    match client.bulk_devices(&chunk).await {
                        Ok(result) => {
                            let failed = result.errors.len().min(n);
                            out.ok += n - failed;
                            out.failed += failed;
                            if out.first_error.is_none() {
                                out.first_error = result.errors.first().map(|e| {
                                    format!("{}: {} {}", e.device_id, e.error_code, e.error_status)
                                });
                            }
                        }
                        Err(e) => {
                            out.failed += n;
                            out.first_error.get_or_insert(format!("{e:#}"));
                        }
                    }
                }
                out
            });
        }
        let mut total = BulkOutcome::default();
        while let Some(r) = lanes.join_next().await {
            match r {
                Ok(o) => {
                    total.ok += o.ok;
                    total.failed += o.failed;
                    if total.first_error.is_none() {
                        total.first_error = o.first_error;
                    }
                }
                Err(e) => {
                    total
                        .first_error
                        .get_or_insert(format!("bulk lane failed: {e}"));
                }
            }
        }
        total
    }
}

//! The slice of the IoT hub service REST API the telemetry benchmark needs: create and delete
//! device identities in bulk (`POST /devices`, at most 100 `ExportImportDevice` items per
//! request), authenticated with a service SAS token from the hub service connection string.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleethub_core::connection_string::ConnectionString;
use fleethub_device::{ClientTlsConfig, HttpsClient, HttpsRequest};
use http::Method;
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// api-version of the hub service API (what the Node service SDK sends).
pub const HUB_API_VERSION: &str = "2021-04-12";
/// Items per bulk request (the service's limit).
pub const BULK_ITEMS: usize = 100;
/// Bulk requests in flight at once (the store groups their commits).
const LANES: usize = 4;
const TOKEN_TTL_SECS: u64 = 3600;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Outcome of a bulk operation over many devices.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BulkOutcome {
    pub ok: usize,
    pub failed: usize,
    pub first_error: Option<String>,
}

/// Hub service API client for device identities.
pub struct HubService {
    tls: ClientTlsConfig,
    /// `host:port` dialled (the TLS config's address overrides apply).
    authority: String,
    host_name: String,
    key_name: String,
    key: String,
}

impl HubService {
    /// `hub_host:https_port` is dialled; the token is for the connection string's `HostName`.
    pub fn new(
        tls: ClientTlsConfig,
        hub_host: &str,
        https_port: u16,
        connection_string: &str,
    ) -> anyhow::Result<Self> {
        let cs = ConnectionString::parse(connection_string)
            .context("invalid hub service connection string")?;
        let key_name = cs
            .shared_access_key_name
            .context("the hub service connection string has no SharedAccessKeyName")?;
        let key = cs
            .shared_access_key
            .context("the hub service connection string has no SharedAccessKey")?;
        Ok(HubService {
            tls,
            authority: format!("{hub_host}:{https_port}"),
            host_name: cs.host_name,
            key_name,
            key,
        })
    }

    fn token(&self) -> anyhow::Result<String> {
        let expiry = fleethub_core::time_util::now_unix() + TOKEN_TTL_SECS;
        fleethub_core::sas::build_token(&self.host_name, &self.key, expiry, Some(&self.key_name))
            .context("cannot sign a service SAS token with the connection string's key")
    }

    /// Creates `ids` (`importMode: create`), all with the same symmetric keys.
    pub async fn create_devices(
        self: &Arc<Self>,
        ids: &[String],
        primary_key: &str,
        secondary_key: &str,
    ) -> BulkOutcome {
        let items = ids
            .iter()
            .map(|id| {
                json!({
                    "id": id,
                    "importMode": "create",
                    "status": "enabled",
                    "authentication": {
                        "type": "sas",
                        "symmetricKey": {"primaryKey": primary_key, "secondaryKey": secondary_key}
                    }
                })
            })
            .collect();
        self.bulk(items).await
    }

    /// Deletes `ids` (`importMode: delete`).
    pub async fn delete_devices(self: &Arc<Self>, ids: &[String]) -> BulkOutcome {
        let items = ids
            .iter()
            .map(|id| json!({"id": id, "importMode": "delete"}))
            .collect();
        self.bulk(items).await
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
                let http = HttpsClient::new(me.tls.clone()).with_timeout(REQUEST_TIMEOUT);
                let mut out = BulkOutcome::default();
                loop {
                    let Some(chunk) = queue.lock().unwrap_or_else(|e| e.into_inner()).next() else {
                        break;
                    };
                    let n = chunk.len();
                    match me.post(&http, &chunk).await {
                        Ok(failed) => {
                            out.ok += n - failed.0.min(n);
                            out.failed += failed.0.min(n);
                            if out.first_error.is_none() {
                                out.first_error = failed.1;
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

    /// One `POST /devices`; returns how many items failed and the first item error.
    async fn post(
        &self,
        http: &HttpsClient,
        items: &[Value],
    ) -> anyhow::Result<(usize, Option<String>)> {
        let req = HttpsRequest::from_parts(
            Method::POST,
            self.authority.clone(),
            format!("/devices?api-version={HUB_API_VERSION}"),
        )
        .header("Authorization", self.token()?)
        .header("Accept", "application/json")
        .json(items)?;
        let resp = http.send(req).await.context("bulk registry request")?;
        let body: Value = resp.json().unwrap_or(Value::Null);
        if resp.is_success() {
            return Ok((0, None));
        }
        match body.get("errors").and_then(Value::as_array) {
            Some(errors) if resp.status == 400 => Ok((
                errors.len(),
                errors.first().map(|e| {
                    format!(
                        "{}: {} {}",
                        e["deviceId"].as_str().unwrap_or("?"),
                        e["errorCode"].as_str().unwrap_or("?"),
                        e["errorStatus"].as_str().unwrap_or("")
                    )
                }),
            )),
            _ => anyhow::bail!(
                "the hub service API answered {}: {}",
                resp.status,
                resp.text().chars().take(300).collect::<String>()
            ),
        }
    }
}

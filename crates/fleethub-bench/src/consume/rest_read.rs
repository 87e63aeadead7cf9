//! The baseline of `bench consume`: the server's own REST read of the same log,
//! `GET /messages/events` in pages of [`PAGE`] (all partitions interleaved, JSON), from the
//! start, with a consumer group of the run's own that has no checkpoint.

use std::time::Duration;

use anyhow::{Context, anyhow};
use fleethub_service_client::{Credentials, HttpsTransport, ServiceClient, TlsTarget};
use tokio::time::Instant;

/// Events per page (the API's largest).
pub(super) const PAGE: usize = 1000;
const REQUEST_TIMEOUT: Duration = Duration::from_mins(1);

/// A hub service client for `hub_host:https_port`.
pub(super) fn client(
    tls: &fleethub_device::ClientTlsConfig,
    hub_host: &str,
    https_port: u16,
    connection_string: &str,
) -> anyhow::Result<ServiceClient<HttpsTransport>> {
    let credentials = Credentials::from_connection_string(connection_string)
        .context("invalid hub service connection string")?;
    let target = TlsTarget::with_tls(tls.clone(), hub_host, &format!("{hub_host}:{https_port}"))?;
    Ok(ServiceClient::hub(
        HttpsTransport::new(target).with_timeout(REQUEST_TIMEOUT),
        credentials,
    ))
}

/// Reads pages until one is empty or `max` events were read (bounded by `deadline`);
/// returns (events, seconds).
pub(super) async fn read_all(
    client: &ServiceClient<HttpsTransport>,
    group: &str,
    max: u64,
    deadline: Instant,
) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let mut read = 0u64;
    let mut from: Option<u64> = None;
    while read < max {
        anyhow::ensure!(
            Instant::now() < deadline,
            "REST read not done by the deadline after {read} events"
        );
        let mut query = vec![
            ("consumerGroup", group.to_string()),
            ("limit", PAGE.to_string()),
        ];
        if let Some(f) = from {
            query.push(("from", f.to_string()));
        }
        let page = client
            .read_events(&query)
            .await
            .map_err(|e| anyhow!("GET /messages/events failed: {e}"))?;
        let n = page["messages"].as_array().map_or(0, Vec::len) as u64;
        if n == 0 {
            break;
        }
        read += n;
        from = Some(
            page["next"]
                .as_u64()
                .ok_or_else(|| anyhow!("GET /messages/events: no `next` in the page"))?,
        );
    }
    Ok((read, started.elapsed().as_secs_f64()))
}

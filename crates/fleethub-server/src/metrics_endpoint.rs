//! `GET /metrics` on the HTTPS listener: the Prometheus text of the services' counters and the
//! connection gauges.

use axum::http::HeaderName;
use fleethub_services::{AuthFailureLog, Hub, Metrics};

/// `GET /metrics`: the Prometheus text. In a cluster the hub's connection count is every live
/// node's (the shared presence), beside this node's own.
pub async fn render(
    hub: &Hub,
    metrics: &Metrics,
    auth: &AuthFailureLog,
) -> ([(HeaderName, &'static str); 1], String) {
    let everywhere = hub.connected_count_everywhere().await as u64;
    let body = metrics.render(
        auth,
        &[
            (
                "fleethub_connected_devices",
                "device and module connections open on the hub (every node of a cluster)",
                everywhere,
            ),
            (
                "fleethub_node_connected_devices",
                "device and module connections open on this node",
                hub.connected_count() as u64,
            ),
        ],
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}

//! Hub service API, statistics (docs/protocol-notes.md, "Service REST API and api-versions"): `GET /statistics/devices` and
//! `GET /statistics/service`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use fleethub_services::Right;
use serde::Serialize;

use crate::HttpState;
use crate::auth::hub_service;
use crate::body::{Peer, ok_json};
use crate::error::HubResult;

/// `ServiceStatistics`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceStatistics {
    connected_device_count: u64,
}

/// `GET /statistics/devices` -> 200 `{totalDeviceCount, enabledDeviceCount,
/// disabledDeviceCount}`.
pub(crate) async fn devices(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryRead], &peer)?;
    Ok(ok_json(&state.hub.statistics().await?))
}

/// `GET /statistics/service` -> 200 `{connectedDeviceCount}`.
pub(crate) async fn service(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(
        &state,
        &headers,
        &[Right::RegistryRead, Right::ServiceConnect],
        &peer,
    )?;
    Ok(ok_json(&ServiceStatistics {
        connected_device_count: state.hub.connected_count_everywhere().await as u64,
    }))
}

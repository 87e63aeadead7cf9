//! Hub service API, consumer groups of the built-in endpoint (fleethub's routes: Azure
//! manages them through its resource provider): `GET /messages/events/consumerGroups`,
//! `GET/PUT/DELETE /messages/events/consumerGroups/{name}`. Reading takes `ServiceConnect` or
//! `RegistryRead`; creating and deleting take `RegistryWrite` (the hub owner's right: a
//! reader's `service` policy cannot add groups).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fleethub_api::ConsumerGroupInfo;
use fleethub_services::Right;
use fleethub_services::hub::ConsumerGroup;

use crate::HttpState;
use crate::auth::hub_service;
use crate::body::{Peer, ok_json};
use crate::error::{HubResult, empty};

const READ: &[Right] = &[Right::ServiceConnect, Right::RegistryRead];
const WRITE: &[Right] = &[Right::RegistryWrite];

fn info(g: &ConsumerGroup) -> ConsumerGroupInfo {
    ConsumerGroupInfo {
        name: g.name.clone(),
        created_time_utc: fleethub_api::time::format_utc_ms(g.created_at_ms),
    }
}

/// `GET /messages/events/consumerGroups` -> 200 `[ConsumerGroupInfo]`, `$Default` first.
pub(crate) async fn list(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, READ, &peer)?;
    let groups = state.hub.list_consumer_groups().await?;
    Ok(ok_json(&groups.iter().map(info).collect::<Vec<_>>()))
}

/// `GET /messages/events/consumerGroups/{name}` -> 200 `ConsumerGroupInfo` (404
/// `ConsumerGroupNotFound`).
pub(crate) async fn get(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, READ, &peer)?;
    Ok(ok_json(&info(&state.hub.consumer_group(&name).await?)))
}

/// `PUT /messages/events/consumerGroups/{name}` (no body needed) -> 200 `ConsumerGroupInfo`;
/// 409 if it exists, 400 for a name outside Azure's rules, 403 `IotHubQuotaExceeded` at
/// the limit.
pub(crate) async fn put(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, WRITE, &peer)?;
    Ok(ok_json(&info(
        &state.hub.create_consumer_group(&name).await?,
    )))
}

/// `DELETE /messages/events/consumerGroups/{name}` -> 204 (the group's checkpoint goes with
/// it; `$Default` cannot be deleted: 400).
pub(crate) async fn delete(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, WRITE, &peer)?;
    state.hub.delete_consumer_group(&name).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

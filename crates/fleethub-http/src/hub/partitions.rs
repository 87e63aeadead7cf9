//! Hub service API, the partitions of the built-in endpoint (what Event Hubs clients read from
//! `$management`): `GET /messages/events/partitions` and
//! `GET /messages/events/partitions/{id}`, with `ServiceConnect`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use fleethub_api::{EventHubInfo, PartitionInfo};
use fleethub_services::Right;
use fleethub_services::hub::PartitionProperties;

use crate::HttpState;
use crate::auth::hub_service;
use crate::body::{Peer, ok_json};
use crate::error::{ApiError, HubResult};

const READ: &[Right] = &[Right::ServiceConnect];

fn info(p: PartitionProperties) -> PartitionInfo {
    PartitionInfo {
        last_enqueued_time_utc: (p.last_enqueued_sequence_number >= 0)
            .then(|| fleethub_api::time::format_utc_ms(p.last_enqueued_time_utc_ms)),
        partition_id: p.partition_id,
        begin_sequence_number: p.begin_sequence_number,
        last_enqueued_sequence_number: p.last_enqueued_sequence_number,
        last_enqueued_offset: p.last_enqueued_offset,
        is_empty: p.is_empty,
    }
}

/// `GET /messages/events/partitions` -> 200 `EventHubInfo`: the Event Hub-compatible name,
/// creation time, partition ids and every partition's properties.
pub(crate) async fn list(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, READ, &peer)?;
    state.hub.start_event_hub().await?;
    let props = state.hub.event_hub_properties();
    let mut partitions = Vec::with_capacity(props.partition_ids.len());
    for p in 0..state.hub.partition_count() {
        partitions.push(info(state.hub.partition_properties(p).await?));
    }
    Ok(ok_json(&EventHubInfo {
        name: props.name,
        created_time_utc: fleethub_api::time::format_utc_ms(props.created_at_ms),
        partition_count: state.hub.partition_count(),
        partition_ids: props.partition_ids,
        partitions,
    }))
}

/// `GET /messages/events/partitions/{id}` -> 200 `PartitionInfo` (400 `ArgumentOutOfRange`
/// for a partition the hub does not have).
pub(crate) async fn get(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, READ, &peer)?;
    let partition: u32 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("partition id '{id}' is not a partition number"))
    })?;
    Ok(ok_json(&info(
        state.hub.partition_properties(partition).await?,
    )))
}

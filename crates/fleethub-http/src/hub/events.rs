//! Hub service API, the built-in telemetry endpoint over REST (fleethub's own read path; Azure
//! offers an Event Hubs-compatible AMQP endpoint instead): `GET /messages/events` reads a page
//! after a sequence number or the consumer group's checkpoint,
//! `PUT /messages/events/consumerGroups/{group}/checkpoint` records progress and
//! `GET /messages/events/live` tails new messages as Server-Sent Events.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use fleethub_services::Right;
use fleethub_services::TelemetryMessage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

use crate::HttpState;
use crate::auth::hub_service;
use crate::body::{Peer, ok_json, query_param, query_u64, require_json};
use crate::error::{HubResult, empty};

/// Reading telemetry (pages, checkpoints, the live tail) takes `ServiceConnect`, Azure's right
/// for device data and the events endpoint: `RegistryRead` only reads the identity registry.
const READ: &[Right] = &[Right::ServiceConnect];
/// The consumer group when the request names none.
pub(crate) const DEFAULT_CONSUMER_GROUP: &str = "$Default";
/// Messages per page when `limit` is absent (at most `fleethub_services::hub` allows, 1000).
pub(crate) const DEFAULT_PAGE: usize = 100;
/// Interval of the keep-alive comment on the live stream.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A telemetry message as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventView<'a> {
    sequence_number: u64,
    device_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    module_id: Option<&'a str>,
    enqueued_time_utc: &'a str,
    system_properties: &'a BTreeMap<String, String>,
    properties: &'a BTreeMap<String, String>,
    /// UTF-8 text when the body is valid UTF-8, else base64 (`bodyEncoding: "base64"`).
    body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_encoding: Option<&'static str>,
}

impl<'a> From<&'a TelemetryMessage> for EventView<'a> {
    fn from(m: &'a TelemetryMessage) -> Self {
        let (body, body_encoding) = match std::str::from_utf8(&m.body) {
            Ok(text) => (text.to_string(), None),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&m.body),
                Some("base64"),
            ),
        };
        EventView {
            sequence_number: m.sequence_number,
            device_id: &m.device_id,
            module_id: m.module_id.as_deref(),
            enqueued_time_utc: &m.enqueued_time_utc,
            system_properties: &m.system_properties,
            properties: &m.properties,
            body,
            body_encoding,
        }
    }
}

#[derive(Debug, Serialize)]
struct EventsPage<'a> {
    messages: Vec<EventView<'a>>,
    next: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Checkpoint {
    sequence_number: u64,
}

/// `GET /messages/events?consumerGroup=$Default&from=<seq>&limit=<n>` -> 200
/// `{"messages": [...], "next": seq}`: messages with sequence numbers after `from` (absent:
/// after the group's checkpoint), oldest first; pass `next` as `from` to continue.
pub(crate) async fn read(
    State(state): State<HttpState>,
    RawQuery(raw): RawQuery,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, READ, &peer)?;
    let raw = raw.as_deref();
    let group = query_param(raw, "consumerGroup")
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| DEFAULT_CONSUMER_GROUP.to_string());
    let from = query_u64(raw, "from")?;
    let limit = match query_u64(raw, "limit")? {
        None | Some(0) => DEFAULT_PAGE,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let page = state.hub.read_events(&group, from, limit).await?;
    Ok(ok_json(&EventsPage {
        messages: page.messages.iter().map(EventView::from).collect(),
        next: page.next,
    }))
}

/// `PUT /messages/events/consumerGroups/{group}/checkpoint` body `{"sequenceNumber": n}` ->
/// 204: the group has processed everything up to `n`.
pub(crate) async fn checkpoint(
    State(state): State<HttpState>,
    Path(group): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    hub_service(&state, &headers, READ, &peer)?;
    let req: Checkpoint = require_json(&body, "checkpoint")?;
    state.hub.checkpoint(&group, req.sequence_number).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /messages/events/live[?deviceId=..]` -> `text/event-stream`: one `data: {message}`
/// event per message stored after the request (of one device when `deviceId` is given), an
/// `event: lagged` with the number of missed messages when the reader fell behind (it goes
/// on; the missed ones are in `GET /messages/events`), a keep-alive comment every 15 s. Ends
/// when the client disconnects.
pub(crate) async fn live(
    State(state): State<HttpState>,
    RawQuery(raw): RawQuery,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, READ, &peer)?;
    let device = query_param(raw.as_deref(), "deviceId").filter(|d| !d.is_empty());
    let rx = state.hub.subscribe_telemetry();
    let stream = futures_util::stream::unfold((rx, device), |(mut rx, device)| async move {
        loop {
            let event = match rx.recv().await {
                Ok(m) if device.as_deref().is_some_and(|d| d != m.device_id) => continue,
                Ok(m) => message_event(&m),
                Err(RecvError::Lagged(n)) => {
                    tracing::info!(missed = n, "live telemetry reader lagged");
                    Event::default().event("lagged").data(n.to_string())
                }
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok::<_, Infallible>(event), (rx, device)));
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

fn message_event(m: &Arc<TelemetryMessage>) -> Event {
    let view = EventView::from(m.as_ref());
    match serde_json::to_string(&view) {
        Ok(json) => Event::default().data(json),
        Err(e) => {
            // Unreachable for these types; keep the stream going.
            tracing::warn!("cannot serialize a telemetry message: {e}");
            Event::default()
                .event("error")
                .data("cannot serialize the message")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let mut m = TelemetryMessage {
            sequence_number: 3,
            partition: 0,
            partition_sequence_number: 0,
            device_id: "d".into(),
            module_id: None,
            enqueued_time_utc: "t".into(),
            system_properties: BTreeMap::new(),
            properties: BTreeMap::new(),
            body: b"{\"t\":1}".to_vec(),
            sender: None,
        };
        let v = serde_json::to_value(EventView::from(&m)).unwrap();
        assert_eq!(v["body"], "{\"t\":1}");
        assert!(v.get("bodyEncoding").is_none() && v.get("moduleId").is_none());
        m.body = vec![0xff, 0];
        let v = serde_json::to_value(EventView::from(&m)).unwrap();
        assert_eq!(v["body"], "/wA=");
        assert_eq!(v["bodyEncoding"], "base64");
    }
}

//! Live telemetry: `GET /ui/telemetry` (a page that tails the built-in endpoint, filterable by
//! device, pausable) and `GET /ui/telemetry/stream[?device=..]` (the server-sent events it reads:
//! one JSON object per message stored after the page opened). Reading the built-in endpoint
//! needs `ServiceConnect`, as for the Event Hubs clients. The page's script inserts text only
//! (`textContent`), never HTML.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use fleethub_services::{Right, TelemetryMessage};
use maud::{Markup, PreEscaped, html};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

use crate::UiState;
use crate::error::UiResult;
use crate::page;
use crate::viewer::Viewer;

const CONNECT: &str = "ServiceConnect (a hub policy such as service or iothubowner)";
/// The longest body shown per message, bytes.
const BODY_SHOWN: usize = 1024;

#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    pub device: Option<String>,
}

/// `GET /ui/telemetry`.
pub async fn show(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> UiResult<Markup> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::ServiceConnect, CONNECT)?;
    let device = f.device.unwrap_or_default();
    let stream = if device.is_empty() {
        "/ui/telemetry/stream".to_string()
    } else {
        format!("/ui/telemetry/stream?device={}", page::encode(&device))
    };
    let body = html! {
        form method="get" action="/ui/telemetry" role="search" {
            label for="device" { "Only this device (empty: all devices)" }
            input #device type="text" name="device" value=(device);
            p { button type="submit" { "Filter" } }
        }
        p { label { input #pause type="checkbox"; " Pause" } }
        p.hint #status role="status" { "Waiting for messages sent from now on..." }
        table {
            thead { tr { th { "Enqueued" } th { "Device" } th { "Properties" } th { "Body" } } }
            tbody #messages data-stream=(stream) {}
        }
        script { (PreEscaped(SCRIPT)) }
    };
    Ok(page::frame(&viewer, "Live telemetry", &body))
}

/// Appends each event as a row (text only), newest first, at most 200 rows; paused rows are
/// counted, not shown.
const SCRIPT: &str = r"
(function () {
  var body = document.getElementById('messages');
  var status = document.getElementById('status');
  var pause = document.getElementById('pause');
  var skipped = 0, shown = 0;
  var es = new EventSource(body.dataset.stream);
  es.onmessage = function (e) {
    if (pause.checked) { skipped++; status.textContent = skipped + ' message(s) not shown while paused'; return; }
    var m = JSON.parse(e.data), tr = document.createElement('tr');
    [m.enqueuedTime, m.moduleId ? m.deviceId + '/' + m.moduleId : m.deviceId,
     JSON.stringify(m.properties), m.body].forEach(function (t) {
      var td = document.createElement('td'); td.textContent = t; tr.appendChild(td);
    });
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 200) body.deleteRow(-1);
    shown++; status.textContent = shown + ' message(s) received';
  };
  es.addEventListener('lagged', function (e) { status.textContent = 'fell behind: ' + e.data + ' message(s) not shown (they are stored)'; });
  es.onerror = function () { status.textContent = 'disconnected; retrying...'; };
})();
";

/// One message as the page shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    enqueued_time: &'a str,
    device_id: &'a str,
    module_id: Option<&'a str>,
    properties: &'a BTreeMap<String, String>,
    body: String,
}

fn row_event(m: &TelemetryMessage) -> Event {
    let shown = &m.body[..m.body.len().min(BODY_SHOWN)];
    let mut body = String::from_utf8_lossy(shown).into_owned();
    if m.body.len() > BODY_SHOWN {
        let _ = write!(body, " ... ({} bytes)", m.body.len());
    }
    let row = Row {
        enqueued_time: &m.enqueued_time_utc,
        device_id: &m.device_id,
        module_id: m.module_id.as_deref(),
        properties: &m.properties,
        body,
    };
    Event::default().data(serde_json::to_string(&row).unwrap_or_default())
}

/// `GET /ui/telemetry/stream`.
pub async fn stream(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> UiResult<Response> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::ServiceConnect, CONNECT)?;
    let device = f.device.filter(|d| !d.is_empty());
    let rx = state.hub.subscribe_telemetry();
    let events = futures_util::stream::unfold((rx, device), |(mut rx, device)| async move {
        loop {
            let event = match rx.recv().await {
                Ok(m) if device.as_deref().is_some_and(|d| d != m.device_id) => continue,
                Ok(m) => row_event(&Arc::clone(&m)),
                Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok::<_, Infallible>(event), (rx, device)));
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

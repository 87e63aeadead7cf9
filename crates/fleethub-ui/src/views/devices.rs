//! Devices: `GET /ui/devices` (paged list with status, connection state and edge flag; `?id=`
//! jumps to one device), `GET /ui/devices/{id}` (identity, twin, connection string on request,
//! the tag/desired editor, the direct-method form), `POST /ui/devices/{id}/twin` (a twin patch
//! guarded by the etag the page was rendered with: a concurrent edit is shown, nothing is lost)
//! `POST /ui/devices/{id}/method` (invoke, show the device's answer) and
//! `POST /ui/devices/{id}/c2d` (queue a cloud-to-device message). Edge devices also show their
//! runtime's report (`edge`).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use fleethub_services::Right;
use fleethub_services::hub::TwinTarget;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use std::fmt::Write as _;

use super::Listing;
use crate::UiState;
use crate::error::{UiError, UiResult};
use crate::page;
use crate::viewer::Viewer;

const READ: &str = "RegistryRead (a hub policy such as registryRead or iothubowner)";
const WRITE: &str = "RegistryWrite (a hub policy such as registryReadWrite or iothubowner)";
const CONNECT: &str = "ServiceConnect (a hub policy such as service or iothubowner)";

#[derive(Debug, Default, Deserialize)]
pub struct DeviceListing {
    #[serde(flatten)]
    pub listing: Listing,
    pub id: Option<String>,
    /// A query in the IoT Hub query language (`SELECT * FROM devices WHERE ...`).
    pub q: Option<String>,
    /// Sort the page by `status`, `connection` or `activity` (default: device ID).
    pub sort: Option<String>,
}

/// One row of the device list.
struct DeviceRow {
    id: String,
    status: String,
    connected: bool,
    edge: bool,
    last_activity: String,
}

/// What the device list shows: rows (a listing or a `SELECT *` query), raw rows (a projection
/// or aggregate), the next page, or why the query does not parse.
struct Fetched {
    rows: Vec<DeviceRow>,
    raw: Vec<Value>,
    continuation: Option<String>,
    query_error: Option<String>,
}

async fn fetch(state: &UiState, query: Option<&str>, listing: &Listing) -> UiResult<Fetched> {
    let Some(text) = query else {
        let page = state.hub.list_devices(listing.request()).await?;
        let rows = page
            .items
            .iter()
            .map(|d| DeviceRow {
                id: d.device_id.clone(),
                status: d.status.clone().unwrap_or_else(|| "enabled".into()),
                connected: state.hub.is_connected(&d.device_id, None),
                edge: d.capabilities.as_ref().is_some_and(|c| c.iot_edge),
                last_activity: d.last_activity_time.clone().unwrap_or_else(|| "-".into()),
            })
            .collect();
        return Ok(Fetched {
            rows,
            raw: Vec::new(),
            continuation: page.continuation,
            query_error: None,
        });
    };
    let parsed = match fleethub_services::query::Query::parse(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Ok(Fetched {
                rows: Vec::new(),
                raw: Vec::new(),
                continuation: None,
                query_error: Some(format!("The query does not parse: {e}")),
            });
        }
    };
    let page = state.hub.query_twins(&parsed, &listing.request()).await?;
    let (rows, raw) = if page.item_type == "twin" {
        let rows = page.items.iter().map(|t| row_of_twin(state, t)).collect();
        (rows, Vec::new())
    } else {
        (Vec::new(), page.items)
    };
    Ok(Fetched {
        rows,
        raw,
        continuation: page.continuation,
        query_error: None,
    })
}

/// A device-list row from a twin as the query language returns it.
fn row_of_twin(state: &UiState, t: &Value) -> DeviceRow {
    let text = |k: &str, dflt: &str| t.get(k).and_then(Value::as_str).unwrap_or(dflt).to_string();
    let id = text("deviceId", "");
    DeviceRow {
        connected: state.hub.is_connected(&id, None),
        status: text("status", "enabled"),
        edge: t
            .pointer("/capabilities/iotEdge")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        last_activity: text("lastActivityTime", "-"),
        id,
    }
}

/// `GET /ui/devices`.
pub async fn list(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<DeviceListing>,
) -> UiResult<Response> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::RegistryRead, READ)?;
    if let Some(id) = q.id.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
        return Ok(Redirect::to(&format!("/ui/devices/{}", page::encode(id))).into_response());
    }
    let query = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let Fetched {
        mut rows,
        raw,
        continuation,
        query_error,
    } = fetch(&state, query, &q.listing).await?;
    match q.sort.as_deref() {
        Some("status") => rows.sort_by(|a, b| a.status.cmp(&b.status)),
        Some("connection") => rows.sort_by_key(|r| !r.connected),
        Some("activity") => rows.sort_by(|a, b| b.last_activity.cmp(&a.last_activity)),
        _ => {}
    }
    let keep = |extra: &str| {
        let mut link = format!("/ui/devices?{extra}");
        if let Some(text) = query {
            let _ = write!(link, "&q={}", page::encode(text));
        }
        link
    };
    let next = continuation.as_deref().map(|c| {
        let mut link = keep(&format!("page={}", page::encode(c)));
        if let Some(sort) = &q.sort {
            let _ = write!(link, "&sort={}", page::encode(sort));
        }
        link
    });
    let body = html! {
        (page::notice(q.listing.done.as_deref()))
        form method="get" action="/ui/devices" role="search" {
            label for="id" { "Open a device by ID" }
            input #id type="text" name="id";
            p { button type="submit" { "Open" } }
        }
        form method="get" action="/ui/devices" role="search" {
            label for="q" { "Filter with a query" }
            input #q type="text" name="q" value=(query.unwrap_or(""))
                placeholder="SELECT * FROM devices WHERE tags.environment = 'prod'" aria-describedby="q-error";
            @if let Some(e) = &query_error { p #q-error .error role="alert" { (e) } }
            p { button type="submit" { "Run query" } }
        }
        @if !raw.is_empty() {
            @for item in &raw { (page::json_block(item)) }
        } @else if rows.is_empty() {
            p.hint { "No devices match. Provision one through an enrollment, or create one with `fleethub hub device-identity create`." }
        } @else {
            table {
                thead { tr {
                    th { a href=(keep("sort=id")) { "Device ID" } }
                    th { a href=(keep("sort=status")) { "Status" } }
                    th { a href=(keep("sort=connection")) { "Connection" } }
                    th { "Edge" }
                    th { a href=(keep("sort=activity")) { "Last activity" } }
                } }
                tbody {
                    @for d in &rows {
                        tr {
                            td { a href=(format!("/ui/devices/{}", page::encode(&d.id))) { (d.id) } }
                            td { (d.status) }
                            td { (if d.connected { "Connected" } else { "Disconnected" }) }
                            td { (if d.edge { "yes" } else { "no" }) }
                            td { (d.last_activity) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = &next { p { a href=(next) { "More devices" } } }
    };
    Ok(page::frame(&viewer, "Devices", &body).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct DeviceQuery {
    pub done: Option<String>,
    pub cs: Option<String>,
}

/// `GET /ui/devices/{id}`.
pub async fn show(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DeviceQuery>,
) -> UiResult<Markup> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::RegistryRead, READ)?;
    device_page(
        &state,
        &viewer,
        &id,
        q.done.as_deref(),
        q.cs.as_deref() == Some("show"),
        None,
    )
    .await
}

/// What the twin editor and the method form show after a failed or finished action.
#[derive(Default)]
struct Outcome<'a> {
    twin_error: Option<&'a str>,
    twin_text: Option<&'a str>,
    method_result: Option<Markup>,
}

async fn device_page(
    state: &UiState,
    viewer: &Viewer,
    id: &str,
    done: Option<&str>,
    show_cs: bool,
    outcome: Option<Outcome<'_>>,
) -> UiResult<Markup> {
    let outcome = outcome.unwrap_or_default();
    let device = state.hub.get_device(id).await?;
    let twin = state.hub.service_twin(TwinTarget::Device(id)).await?;
    let connected = state.hub.is_connected(id, None);
    let editable = json!({
        "tags": twin.tags.clone().unwrap_or_else(|| json!({})),
        "properties": {"desired": strip_metadata(&twin.properties.desired)},
    });
    let editable = serde_json::to_string_pretty(&editable).unwrap_or_default();
    let base = format!("/ui/devices/{}", page::encode(id));
    let primary = device
        .authentication
        .as_ref()
        .and_then(|a| a.symmetric_key.as_ref())
        .and_then(|k| k.primary_key.clone());
    let is_edge = device.capabilities.as_ref().is_some_and(|c| c.iot_edge);
    let modules = super::modules::section(state, id).await?;
    let edge = if is_edge {
        Some(super::edge::section(state, viewer, id, twin.configurations.as_ref()).await?)
    } else {
        None
    };
    let body = html! {
        (page::notice(done))
        table {
            tbody {
                tr { th { "Status" } td { (device.status.as_deref().unwrap_or("enabled")) } }
                tr { th { "Connection" } td { (if connected { "Connected" } else { "Disconnected" }) } }
                tr { th { "IoT Edge" } td { (if device.capabilities.as_ref().is_some_and(|c| c.iot_edge) { "yes" } else { "no" }) } }
                tr { th { "Last activity" } td { (device.last_activity_time.as_deref().unwrap_or("-")) } }
                tr { th { "Cloud-to-device queue" } td { (device.cloud_to_device_message_count) } }
            }
        }
        @if let Some(key) = &primary {
            h2 { "Connection string" }
            @if show_cs {
                p { code { (format!("HostName={};DeviceId={id};SharedAccessKey={key}", state.hub_auth.host())) } }
                p { a href=(base) { "Hide" } }
            } @else {
                p { a href=(format!("{base}?cs=show")) { "Show the connection string" } }
            }
        }
        @if let Some(edge) = &edge { (edge) }
        (modules)
        h2 { "Twin" }
        p.hint { "Version " (twin.version) ", etag " code { (twin.etag.as_deref().unwrap_or("-")) } }
        h3 { "Reported properties (read-only)" }
        (page::json_block(&strip_metadata(&twin.properties.reported)))
        @if viewer.can(Right::RegistryWrite) {
            h3 { "Tags and desired properties" }
            form method="post" action=(format!("{base}/twin")) {
                (page::csrf_field(viewer))
                input type="hidden" name="etag" value=(twin.etag.as_deref().unwrap_or(""));
                label for="twin" { "Twin patch (JSON: tags and properties.desired are merged; null removes a key)" }
                textarea #twin name="twin" rows="12" aria-describedby="twin-error" { (outcome.twin_text.unwrap_or(&editable)) }
                @if let Some(e) = outcome.twin_error { p #twin-error .error role="alert" { (e) } }
                p { button type="submit" { "Save twin" } }
            }
        } @else {
            h3 { "Tags" }
            (page::json_block(twin.tags.as_ref().unwrap_or(&Value::Null)))
            h3 { "Desired properties" }
            (page::json_block(&strip_metadata(&twin.properties.desired)))
        }
        @if viewer.can(Right::ServiceConnect) {
            h2 { "Direct method" }
            form method="post" action=(format!("{base}/method")) {
                (page::csrf_field(viewer))
                label for="method" { "Method name" }
                input #method type="text" name="method" required;
                label for="payload" { "Payload (JSON)" }
                textarea #payload name="payload" rows="4" { "{}" }
                label for="timeout" { "Response timeout (seconds)" }
                input #timeout type="number" name="timeout" value="30" min="5" max="300";
                p { button type="submit" { "Invoke method" } }
            }
            @if let Some(result) = &outcome.method_result { (result) }
            h2 { "Cloud-to-device message" }
            form method="post" action=(format!("{base}/c2d")) {
                (page::csrf_field(viewer))
                label for="c2d-body" { "Message body" }
                textarea #c2d-body name="body" rows="3" {}
                label for="c2d-props" { "Properties (optional: key=value, one per line)" }
                textarea #c2d-props name="properties" rows="2" {}
                p { button type="submit" { "Send message" } }
            }
        }
    };
    Ok(page::frame(viewer, &format!("Device {id}"), &body))
}

/// A twin section without `$metadata` / `$version` (shown in the header instead).
pub(super) fn strip_metadata(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Value::Null => json!({}),
        other => other.clone(),
    }
}

#[derive(Debug, Deserialize)]
pub struct TwinForm {
    pub csrf: String,
    #[serde(default)]
    pub etag: String,
    pub twin: String,
}

/// `POST /ui/devices/{id}/twin`.
pub async fn update_twin(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TwinForm>,
) -> UiResult<Response> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Right::RegistryWrite, WRITE)?;
    let refuse = async |status: StatusCode, error: &str| -> UiResult<Response> {
        let outcome = Outcome {
            twin_error: Some(error),
            twin_text: Some(&form.twin),
            method_result: None,
        };
        let page = device_page(&state, &viewer, &id, None, false, Some(outcome)).await?;
        Ok((status, page).into_response())
    };
    let patch: Value = match serde_json::from_str(&form.twin) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "The twin patch must be a JSON object. Nothing was saved.",
            )
            .await;
        }
        Err(e) => {
            let msg = format!("The twin patch is not valid JSON: {e}. Nothing was saved.");
            return refuse(StatusCode::BAD_REQUEST, &msg).await;
        }
    };
    let if_match = Some(form.etag.as_str()).filter(|e| !e.is_empty());
    match state
        .hub
        .update_service_twin(TwinTarget::Device(&id), &patch, if_match, false)
        .await
    {
        Ok(twin) => Ok(Redirect::to(&format!(
            "/ui/devices/{}?done={}",
            page::encode(&id),
            page::encode(&format!("Twin saved (version {}).", twin.version))
        ))
        .into_response()),
        Err(fleethub_services::hub::Error::PreconditionFailed(_)) => {
            refuse(StatusCode::PRECONDITION_FAILED, "Someone else changed this twin since the page was loaded. Your text is kept below; the twin above is the current one: merge your change into it and save again.").await
        }
        Err(e @ fleethub_services::hub::Error::Invalid(_)) => {
            refuse(StatusCode::BAD_REQUEST, &format!("{e}. Nothing was saved.")).await
        }
        Err(e) => Err(UiError::from(e)),
    }
}

#[derive(Debug, Deserialize)]
pub struct MethodForm {
    pub csrf: String,
    pub method: String,
    #[serde(default)]
    pub payload: String,
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// `POST /ui/devices/{id}/method`.
pub async fn invoke_method(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<MethodForm>,
) -> UiResult<Response> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Right::ServiceConnect, CONNECT)?;
    let payload: Value = if form.payload.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&form.payload)
            .map_err(|e| UiError::BadInput(format!("The method payload is not valid JSON: {e}")))?
    };
    let timeout = form.timeout.unwrap_or(30);
    let (status, result) = match state
        .hub
        .invoke_method(&id, None, form.method.trim(), &payload, timeout)
        .await
    {
        Ok((status, answer)) => (
            StatusCode::OK,
            html! {
                p.notice role="status" { "The device answered " (form.method.trim()) " with status " (status) ":" }
                (page::json_block(&answer))
            },
        ),
        Err(e) => {
            let e = UiError::from(e);
            (e.status(), html! { p.error role="alert" { (e) } })
        }
    };
    let outcome = Outcome {
        method_result: Some(result),
        ..Outcome::default()
    };
    let page = device_page(&state, &viewer, &id, None, false, Some(outcome)).await?;
    Ok((status, page).into_response())
}

#[derive(Debug, Deserialize)]
pub struct C2dForm {
    pub csrf: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub properties: String,
}

/// `POST /ui/devices/{id}/c2d`.
pub async fn send_c2d(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<C2dForm>,
) -> UiResult<Redirect> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Right::ServiceConnect, CONNECT)?;
    let mut properties = std::collections::BTreeMap::new();
    for line in form
        .properties
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let Some((k, v)) = line.split_once('=') else {
            return Err(UiError::BadInput(format!(
                "property line '{line}' is not key=value: nothing was sent"
            )));
        };
        properties.insert(k.trim().to_string(), v.trim().to_string());
    }
    let sent = state
        .hub
        .send_c2d(
            &id,
            fleethub_services::hub::C2dSend {
                body: form.body.into_bytes(),
                properties,
                ..Default::default()
            },
        )
        .await?;
    Ok(Redirect::to(&format!(
        "/ui/devices/{}?done={}",
        page::encode(&id),
        page::encode(&format!(
            "Message queued (sequence number {}).",
            sent.sequence_number
        ))
    )))
}

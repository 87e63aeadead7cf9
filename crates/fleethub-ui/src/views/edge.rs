//! IoT Edge: the edge part of a device page (what the device's `$edgeAgent` reports: the
//! runtime's last deployment status, including the 417 "deployment not set" state, every
//! module's runtime status, exit code and restarts; which deployments are applied; the "set
//! modules" form), `GET /ui/edge` (every edge device with its runtime status) and
//! `POST /ui/devices/{id}/modules` (set one device's modules).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use fleethub_api::configuration::ConfigurationContent;
use fleethub_services::Right;
use fleethub_services::hub::TwinTarget;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::Listing;
use crate::UiState;
use crate::error::{UiError, UiResult};
use crate::page;
use crate::viewer::Viewer;

const READ: &str = "RegistryRead (a hub policy such as registryRead or iothubowner)";
const WRITE: &str = "RegistryWrite (a hub policy such as registryReadWrite or iothubowner)";

/// The runtime's last deployment status: (code, description), if it reported one.
pub(super) async fn agent_status(state: &UiState, id: &str) -> Option<(i64, String)> {
    let agent = state
        .hub
        .service_twin(TwinTarget::Module(id, "$edgeAgent"))
        .await
        .ok()?;
    let status = agent.properties.reported.get("lastDesiredStatus")?;
    let code = status.get("code").and_then(Value::as_i64)?;
    let description = status
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((code, description))
}

/// `GET /ui/edge`.
pub async fn list(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<Listing>,
) -> UiResult<Markup> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::RegistryRead, READ)?;
    let query = fleethub_services::query::Query::parse(
        "SELECT * FROM devices WHERE capabilities.iotEdge = true",
    )
    .map_err(UiError::BadInput)?;
    let page_of = state.hub.query_twins(&query, &q.request()).await?;
    let mut rows = Vec::new();
    for twin in &page_of.items {
        let id = twin
            .get("deviceId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let status = agent_status(&state, &id).await;
        let connected = state.hub.is_connected(&id, None);
        rows.push((id, connected, status));
    }
    let body = html! {
        @if rows.is_empty() {
            p.hint { "No IoT Edge devices yet: create an enrollment or a device with the IoT Edge flag." }
        } @else {
            table {
                thead { tr { th { "Device" } th { "Connection" } th { "Runtime status" } } }
                tbody {
                    @for (id, connected, status) in &rows {
                        tr {
                            td { a href=(format!("/ui/devices/{}", page::encode(id))) { (id) } }
                            td { (if *connected { "Connected" } else { "Disconnected" }) }
                            td {
                                @match status {
                                    Some((417, _)) => "417: no deployment set",
                                    Some((code, d)) => { (code) ": " (d) },
                                    None => "not reported yet",
                                }
                            }
                        }
                    }
                }
            }
        }
        (page::next_page("/ui/edge", "page", page_of.continuation.as_deref(), "More edge devices"))
    };
    Ok(page::frame(&viewer, "IoT Edge devices", &body))
}

#[derive(Debug, Deserialize)]
pub struct ModulesForm {
    pub csrf: String,
    pub modules_content: String,
}

/// `POST /ui/devices/{id}/modules`: sets the device's own modules (as `fleethub edge
/// set-modules`); an automatic deployment that targets the device still takes precedence.
pub async fn set_modules(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ModulesForm>,
) -> UiResult<Response> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Right::RegistryWrite, WRITE)?;
    let bad = |msg: String| Err(UiError::BadInput(format!("{msg}. Nothing was saved.")));
    let modules = match serde_json::from_str::<Value>(&form.modules_content) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return bad("The modules content must be a JSON object".into()),
        Err(e) => return bad(format!("The modules content is not valid JSON: {e}")),
    };
    let content = ConfigurationContent {
        modules_content: Some(modules),
        ..ConfigurationContent::default()
    };
    match state.hub.apply_configuration_content(&id, content).await {
        Ok(()) => Ok(Redirect::to(&format!(
            "/ui/devices/{}?done={}",
            page::encode(&id),
            page::encode("Modules set.")
        ))
        .into_response()),
        Err(e @ fleethub_services::hub::Error::Invalid(_)) => Ok((
            StatusCode::BAD_REQUEST,
            page::error_page(StatusCode::BAD_REQUEST, &format!("{e}. Nothing was saved.")),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// The edge section of device `id`'s page (`viewer` decides whether "set modules" is offered).
pub async fn section(
    state: &UiState,
    viewer: &Viewer,
    id: &str,
    device_twin_configurations: Option<&Value>,
) -> UiResult<Markup> {
    let agent = state
        .hub
        .service_twin(TwinTarget::Module(id, "$edgeAgent"))
        .await
        .ok();
    let reported = agent.as_ref().map(|t| &t.properties.reported);
    let status = reported.and_then(|r| r.get("lastDesiredStatus"));
    let code = status.and_then(|s| s.get("code")).and_then(Value::as_i64);
    let description = status
        .and_then(|s| s.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let modules = reported.map(module_rows).unwrap_or_default();
    let applied: Vec<(String, String)> = device_twin_configurations
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = v.get("status").and_then(Value::as_str).unwrap_or("-");
                    (k.clone(), s.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(html! {
        h2 { "IoT Edge runtime" }
        @if agent.is_none() || reported.is_some_and(|r| r.get("lastDesiredStatus").is_none()) {
            p.hint { "The edge runtime has not reported yet: start fleetedge on the device (docs/edge.md)." }
        }
        @match code {
            Some(417) => p.error role="status" {
                "417: no deployment is set for this device. Create a deployment whose target condition matches its tags, or set its modules directly (`fleethub edge set-modules`). " (description)
            },
            Some(200) => p.notice { "200: the runtime applied its deployment." },
            Some(c) => p.error { (c) ": " (description) },
            None => {},
        }
        @if !applied.is_empty() {
            p { "Deployments: "
                @for (i, (name, status)) in applied.iter().enumerate() {
                    @if i > 0 { ", " }
                    (name) " (" (status) ")"
                }
            }
        }
        @if !modules.is_empty() {
            table {
                thead { tr { th { "Module" } th { "Runtime status" } th { "Exit code" } th { "Restarts" } th { "Status" } } }
                tbody {
                    @for m in &modules {
                        tr { td { (m.name) } td { (m.runtime_status) } td { (m.exit_code) } td { (m.restarts) } td { (m.description) } }
                    }
                }
            }
        }
        @if viewer.can(Right::RegistryWrite) {
            h3 { "Set modules" }
            form method="post" action=(format!("/ui/devices/{}/modules", page::encode(id))) {
                (page::csrf_field(viewer))
                label for="modules_content" { "modulesContent (JSON: $edgeAgent and $edgeHub desired properties, as in a deployment manifest)" }
                textarea #modules_content name="modules_content" rows="10" {}
                p.hint { "A deployment whose target condition matches this device takes precedence over modules set here." }
                p { button type="submit" { "Set modules" } }
            }
        }
    })
}

struct ModuleRow {
    name: String,
    runtime_status: String,
    exit_code: String,
    restarts: String,
    description: String,
}

/// The rows of `systemModules` and `modules` in `$edgeAgent`'s reported properties.
fn module_rows(reported: &Value) -> Vec<ModuleRow> {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    };
    ["systemModules", "modules"]
        .into_iter()
        .filter_map(|section| reported.get(section).and_then(Value::as_object))
        .flat_map(|m| m.iter())
        .map(|(name, m)| ModuleRow {
            name: name.clone(),
            runtime_status: text(m.get("runtimeStatus")),
            exit_code: text(m.get("exitCode")),
            restarts: text(m.get("restartCount")),
            description: text(m.get("statusDescription")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_come_from_system_and_user_modules() {
        let reported = json!({
            "systemModules": {"edgeHub": {"runtimeStatus": "running", "exitCode": 0, "restartCount": 1}},
            "modules": {"sensor": {"runtimeStatus": "backoff", "exitCode": 1, "statusDescription": "exited"}},
            "$version": 4
        });
        let rows = module_rows(&reported);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].name.as_str(), rows[0].restarts.as_str()),
            ("edgeHub", "1")
        );
        assert_eq!(
            (rows[1].runtime_status.as_str(), rows[1].exit_code.as_str()),
            ("backoff", "1")
        );
        assert_eq!(rows[1].restarts, "-");
    }
}

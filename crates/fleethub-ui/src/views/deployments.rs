//! IoT Edge deployments (hub configurations with `modulesContent`): `GET /ui/deployments` (each
//! with its target condition, priority and the system metrics: targeted, applied, reporting
//! success, reporting failure), `GET /ui/deployments/new` + `POST` (create: id, target
//! condition, priority, the manifest's `modulesContent` as JSON, validated by the hub before
//! anything is stored), `GET /ui/deployments/{id}` (the manifest and which devices are in each
//! count: targeted, applied, reporting success or failure) and `POST /ui/deployments/{id}/delete`.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use fleethub_api::configuration::Configuration;
use fleethub_services::Right;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CsrfOnly, Listing};
use crate::UiState;
use crate::error::{UiError, UiResult};
use crate::page;
use crate::viewer::Viewer;

const READ: &str = "RegistryRead (a hub policy such as registryRead or iothubowner)";
const WRITE: &str = "RegistryWrite (a hub policy such as registryReadWrite or iothubowner)";

/// The system metrics shown per deployment, with their labels.
const METRICS: [(&str, &str); 4] = [
    ("targetedCount", "Targeted"),
    ("appliedCount", "Applied"),
    ("reportedSuccessfulCount", "Reporting success"),
    ("reportedFailedCount", "Reporting failure"),
];

/// `GET /ui/deployments`.
pub async fn list(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<Listing>,
) -> UiResult<Markup> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::RegistryRead, READ)?;
    let all = state.hub.list_configurations(0).await?;
    let deployments: Vec<&Configuration> = all.iter().filter(|c| c.is_edge()).collect();
    let metric = |c: &Configuration, key: &str| {
        c.system_metrics
            .as_ref()
            .and_then(|m| m.results.get(key))
            .copied()
            .unwrap_or(0)
    };
    let body = html! {
        (page::notice(q.done.as_deref()))
        @if viewer.can(Right::RegistryWrite) {
            p { a href="/ui/deployments/new" { "Create a deployment" } }
        }
        @if deployments.is_empty() {
            p.hint { "No IoT Edge deployments yet." }
        } @else {
            table {
                thead { tr {
                    th { "Deployment" } th { "Target condition" } th { "Priority" }
                    @for (_, label) in METRICS { th { (label) } }
                    @if viewer.can(Right::RegistryWrite) { th { "Action" } }
                } }
                tbody {
                    @for c in &deployments {
                        tr {
                            td { a href=(format!("/ui/deployments/{}", page::encode(&c.id))) { (c.id) } }
                            td { code { (c.target_condition.as_deref().unwrap_or("")) } }
                            td { (c.priority) }
                            @for (key, _) in METRICS { td { (metric(c, key)) } }
                            @if viewer.can(Right::RegistryWrite) {
                                td {
                                    form.inline method="post" action=(format!("/ui/deployments/{}/delete", page::encode(&c.id))) {
                                        (page::csrf_field(&viewer))
                                        button.danger type="submit" aria-label=(format!("Delete deployment {}", c.id)) { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::frame(&viewer, "IoT Edge deployments", &body))
}

#[derive(Debug, Default, Deserialize)]
pub struct NewDeployment {
    pub csrf: String,
    pub id: String,
    pub target_condition: String,
    #[serde(default)]
    pub priority: String,
    pub modules_content: String,
}

/// `GET /ui/deployments/new`.
pub async fn new_form(State(state): State<UiState>, headers: HeaderMap) -> UiResult<Markup> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::RegistryWrite, WRITE)?;
    let form = NewDeployment {
        priority: "10".into(),
        ..NewDeployment::default()
    };
    Ok(new_page(&viewer, &form, None))
}

fn new_page(viewer: &Viewer, form: &NewDeployment, error: Option<&str>) -> Markup {
    let body = html! {
        form method="post" action="/ui/deployments/new" {
            (page::csrf_field(viewer))
            label for="id" { "Deployment name" }
            input #id type="text" name="id" value=(form.id) required;
            label for="target_condition" { "Target condition" }
            input #target_condition type="text" name="target_condition" value=(form.target_condition)
                placeholder="tags.environment='prod'" required;
            label for="priority" { "Priority" }
            input #priority type="number" name="priority" value=(form.priority);
            label for="modules_content" { "Manifest: modulesContent (JSON)" }
            textarea #modules_content name="modules_content" rows="16" aria-describedby="manifest-error"
                placeholder=r#"{"$edgeAgent": {"properties.desired": {...}}, "$edgeHub": {"properties.desired": {...}}}"# { (form.modules_content) }
            @if let Some(e) = error { p #manifest-error .error role="alert" { (e) } }
            p { button type="submit" { "Create deployment" } }
        }
    };
    page::frame(viewer, "Create a deployment", &body)
}

/// `POST /ui/deployments/new`.
pub async fn create(
    State(state): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<NewDeployment>,
) -> UiResult<Response> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Right::RegistryWrite, WRITE)?;
    let refuse = |error: &str| {
        Ok((
            StatusCode::BAD_REQUEST,
            new_page(&viewer, &form, Some(error)),
        )
            .into_response())
    };
    let modules: Value = match serde_json::from_str(&form.modules_content) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return refuse(
                "The manifest must be a JSON object (the deployment's modulesContent). Nothing was saved.",
            );
        }
        Err(e) => {
            return refuse(&format!(
                "The manifest is not valid JSON: {e}. Nothing was saved."
            ));
        }
    };
    let Ok(priority) = form.priority.trim().parse::<i64>() else {
        return refuse("The priority must be a whole number. Nothing was saved.");
    };
    let id = form.id.trim();
    let cfg = json!({
        "id": id,
        "targetCondition": form.target_condition.trim(),
        "priority": priority,
        "content": {"modulesContent": modules},
    });
    let cfg: Configuration =
        serde_json::from_value(cfg).map_err(|e| UiError::BadInput(e.to_string()))?;
    match state.hub.put_configuration(id, cfg, None).await {
        Ok(c) => Ok(Redirect::to(&format!(
            "/ui/deployments?done={}",
            page::encode(&format!("Deployment {} created.", c.id))
        ))
        .into_response()),
        Err(
            e @ (fleethub_services::hub::Error::Invalid(_)
            | fleethub_services::hub::Error::ConfigurationAlreadyExists { .. }),
        ) => refuse(&format!("{e}. Nothing was saved.")),
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/deployments/{id}/delete`.
pub async fn delete(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> UiResult<Redirect> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Right::RegistryWrite, WRITE)?;
    state.hub.delete_configuration(&id, None).await?;
    Ok(Redirect::to(&format!(
        "/ui/deployments?done={}",
        page::encode(&format!("Deployment {id} deleted."))
    )))
}

/// `GET /ui/deployments/{id}`.
pub async fn show(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> UiResult<Markup> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::RegistryRead, READ)?;
    let c = state.hub.get_configuration(&id).await?;
    let (twins, capped) = super::collect!(|p| state.hub.list_twins(p)).await?;
    let mut rows = Vec::new();
    for t in &twins {
        let Some(status) = t
            .configurations
            .as_ref()
            .and_then(|m| m.get(&c.id))
            .and_then(|s| s.get("status"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let report = if status == "Applied" {
            super::edge::agent_status(&state, &t.device_id)
                .await
                .map_or_else(
                    || "not reported yet".to_string(),
                    |(code, d)| format!("{code} {d}"),
                )
        } else {
            "-".to_string()
        };
        rows.push((t.device_id.clone(), status.to_string(), report));
    }
    let manifest = c
        .content
        .as_ref()
        .and_then(|x| serde_json::to_value(x).ok())
        .unwrap_or(Value::Null);
    let body = html! {
        p { "Target condition: " code { (c.target_condition.as_deref().unwrap_or("")) } ", priority " (c.priority) }
        h2 { "Devices" }
        @if rows.is_empty() {
            p.hint { "No device is targeted: no IoT Edge device's twin matches the target condition (or a deployment of higher priority wins)." }
        } @else {
            table {
                thead { tr { th { "Device" } th { "Deployment status" } th { "Runtime report" } } }
                tbody {
                    @for (device, status, report) in &rows {
                        tr {
                            td { a href=(format!("/ui/devices/{}", page::encode(device))) { (device) } }
                            td { (status) }
                            td { (report) }
                        }
                    }
                }
            }
            @if capped { p.hint { "Only the first devices of the registry were looked at." } }
        }
        h2 { "Manifest" }
        (page::json_block(&manifest))
    };
    Ok(page::frame(&viewer, &format!("Deployment {}", c.id), &body))
}

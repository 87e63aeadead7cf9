//! Module identities: the module list on a device page and `GET /ui/devices/{id}/modules/{m}`
//! (the module's connection and twin; tags and desired properties editable with
//! `RegistryWrite`, guarded by the etag as on device twins: `POST .../twin`).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use fleethub_services::Right;
use fleethub_services::hub::TwinTarget;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::devices::{TwinForm, strip_metadata};
use crate::UiState;
use crate::error::{UiError, UiResult};
use crate::page;
use crate::viewer::Viewer;

const READ: &str = "RegistryRead (a hub policy such as registryRead or iothubowner)";
const WRITE: &str = "RegistryWrite (a hub policy such as registryReadWrite or iothubowner)";

/// The module table of device `id`'s page.
pub async fn section(state: &UiState, id: &str) -> UiResult<Markup> {
    let modules = state.hub.list_modules(id).await?;
    Ok(html! {
        @if !modules.is_empty() {
            h2 { "Modules" }
            table {
                thead { tr { th { "Module" } th { "Connection" } th { "Managed by" } } }
                tbody {
                    @for m in &modules {
                        tr {
                            td { a href=(format!("/ui/devices/{}/modules/{}", page::encode(id), page::encode(&m.module_id))) { (m.module_id) } }
                            td { (m.connection_state.as_deref().unwrap_or("Disconnected")) }
                            td { (m.managed_by.as_deref().unwrap_or("-")) }
                        }
                    }
                }
            }
        }
    })
}

/// `GET /ui/devices/{id}/modules/{m}`.
pub async fn show(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path((id, module)): Path<(String, String)>,
) -> UiResult<Markup> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::RegistryRead, READ)?;
    module_page(&state, &viewer, &id, &module, None).await
}

async fn module_page(
    state: &UiState,
    viewer: &Viewer,
    id: &str,
    module: &str,
    error: Option<(&str, &str)>,
) -> UiResult<Markup> {
    let twin = state
        .hub
        .service_twin(TwinTarget::Module(id, module))
        .await?;
    let connected = state.hub.is_connected(id, Some(module));
    let editable = json!({
        "tags": twin.tags.clone().unwrap_or_else(|| json!({})),
        "properties": {"desired": strip_metadata(&twin.properties.desired)},
    });
    let editable = serde_json::to_string_pretty(&editable).unwrap_or_default();
    let base = format!(
        "/ui/devices/{}/modules/{}",
        page::encode(id),
        page::encode(module)
    );
    let body = html! {
        p { a href=(format!("/ui/devices/{}", page::encode(id))) { "Device " (id) } }
        p { "Connection: " (if connected { "Connected" } else { "Disconnected" }) }
        p.hint { "Twin version " (twin.version) ", etag " code { (twin.etag.as_deref().unwrap_or("-")) } }
        h2 { "Reported properties (read-only)" }
        (page::json_block(&strip_metadata(&twin.properties.reported)))
        @if viewer.can(Right::RegistryWrite) {
            h2 { "Tags and desired properties" }
            form method="post" action=(format!("{base}/twin")) {
                (page::csrf_field(viewer))
                input type="hidden" name="etag" value=(twin.etag.as_deref().unwrap_or(""));
                label for="twin" { "Twin patch (JSON: merged; null removes a key)" }
                textarea #twin name="twin" rows="10" aria-describedby="twin-error" { (error.map_or(editable.as_str(), |(_, text)| text)) }
                @if let Some((e, _)) = error { p #twin-error .error role="alert" { (e) } }
                p { button type="submit" { "Save twin" } }
            }
        } @else {
            h2 { "Desired properties" }
            (page::json_block(&strip_metadata(&twin.properties.desired)))
        }
    };
    Ok(page::frame(
        viewer,
        &format!("Module {module} of {id}"),
        &body,
    ))
}

/// `POST /ui/devices/{id}/modules/{m}/twin`.
pub async fn update_twin(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path((id, module)): Path<(String, String)>,
    Form(form): Form<TwinForm>,
) -> UiResult<Response> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Right::RegistryWrite, WRITE)?;
    let refuse = async |status: StatusCode, error: &str| -> UiResult<Response> {
        let page = module_page(&state, &viewer, &id, &module, Some((error, &form.twin))).await?;
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
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("The twin patch is not valid JSON: {e}. Nothing was saved."),
            )
            .await;
        }
    };
    let if_match = Some(form.etag.as_str()).filter(|e| !e.is_empty());
    match state
        .hub
        .update_service_twin(TwinTarget::Module(&id, &module), &patch, if_match, false)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!(
            "/ui/devices/{}/modules/{}",
            page::encode(&id),
            page::encode(&module)
        ))
        .into_response()),
        Err(fleethub_services::hub::Error::PreconditionFailed(_)) => {
            refuse(StatusCode::PRECONDITION_FAILED, "Someone else changed this twin since the page was loaded. Your text is kept below; merge it into the current twin and save again.").await
        }
        Err(e @ fleethub_services::hub::Error::Invalid(_)) => {
            refuse(StatusCode::BAD_REQUEST, &format!("{e}. Nothing was saved.")).await
        }
        Err(e) => Err(UiError::from(e)),
    }
}

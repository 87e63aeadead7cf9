//! Editing an enrollment group or an individual enrollment from its page: provisioning status
//! (enable/disable), the initial twin (JSON, checked before anything is saved) and key
//! regeneration (primary, secondary or both; the DPS makes the new keys). The form carries the
//! etag the page was rendered with, so a concurrent change is reported and nothing is lost.
//! `POST /ui/groups/{id}/edit` and `POST /ui/enrollments/{id}/edit`.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use fleethub_api::dps::{
    AttestationMechanism, InitialTwin, SymmetricKeyAttestation, status_enabled,
};
use fleethub_services::{Right, dps};
use maud::{Markup, html};
use serde::Deserialize;

use super::groups::parse_initial_twin;
use crate::UiState;
use crate::error::{UiError, UiResult};
use crate::page;
use crate::viewer::Viewer;

const WRITE: &str = "EnrollmentWrite (a DPS policy such as provisioningserviceowner)";

/// The parts an enrollment page and a group page share: the keys (shown only when asked), the
/// initial twin, and for writers the edit and delete forms.
pub struct Shown<'a> {
    /// The page's path (`/ui/groups/{id}` or `/ui/enrollments/{id}`).
    pub base: &'a str,
    pub keys: Option<&'a SymmetricKeyAttestation>,
    /// `?keys=show`.
    pub show_keys: bool,
    pub editable: Editable<'a>,
    /// What the delete button says (`group g1`, `enrollment e1`).
    pub delete_label: String,
    /// What deleting keeps, for the hint above the button.
    pub delete_keeps: &'static str,
}

/// The keys section of an enrollment or group page.
pub fn keys(p: &Shown<'_>) -> Markup {
    let base = p.base;
    html! {
        h2 { "Keys" }
        @if p.show_keys {
            @if let Some(k) = p.keys {
                p { "Primary key: " code { (k.primary_key.as_deref().unwrap_or("-")) } }
                p { "Secondary key: " code { (k.secondary_key.as_deref().unwrap_or("-")) } }
            }
            p { a href=(base) { "Hide keys" } }
        } @else {
            p { a href=(format!("{base}?keys=show")) { "Show keys" } }
        }
    }
}

/// The initial twin, the edit form and the delete form of an enrollment or group page (the
/// forms only for a viewer with `EnrollmentWrite`).
pub fn twin_and_forms(viewer: &Viewer, p: &Shown<'_>) -> Markup {
    let base = p.base;
    html! {
        @if let Some(twin) = p.editable.initial_twin {
            h2 { "Initial twin" }
            (page::json_block(&serde_json::to_value(twin).unwrap_or_default()))
        }
        @if viewer.can(Right::EnrollmentWrite) {
            (form(viewer, &format!("{base}/edit"), &p.editable))
            h2 { "Delete" }
            form method="post" action=(format!("{base}/delete")) {
                (page::csrf_field(viewer))
                p.hint { "Deleting the " (p.delete_keeps) }
                button.danger type="submit" { "Delete " (p.delete_label) }
            }
        }
    }
}

/// The fields the edit form changes, as stored.
pub struct Editable<'a> {
    pub etag: Option<&'a str>,
    pub provisioning_status: &'a Option<String>,
    pub initial_twin: Option<&'a InitialTwin>,
}

/// The edit form of an enrollment page; `action` is where it posts.
pub fn form(viewer: &Viewer, action: &str, e: &Editable<'_>) -> Markup {
    let twin = e
        .initial_twin
        .and_then(|t| serde_json::to_string_pretty(t).ok())
        .unwrap_or_default();
    let enabled = status_enabled(e.provisioning_status);
    html! {
        h2 { "Edit" }
        form method="post" action=(action) {
            (page::csrf_field(viewer))
            input type="hidden" name="etag" value=(e.etag.unwrap_or(""));
            label for="status" { "Provisioning status" }
            select #status name="status" {
                option value="enabled" selected[enabled] { "enabled" }
                option value="disabled" selected[!enabled] { "disabled (devices cannot register)" }
            }
            label for="edit_twin" { "Initial twin (JSON; empty: none)" }
            textarea #edit_twin name="initial_twin" rows="6" { (twin) }
            label for="regenerate" { "Keys" }
            select #regenerate name="regenerate" {
                option value="none" selected { "keep the keys" }
                option value="primary" { "regenerate the primary key" }
                option value="secondary" { "regenerate the secondary key" }
                option value="both" { "regenerate both keys" }
            }
            p.hint { "Devices that use a regenerated key (or, in a group, a key derived from it) must get the new one before they register again." }
            p { button type="submit" { "Save changes" } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct EditForm {
    pub csrf: String,
    #[serde(default)]
    pub etag: String,
    pub status: String,
    #[serde(default)]
    pub initial_twin: String,
    #[serde(default)]
    pub regenerate: String,
}

impl EditForm {
    /// Applies the form to the stored fields; the error says what to fix.
    fn apply(
        &self,
        status: &mut Option<String>,
        twin: &mut Option<InitialTwin>,
        attestation: &mut AttestationMechanism,
    ) -> UiResult<()> {
        *status = match self.status.as_str() {
            "enabled" | "disabled" => Some(self.status.clone()),
            other => {
                return Err(UiError::BadInput(format!(
                    "provisioning status '{other}' is neither enabled nor disabled"
                )));
            }
        };
        *twin = match parse_initial_twin(&self.initial_twin).map_err(UiError::BadInput)? {
            Some(v) => Some(serde_json::from_value(v).map_err(|e| {
                UiError::BadInput(format!("The initial twin must look like {{\"tags\": {{..}}, \"properties\": {{\"desired\": {{..}}}}}}: {e}. Nothing was saved."))
            })?),
            None => None,
        };
        let keys = attestation
            .symmetric_key
            .get_or_insert_with(Default::default);
        match self.regenerate.as_str() {
            "" | "none" => {}
            "primary" => keys.primary_key = None,
            "secondary" => keys.secondary_key = None,
            "both" => {
                keys.primary_key = None;
                keys.secondary_key = None;
            }
            other => return Err(UiError::BadInput(format!("unknown key choice '{other}'"))),
        }
        Ok(())
    }

    fn if_match(&self) -> Option<&str> {
        Some(self.etag.as_str()).filter(|e| !e.is_empty())
    }
}

/// What a failed save answers: a concurrent change gets 412 with a clear message.
fn failed(e: dps::Error) -> UiResult<Response> {
    match e {
        dps::Error::PreconditionFailed(_) => Ok((
            StatusCode::PRECONDITION_FAILED,
            page::error_page(
                StatusCode::PRECONDITION_FAILED,
                "Someone else changed this enrollment since the page was loaded: nothing was saved. Reload the page and make your change again.",
            ),
        )
            .into_response()),
        other => Err(other.into()),
    }
}

fn done(base: &str) -> Response {
    Redirect::to(&format!("{base}?done={}", page::encode("Changes saved."))).into_response()
}

/// `POST /ui/groups/{id}/edit`.
pub async fn edit_group(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> UiResult<Response> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Right::EnrollmentWrite, WRITE)?;
    let mut g = state.dps.get_group(&id).await?;
    form.apply(
        &mut g.provisioning_status,
        &mut g.initial_twin,
        &mut g.attestation,
    )?;
    match state.dps.put_group(&id, g, form.if_match()).await {
        Ok(g) => Ok(done(&format!(
            "/ui/groups/{}",
            page::encode(&g.enrollment_group_id)
        ))),
        Err(e) => failed(e),
    }
}

/// `POST /ui/enrollments/{id}/edit`.
pub async fn edit_enrollment(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> UiResult<Response> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Right::EnrollmentWrite, WRITE)?;
    let mut e = state.dps.get_enrollment(&id).await?;
    // The registration state is joined in for display; it is not part of what is stored.
    e.registration_state = None;
    form.apply(
        &mut e.provisioning_status,
        &mut e.initial_twin,
        &mut e.attestation,
    )?;
    match state.dps.put_enrollment(&id, e, form.if_match()).await {
        Ok(e) => Ok(done(&format!(
            "/ui/enrollments/{}",
            page::encode(&e.registration_id)
        ))),
        Err(err) => failed(err),
    }
}

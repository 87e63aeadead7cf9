//! `GET /ui/enrollments`: enrollment groups and individual enrollments, paged.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use fleethub_api::dps::status_enabled;
use fleethub_services::Right;
use maud::{Markup, html};

use super::Listing;
use crate::UiState;
use crate::error::UiResult;
use crate::page;
use crate::viewer::Viewer;

pub async fn list(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<Listing>,
) -> UiResult<Markup> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::EnrollmentRead, "EnrollmentRead (a DPS policy)")?;
    let groups = state.dps.query_groups(q.second_request()).await?;
    let individuals = state.dps.query_enrollments(q.request()).await?;
    let body = html! {
        (page::notice(q.done.as_deref()))
        h2 { "Enrollment groups" }
        @if viewer.can(Right::EnrollmentWrite) {
            p { a href="/ui/groups/new" { "Add an enrollment group" } }
        }
        @if groups.items.is_empty() {
            p.hint { "No enrollment groups yet." }
        } @else {
            table {
                thead { tr { th { "Group" } th { "Status" } th { "Edge" } th { "Hub" } th { "Updated" } } }
                tbody {
                    @for g in &groups.items {
                        tr {
                            td { a href=(format!("/ui/groups/{}", page::encode(&g.enrollment_group_id))) { (g.enrollment_group_id) } }
                            td { (if status_enabled(&g.provisioning_status) { "enabled" } else { "disabled" }) }
                            td { (if g.capabilities.as_ref().is_some_and(|c| c.iot_edge) { "yes" } else { "no" }) }
                            td { (g.iot_hub_host_name.as_deref().unwrap_or("(allocation policy)")) }
                            td { (g.last_updated_date_time_utc.as_deref().unwrap_or("-")) }
                        }
                    }
                }
            }
        }
        (page::next_page("/ui/enrollments", "gpage", groups.continuation.as_deref(), "More groups"))
        h2 { "Individual enrollments" }
        @if viewer.can(Right::EnrollmentWrite) {
            p { a href="/ui/enrollments/new" { "Add an individual enrollment" } }
        }
        @if individuals.items.is_empty() {
            p.hint { "No individual enrollments yet." }
        } @else {
            table {
                thead { tr { th { "Registration ID" } th { "Device ID" } th { "Status" } th { "Registration" } } }
                tbody {
                    @for e in &individuals.items {
                        tr {
                            td { a href=(format!("/ui/enrollments/{}", page::encode(&e.registration_id))) { (e.registration_id) } }
                            td { (e.device_id.as_deref().unwrap_or("-")) }
                            td { (if status_enabled(&e.provisioning_status) { "enabled" } else { "disabled" }) }
                            td { (e.registration_state.as_ref().and_then(|r| r.status.as_deref()).unwrap_or("not registered")) }
                        }
                    }
                }
            }
        }
        (page::next_page("/ui/enrollments", "page", individuals.continuation.as_deref(), "More enrollments"))
    };
    Ok(page::frame(&viewer, "Enrollments", &body))
}

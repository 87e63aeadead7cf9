//! `GET /ui/enrollments`: enrollment groups and individual enrollments, paged; `?filter=` keeps
//! those whose ID contains the text (over every enrollment, up to the count cap), `?sort=status`
//! or `?sort=updated` orders the rows shown (default: by ID).

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use fleethub_api::dps::status_enabled;
use fleethub_services::Right;
use maud::{Markup, html};

use super::{Listing, collect};
use fleethub_api::dps::{EnrollmentGroup, IndividualEnrollment};
use fleethub_services::Page;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct EnrollmentListing {
    #[serde(flatten)]
    pub listing: Listing,
    pub filter: Option<String>,
    pub sort: Option<String>,
}

fn contains(id: &str, filter: &str) -> bool {
    id.to_ascii_lowercase()
        .contains(&filter.to_ascii_lowercase())
}

/// The groups and enrollments to show: a page of each, or every match of the filter.
async fn fetch(
    state: &UiState,
    q: &EnrollmentListing,
) -> UiResult<(Page<EnrollmentGroup>, Page<IndividualEnrollment>)> {
    let Some(filter) = q.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) else {
        let groups = state.dps.query_groups(q.listing.second_request()).await?;
        let individuals = state.dps.query_enrollments(q.listing.request()).await?;
        return Ok((groups, individuals));
    };
    let (groups, _) = collect!(|p| state.dps.query_groups(p)).await?;
    let (individuals, _) = collect!(|p| state.dps.query_enrollments(p)).await?;
    Ok((
        Page {
            items: groups
                .into_iter()
                .filter(|g| contains(&g.enrollment_group_id, filter))
                .collect(),
            continuation: None,
        },
        Page {
            items: individuals
                .into_iter()
                .filter(|e| contains(&e.registration_id, filter))
                .collect(),
            continuation: None,
        },
    ))
}
use crate::UiState;
use crate::error::UiResult;
use crate::page;
use crate::viewer::Viewer;

pub async fn list(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(q): Query<EnrollmentListing>,
) -> UiResult<Markup> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.require(Right::EnrollmentRead, "EnrollmentRead (a DPS policy)")?;
    let (mut groups, mut individuals) = fetch(&state, &q).await?;
    match q.sort.as_deref() {
        Some("status") => {
            groups
                .items
                .sort_by_key(|g| !status_enabled(&g.provisioning_status));
            individuals
                .items
                .sort_by_key(|e| !status_enabled(&e.provisioning_status));
        }
        Some("updated") => {
            groups.items.sort_by(|a, b| {
                b.last_updated_date_time_utc
                    .cmp(&a.last_updated_date_time_utc)
            });
            individuals.items.sort_by(|a, b| {
                b.last_updated_date_time_utc
                    .cmp(&a.last_updated_date_time_utc)
            });
        }
        _ => {}
    }
    let filter = q.filter.clone().unwrap_or_default();
    let body = html! {
        (page::notice(q.listing.done.as_deref()))
        form method="get" action="/ui/enrollments" role="search" {
            label for="filter" { "Only IDs containing" }
            input #filter type="text" name="filter" value=(filter);
            label for="sort" { "Order" }
            select #sort name="sort" {
                option value="id" selected[q.sort.as_deref().is_none_or(|s| s == "id")] { "by ID" }
                option value="status" selected[q.sort.as_deref() == Some("status")] { "enabled first" }
                option value="updated" selected[q.sort.as_deref() == Some("updated")] { "recently updated first" }
            }
            p { button type="submit" { "Apply" } }
        }
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

//! `GET /ui/`: the fleet at a glance: counts of what the viewer's policies can read, recent
//! registrations and recent authentication failures with their reasons.

use axum::extract::State;
use axum::http::HeaderMap;
use fleethub_services::Right;
use maud::{Markup, html};

use super::{collect, count_text};
use crate::UiState;
use crate::error::UiResult;
use crate::page;
use crate::viewer::Viewer;

/// How many recent registrations and failures the page lists.
const RECENT: usize = 10;

pub async fn show(State(state): State<UiState>, headers: HeaderMap) -> UiResult<Markup> {
    let viewer = Viewer::of(&state, &headers)?;
    let mut cards: Vec<(&str, String)> = Vec::new();
    let mut recent_regs = Vec::new();
    if viewer.can(Right::RegistryRead) {
        let stats = state.hub.statistics().await?;
        let (devices, capped) = collect!(|p| state.hub.list_devices(p)).await?;
        let edge = devices
            .iter()
            .filter(|d| d.capabilities.as_ref().is_some_and(|c| c.iot_edge))
            .count();
        cards.push(("Devices", stats.total_device_count.to_string()));
        cards.push(("Enabled", stats.enabled_device_count.to_string()));
        cards.push(("Disabled", stats.disabled_device_count.to_string()));
        let (everywhere, here) = (
            state.hub.connected_count_everywhere().await,
            state.hub.connected_count(),
        );
        cards.push(("Connected now", everywhere.to_string()));
        if state.hub.is_clustered() {
            cards.push(("Connected to this node", here.to_string()));
        }
        cards.push(("Edge devices", count_text(edge, capped)));
    }
    if viewer.can(Right::EnrollmentRead) {
        let (e, capped) = collect!(|p| state.dps.query_enrollments(p)).await?;
        cards.push(("Individual enrollments", count_text(e.len(), capped)));
        let (g, capped) = collect!(|p| state.dps.query_groups(p)).await?;
        cards.push(("Enrollment groups", count_text(g.len(), capped)));
    }
    if viewer.can(Right::RegistrationStatusRead) {
        let (regs, capped) = collect!(|p| state.dps.query_registrations(None, p)).await?;
        for status in ["assigned", "assigning", "failed", "disabled"] {
            let n = regs
                .iter()
                .filter(|r| r.status.as_deref() == Some(status))
                .count();
            cards.push((status_label(status), count_text(n, capped)));
        }
        recent_regs = regs;
        recent_regs.sort_by(|a, b| {
            b.last_updated_date_time_utc
                .cmp(&a.last_updated_date_time_utc)
        });
        recent_regs.truncate(RECENT);
    }
    let failures = if viewer.can(Right::RegistryRead) || viewer.can(Right::EnrollmentRead) {
        state.auth_failures.recent(RECENT)
    } else {
        Vec::new()
    };
    let chart = (viewer.can(Right::RegistryRead) || viewer.can(Right::ServiceConnect))
        .then(|| rate_chart(&state.rate.per_minute()));
    let body = html! {
        section aria-label="Counts" .cards {
            @for (label, n) in &cards {
                div.card { div.n { (n) } div { (label) } }
            }
        }
        @if let Some(chart) = &chart { (chart) }
        @if !recent_regs.is_empty() {
            h2 { "Recent registrations" }
            table {
                thead { tr { th { "Registration ID" } th { "Status" } th { "Hub" } th { "Updated" } } }
                tbody {
                    @for r in &recent_regs {
                        tr {
                            td { (r.registration_id) }
                            td { (r.status.as_deref().unwrap_or("-")) }
                            td { (r.assigned_hub.as_deref().unwrap_or("-")) }
                            td { (r.last_updated_date_time_utc.as_deref().unwrap_or("-")) }
                        }
                    }
                }
            }
        }
        @if !failures.is_empty() {
            h2 { "Recent authentication failures" }
            table {
                thead { tr { th { "Time" } th { "Endpoint" } th { "Identity" } th { "Reason" } } }
                tbody {
                    @for f in &failures {
                        tr {
                            td { (f.time_utc) }
                            td { (f.endpoint) " / " (f.transport) }
                            td { (f.identity) }
                            td { (f.reason) }
                        }
                    }
                }
            }
        }
    };
    Ok(page::frame(&viewer, "Overview", &body))
}

fn status_label(status: &str) -> &'static str {
    match status {
        "assigned" => "Registrations assigned",
        "assigning" => "Registrations assigning",
        "failed" => "Registrations failed",
        _ => "Registrations disabled",
    }
}

/// Telemetry messages per minute as an inline SVG bar chart (no script), with a text summary for
/// screen readers.
fn rate_chart(per_minute: &[u64]) -> Markup {
    const W: u64 = 6;
    const H: u64 = 60;
    let max = per_minute.iter().copied().max().unwrap_or(0).max(1);
    let total: u64 = per_minute.iter().sum();
    let last = per_minute.last().copied().unwrap_or(0);
    let width = W * per_minute.len() as u64;
    html! {
        h2 { "Telemetry, last hour" }
        figure {
            svg role="img" aria-label=(format!("Telemetry messages per minute over the last hour: {total} in all, {last} in the current minute, at most {max} in one minute")) width=(width) height=(H) viewBox=(format!("0 0 {width} {H}")) {
                @for (i, n) in per_minute.iter().enumerate() {
                    @let h = n * H / max;
                    rect x=(i as u64 * W) y=(H - h) width=(W - 1) height=(h) fill="#0b5cad" {
                        title { (n) " messages" }
                    }
                }
            }
            figcaption.hint { (total) " messages in the last hour (since the server started, if later); " (last) " in the current minute." }
        }
    }
}

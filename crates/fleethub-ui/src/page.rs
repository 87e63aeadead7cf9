//! The page frame every view shares: head, navigation (only the sections the viewer's policies
//! can read), the sign-out form, and the embedded stylesheet. `maud` escapes every value.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use fleethub_services::Right;
use maud::{DOCTYPE, Markup, html};

use crate::viewer::Viewer;

/// The stylesheet, embedded in the binary.
const STYLE: &str = include_str!("style.css");

/// `GET /ui` -> `/ui/`.
pub async fn to_home() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `GET /ui/style.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// A whole page for a signed-in viewer.
pub fn frame(viewer: &Viewer, title: &str, body: &Markup) -> Markup {
    let nav: [(&str, &str, bool); 6] = [
        ("/ui/", "Overview", true),
        (
            "/ui/enrollments",
            "Enrollments",
            viewer.can(Right::EnrollmentRead),
        ),
        ("/ui/devices", "Devices", viewer.can(Right::RegistryRead)),
        ("/ui/edge", "IoT Edge", viewer.can(Right::RegistryRead)),
        (
            "/ui/deployments",
            "Deployments",
            viewer.can(Right::RegistryRead),
        ),
        (
            "/ui/telemetry",
            "Live telemetry",
            viewer.can(Right::ServiceConnect),
        ),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    a.brand href="/ui/" { "fleethub" }
                    nav aria-label="Sections" {
                        @for (href, label, shown) in nav {
                            @if shown { a href=(href) { (label) } }
                        }
                    }
                    form.signout method="post" action="/ui/logout" {
                        (csrf_field(viewer))
                        span.who { "Signed in with " (viewer.describe()) }
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without the navigation (sign-in, errors before sign-in).
pub fn bare(title: &str, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header { a.brand href="/ui/" { "fleethub" } }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) " - fleethub" }
            link rel="stylesheet" href="/ui/style.css";
        }
    }
}

/// The hidden field that carries the session's CSRF token in every state-changing form.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.session.csrf); }
}

/// An error page (the message says what went wrong and what to do).
pub fn error_page(status: StatusCode, message: &str) -> Markup {
    bare(
        status.canonical_reason().unwrap_or("Error"),
        &html! {
            p.error role="alert" { (message) }
            p { a href="javascript:history.back()" { "Back" } " · " a href="/ui/" { "Overview" } }
        },
    )
}

/// A notice above a page's content (the result of an action).
pub fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p.notice role="status" { (text) }
        }
    }
}

/// A JSON value, pretty-printed in a `<pre>`.
pub fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre.json { (text) } }
}

/// A link to a listing's next page (`{base}?{param}={continuation}`) when it has more.
pub fn next_page(base: &str, param: &str, continuation: Option<&str>, label: &str) -> Markup {
    html! {
        @if let Some(c) = continuation {
            p { a href=(format!("{base}?{param}={}", encode(c))) { (label) } }
        }
    }
}

/// What [`encode`] leaves as it is: RFC 3986's unreserved characters.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

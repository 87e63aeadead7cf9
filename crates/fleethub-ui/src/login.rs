//! Sign-in and sign-out. A user signs in with the connection string of a hub or DPS shared
//! access policy (or one of each): the host name says which, the key must be the policy's
//! primary or secondary key (compared in constant time). A failure says only that sign-in
//! failed; the real reason goes to the authentication-failure log, as for the APIs.

use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use fleethub_core::connection_string::ConnectionString;
use fleethub_services::ServiceAuth;
use maud::{Markup, html};
use serde::Deserialize;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

use crate::UiState;
use crate::error::UiResult;
use crate::page;
use crate::session::{Session, SignedPolicy, clear_cookie, key_fingerprint, set_cookie};
use crate::viewer::Viewer;

/// What every failed sign-in says (no detail about which part was wrong).
pub const SIGN_IN_FAILED: &str = "Sign-in failed: give the connection string of one of this server's shared access policies (for example from `fleethub info`), as it is now.";

/// `GET /ui/login`.
pub async fn form() -> Markup {
    login_page(None)
}

fn login_page(error: Option<&str>) -> Markup {
    page::bare(
        "Sign in",
        &html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            p.hint { "Use the connection string of a hub policy (e.g. iothubowner, registryRead) or a DPS policy (e.g. provisioningserviceowner, enrollmentread). Give one of each to see both." }
            form method="post" action="/ui/login" {
                label for="cs1" { "Connection string" }
                input #cs1 type="password" name="cs1" autocomplete="off" required;
                label for="cs2" { "Second connection string (optional)" }
                input #cs2 type="password" name="cs2" autocomplete="off";
                p { button type="submit" { "Sign in" } }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    cs1: String,
    #[serde(default)]
    cs2: String,
}

/// `POST /ui/login`.
pub async fn submit(
    State(state): State<UiState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(p))| p.to_string());
    let (mut hub, mut dps) = (None, None);
    for cs in [form.cs1.trim(), form.cs2.trim()] {
        if cs.is_empty() {
            continue;
        }
        match sign_in(&state, cs) {
            Ok((Which::Hub, p)) => hub = Some(p),
            Ok((Which::Dps, p)) => dps = Some(p),
            Err((identity, reason)) => {
                state
                    .auth_failures
                    .record("ui", "https", &identity, peer.clone(), &reason);
                return (StatusCode::UNAUTHORIZED, login_page(Some(SIGN_IN_FAILED)))
                    .into_response();
            }
        }
    }
    if hub.is_none() && dps.is_none() {
        return (StatusCode::BAD_REQUEST, login_page(Some(SIGN_IN_FAILED))).into_response();
    }
    let session = Session::new(hub, dps, state.clock.unix() + state.session_secs);
    let cookie = set_cookie(&session.seal(&state.session_key), state.session_secs);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/ui/".into()),
        ],
    )
        .into_response()
}

/// `POST /ui/logout` (with the CSRF token).
pub async fn logout(
    State(state): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<crate::views::CsrfOnly>,
) -> UiResult<Response> {
    let viewer = Viewer::of(&state, &headers)?;
    viewer.check_csrf(&form.csrf)?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear_cookie()),
            (header::LOCATION, "/ui/login".into()),
        ],
    )
        .into_response())
}

enum Which {
    Hub,
    Dps,
}

/// The policy a connection string proves, or (claimed identity, the real reason).
fn sign_in(state: &UiState, cs: &str) -> Result<(Which, SignedPolicy), (String, String)> {
    let parsed = ConnectionString::parse(cs).map_err(|e| {
        (
            "-".to_string(),
            format!("dashboard sign-in: malformed connection string: {e}"),
        )
    })?;
    let name = parsed.shared_access_key_name.clone().unwrap_or_default();
    let fail = |reason: String| (name.clone(), format!("dashboard sign-in: {reason}"));
    if parsed.device_id.is_some() {
        return Err(fail("a device connection string cannot sign in".into()));
    }
    let Some(key) = parsed.shared_access_key.as_deref() else {
        return Err(fail("no SharedAccessKey".into()));
    };
    let (which, auth): (Which, &ServiceAuth) =
        if parsed.host_name.eq_ignore_ascii_case(state.hub_auth.host()) {
            (Which::Hub, &state.hub_auth)
        } else if parsed.host_name.eq_ignore_ascii_case(state.dps_auth.host()) {
            (Which::Dps, &state.dps_auth)
        } else {
            return Err(fail(format!(
                "HostName '{}' is neither this hub's nor this DPS's",
                parsed.host_name
            )));
        };
    let policy = auth
        .policies()
        .iter()
        .find(|p| p.key_name.eq_ignore_ascii_case(&name))
        .ok_or_else(|| fail(format!("unknown shared access policy '{name}'")))?;
    let matches = |k: &String| bool::from(k.as_bytes().ct_eq(key.as_bytes()));
    if !(matches(&policy.primary_key) || matches(&policy.secondary_key)) {
        return Err(fail(format!(
            "the key is not a key of policy '{}'",
            policy.key_name
        )));
    }
    Ok((
        which,
        SignedPolicy {
            name: policy.key_name.clone(),
            key: key_fingerprint(key),
        },
    ))
}

//! The signed-in user of a request: the session from its cookie, checked against the policies
//! as they are now, and the rights those policies grant.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use fleethub_services::{Right, ServiceAuth};

use crate::UiState;
use crate::error::{UiError, UiResult};
use crate::session::{Session, SignedPolicy, cookie_value, key_fingerprint};

/// Who is asking, and what they may do.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub session: Session,
    /// The hub policy's name and rights.
    pub hub: Option<(String, Vec<Right>)>,
    /// The DPS policy's name and rights.
    pub dps: Option<(String, Vec<Right>)>,
}

impl Viewer {
    /// The viewer of a request, or [`UiError::SignIn`].
    pub fn of(state: &UiState, headers: &HeaderMap) -> UiResult<Viewer> {
        let cookies = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let session = cookie_value(cookies)
            .and_then(|v| Session::open(v, &state.session_key, state.clock.unix()))
            .ok_or(UiError::SignIn)?;
        let hub = resolve(&state.hub_auth, session.hub.as_ref())?;
        let dps = resolve(&state.dps_auth, session.dps.as_ref())?;
        Ok(Viewer { session, hub, dps })
    }

    /// Whether the session's policies grant `right`.
    pub fn can(&self, right: Right) -> bool {
        [&self.hub, &self.dps]
            .into_iter()
            .flatten()
            .any(|(_, rights)| rights.contains(&right))
    }

    /// `Ok` when the session's policies grant `right`, else [`UiError::Forbidden`].
    pub fn require(&self, right: Right, what: &'static str) -> UiResult<()> {
        if self.can(right) {
            Ok(())
        } else {
            Err(UiError::Forbidden(what))
        }
    }

    /// Checks a state-changing request's CSRF token.
    pub fn check_csrf(&self, token: &str) -> UiResult<()> {
        if self.session.csrf_ok(token) {
            Ok(())
        } else {
            Err(UiError::Csrf)
        }
    }

    /// "policy (hub), policy (DPS)" for the page header.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((name, _)) = &self.hub {
            parts.push(format!("{name} (hub)"));
        }
        if let Some((name, _)) = &self.dps {
            parts.push(format!("{name} (DPS)"));
        }
        parts.join(", ")
    }
}

/// The rights of a signed policy if it still has a key with the signed fingerprint; a policy
/// gone or re-keyed ends the session.
fn resolve(
    auth: &ServiceAuth,
    signed: Option<&SignedPolicy>,
) -> UiResult<Option<(String, Vec<Right>)>> {
    let Some(signed) = signed else {
        return Ok(None);
    };
    auth.policies()
        .iter()
        .find(|p| {
            p.key_name == signed.name
                && [&p.primary_key, &p.secondary_key]
                    .into_iter()
                    .any(|k| key_fingerprint(k) == signed.key)
        })
        .map(|p| Some((p.key_name.clone(), p.rights.clone())))
        .ok_or(UiError::SignIn)
}

//! Service-side authorization: shared access policy SAS tokens on the DPS or hub host.

use axum::http::HeaderMap;
use fleethub_core::sas::SasToken;
use fleethub_services::{Right, ServiceAuth, ServiceAuthError};

use crate::HttpState;
use crate::body::{Peer, authorization};
use crate::error::{HubResult, ServiceResult};

const TRANSPORT: &str = "https";

/// Checks the `Authorization` header against the DPS service policies; returns the policy name.
pub(crate) fn dps_service(
    state: &HttpState,
    headers: &HeaderMap,
    right: Right,
    peer: &Peer,
) -> ServiceResult<String> {
    check(&state.dps_service_auth, headers, right, peer)
}

/// Checks the `Authorization` header against the hub service policies; a policy with any one of
/// `rights` is accepted (Azure lets e.g. `RegistryRead` or `ServiceConnect` read twins).
/// Returns the policy name.
pub(crate) fn hub_service(
    state: &HttpState,
    headers: &HeaderMap,
    rights: &[Right],
    peer: &Peer,
) -> HubResult<String> {
    let mut refused = String::new();
    for &right in rights {
        match state.hub_service_auth.authorize(
            authorization(headers),
            right,
            TRANSPORT,
            peer.as_deref(),
        ) {
            Ok(policy) => {
                tracing::debug!(policy, ?right, "hub service request authorized");
                return Ok(policy);
            }
            // Only a valid token gets here; an invalid one was logged once and ends the loop.
            Err(ServiceAuthError::Forbidden(msg)) => refused = msg,
            Err(e) => return Err(e.into()),
        }
    }
    if rights.len() > 1 {
        refused = format!("{refused}: this operation needs one of {rights:?}");
    }
    Err(ServiceAuthError::Forbidden(refused).into())
}

/// Diagnostics accept a DPS policy with `ServiceConfig` or a hub policy with `RegistryRead`.
/// The token's `sr` picks which one is asked, so a valid hub token leaves no spurious DPS
/// failure in the auth-failure log.
pub(crate) fn diagnostics(
    state: &HttpState,
    headers: &HeaderMap,
    peer: &Peer,
) -> ServiceResult<String> {
    let for_hub = authorization(headers)
        .and_then(|h| SasToken::parse(h).ok())
        .is_some_and(|t| {
            t.covers(state.hub_service_auth.host()) && !t.covers(state.dps_service_auth.host())
        });
    if for_hub {
        check(&state.hub_service_auth, headers, Right::RegistryRead, peer)
    } else {
        check(&state.dps_service_auth, headers, Right::ServiceConfig, peer)
    }
}

fn check(
    auth: &ServiceAuth,
    headers: &HeaderMap,
    right: Right,
    peer: &Peer,
) -> ServiceResult<String> {
    let policy = auth.authorize(authorization(headers), right, TRANSPORT, peer.as_deref())?;
    tracing::debug!(policy, ?right, "service request authorized");
    Ok(policy)
}

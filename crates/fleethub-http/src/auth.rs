//! Service-side authorization: shared access policy SAS tokens on the DPS or hub host; and the
//! one place a device token reaches the hub's registry: an IoT Edge device managing its own
//! module identities.

use axum::http::HeaderMap;
use fleethub_core::sas::SasToken;
use fleethub_services::{AuthContext, Right, ServiceAuth, ServiceAuthError};

use crate::HttpState;
use crate::body::{Peer, authorization};
use crate::error::{ApiError, HubResult, ServiceResult};

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

/// Who was allowed to use a module-identity route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModuleCaller {
    /// A hub shared access policy (named) with the right the operation needs.
    Service(String),
    /// The edge device that owns the modules, with its own SAS token.
    EdgeDevice,
}

/// Authorizes a module-identity request on `device_id`'s modules. The token's `skn` decides
/// who is asking: with a key name it is a service policy token that needs `right`; without one
/// it is a device token (what the IoT Edge identity daemon sends, `sr={hub}/devices/{id}`),
/// accepted only from that same device, enabled and edge-enabled (see [`edge_device`]).
pub(crate) async fn module_registry(
    state: &HttpState,
    headers: &HeaderMap,
    device_id: &str,
    right: Right,
    peer: &Peer,
) -> HubResult<ModuleCaller> {
    let device_token = authorization(headers)
        .and_then(|h| SasToken::parse(h).ok())
        .is_some_and(|t| t.skn.is_none());
    if device_token {
        edge_device(state, headers, device_id, peer).await?;
        Ok(ModuleCaller::EdgeDevice)
    } else {
        hub_service(state, headers, &[right], peer).map(ModuleCaller::Service)
    }
}

/// Checks that `Authorization` is a SAS token of the edge device `device_id`, signed with its
/// key. Any other device's token, an unknown or disabled device, and a device that is not
/// edge-enabled are all `401` (the reason goes to the auth-failure log): the edge runtime
/// reprovisions on 401-class errors, never on 404.
pub(crate) async fn edge_device(
    state: &HttpState,
    headers: &HeaderMap,
    device_id: &str,
    peer: &Peer,
) -> HubResult<()> {
    let token = authorization(headers).unwrap_or_default();
    let ctx = AuthContext {
        transport: TRANSPORT,
        peer: peer.as_deref(),
    };
    state
        .hub
        .authenticate_device(device_id, None, token, ctx)
        .await?;
    let device = state.hub.find_device(device_id).await?;
    match device {
        Some(device) if device.is_edge() => {
            tracing::debug!(
                device_id,
                "edge device authorized for its module identities"
            );
            Ok(())
        }
        Some(_) => {
            let reason = format!(
                "device '{device_id}' is not an IoT Edge device (capabilities.iotEdge is false): only edge devices may manage their module identities with their own SAS token; use a hub policy token with RegistryRead/RegistryWrite"
            );
            state
                .auth_failures
                .record("hub", TRANSPORT, device_id, peer.0.clone(), &reason);
            Err(ApiError::unauthorized().with_log(reason).into())
        }
        // deleted between the two reads
        None => {
            let reason = format!("device '{device_id}' is not in the registry");
            state
                .auth_failures
                .record("hub", TRANSPORT, device_id, peer.0.clone(), &reason);
            Err(ApiError::unauthorized().with_log(reason).into())
        }
    }
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

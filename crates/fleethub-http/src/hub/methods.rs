//! Hub service API, direct methods (docs/protocol-notes.md, "Direct methods"): `POST /twins/{id}/methods` and,
//! on a module, `POST /twins/{id}/modules/{mid}/methods`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use fleethub_services::hub::MethodError;
use fleethub_services::{Operation, Right};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

use crate::HttpState;
use crate::auth::hub_service;
use crate::body::{Peer, ok_json, require_json};
use crate::error::{ApiError, HubResult};

/// Response timeout when the request names none (Azure's default).
pub(crate) const DEFAULT_RESPONSE_TIMEOUT_SECS: u64 = 30;
/// Longest wait for an offline device to connect (Azure's limit).
pub(crate) const MAX_CONNECT_TIMEOUT_SECS: u64 = 300;
/// How often an offline device is looked for while waiting for it to connect.
const CONNECT_POLL: Duration = Duration::from_millis(250);

/// `CloudToDeviceMethod`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MethodRequest {
    method_name: String,
    /// Any JSON; Python sends `""` when the caller gave none.
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    response_timeout_in_seconds: Option<u64>,
    #[serde(default)]
    connect_timeout_in_seconds: Option<u64>,
}

/// `CloudToDeviceMethodResult`: the device's status and payload.
#[derive(Debug, Serialize)]
struct MethodResult {
    status: u16,
    payload: Value,
}

/// `POST /twins/{id}/methods` -> 200 `{"status","payload"}` from the device; 404 DeviceNotFound
/// (no such device), 404 DeviceNotOnline (not connected, or not subscribed to methods, within
/// `connectTimeoutInSeconds`), 504 GatewayTimeout (no answer within
/// `responseTimeoutInSeconds`).
pub(crate) async fn invoke(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::ServiceConnect], &peer)?;
    let req: MethodRequest = require_json(&body, "CloudToDeviceMethod")?;
    // An unknown device is DeviceNotFound, not DeviceNotOnline.
    state.hub.get_device(&id).await?;
    call(&state, &id, None, req).await
}

/// `POST /twins/{id}/modules/{mid}/methods`: as [`invoke`], on a module (404 ModuleNotFound
/// when the module does not exist, DeviceNotOnline when it is not connected).
pub(crate) async fn invoke_module(
    State(state): State<HttpState>,
    Path((id, mid)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::ServiceConnect], &peer)?;
    let req: MethodRequest = require_json(&body, "CloudToDeviceMethod")?;
    state.hub.get_module(&id, &mid).await?;
    call(&state, &id, Some(&mid), req).await
}

/// Invokes the method, waiting up to `connectTimeoutInSeconds` for the target to come online.
async fn call(
    state: &HttpState,
    id: &str,
    module: Option<&str>,
    req: MethodRequest,
) -> HubResult<Response> {
    state.hub.admit_for(Operation::DirectMethod, id, module)?;
    let response_timeout = req
        .response_timeout_in_seconds
        .unwrap_or(DEFAULT_RESPONSE_TIMEOUT_SECS);
    let connect_timeout = req
        .connect_timeout_in_seconds
        .unwrap_or(0)
        .min(MAX_CONNECT_TIMEOUT_SECS);
    let connect_deadline = Instant::now() + Duration::from_secs(connect_timeout);
    let (status, payload) = loop {
        match state
            .hub
            .invoke_method(id, module, &req.method_name, &req.payload, response_timeout)
            .await
        {
            Err(MethodError::NotOnline(_)) if Instant::now() + CONNECT_POLL < connect_deadline => {
                tokio::time::sleep(CONNECT_POLL).await;
            }
            Err(e) => return Err(ApiError::from(e).into()),
            Ok(answer) => break answer,
        }
    };
    Ok(ok_json(&MethodResult { status, payload }))
}

//! The workload API modules call (IOTEDGE_WORKLOADURI, HTTP/1.1 over a unix socket), as
//! aziot-edged serves it and the official SDKs' edge HSM clients call it (docs/protocol-notes.md, "Edge hub and workload API"):
//!
//! - `GET /trust-bundle?api-version=..` -> `{"certificate": "<PEM>"}` (edge CA + the
//!   configured trust bundle);
//! - `POST /modules/{m}/genid/{g}/sign?api-version=..` with
//!   `{"keyId": "primary", "algo": "HMACSHA256", "data": "<base64>"}` -> `{"digest": "<base64>"}`.
//!
//! Like aziot-edged 1.2+, every module gets its own socket ([`sockets::WorkloadSockets`]) and
//! a socket signs only for the module it belongs to: a sign request for another module ID is
//! refused with 403. At most [`MAX_CONCURRENT`] connections are served at once per socket.

pub mod sockets;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::identity::{ModuleIdentity, sign};
use crate::uds::{ApiRequest, ApiResponse, Handler};

/// Concurrent requests per socket (aziot-edged's limit).
pub const MAX_CONCURRENT: usize = 10;
/// The api-version the daemon announces in IOTEDGE_APIVERSION.
pub const API_VERSION: &str = "2020-07-07";

/// Looks up a module identity (with keys) by module ID.
pub type IdentityLookup = Arc<dyn Fn(&str) -> Option<ModuleIdentity> + Send + Sync>;

/// What one module's workload socket serves.
#[derive(Clone)]
pub struct Workload {
    /// The module the socket belongs to: the only module it signs for.
    pub module: String,
    pub trust_bundle_pem: String,
    pub identities: IdentityLookup,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignRequest {
    key_id: String,
    algo: String,
    data: String,
}

impl Workload {
    /// The request handler for [`crate::uds::serve`].
    pub fn handler(self) -> Handler {
        let this = Arc::new(self);
        Arc::new(move |req| {
            let this = this.clone();
            Box::pin(async move { this.handle(&req) })
        })
    }

    /// Answers one request.
    pub fn handle(&self, req: &ApiRequest) -> ApiResponse {
        if req.query_param("api-version").is_none_or(|v| v.is_empty()) {
            return ApiResponse::error(
                StatusCode::BAD_REQUEST,
                "the api-version query parameter is required",
            );
        }
        let segments: Vec<String> = req
            .path
            .trim_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (&req.method, segs.as_slice()) {
            (&Method::GET, ["trust-bundle"]) => {
                ApiResponse::ok(json!({ "certificate": self.trust_bundle_pem }))
            }
            (&Method::POST, ["modules", module, "genid", genid, "sign"]) => {
                self.sign(module, genid, &req.body)
            }
            (_, ["trust-bundle"] | ["modules", _, "genid", _, "sign"]) => {
                ApiResponse::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => ApiResponse::error(
                StatusCode::NOT_FOUND,
                format!("no workload API route for {} {}", req.method, req.path),
            ),
        }
    }

    fn sign(&self, module: &str, genid: &str, body: &[u8]) -> ApiResponse {
        if module != self.module {
            tracing::warn!(
                socket_module = self.module,
                requested_module = module,
                "workload API: sign request for another module refused"
            );
            return ApiResponse::error(
                StatusCode::FORBIDDEN,
                format!(
                    "this workload socket belongs to module '{}' and does not sign for module '{module}'; every module must use its own socket (IOTEDGE_WORKLOADURI)",
                    self.module
                ),
            );
        }
        let Some(identity) = (self.identities)(module) else {
            return ApiResponse::error(
                StatusCode::NOT_FOUND,
                format!("module '{module}' is not a module of this edge device"),
            );
        };
        if identity.generation_id != genid {
            return ApiResponse::error(
                StatusCode::NOT_FOUND,
                format!(
                    "module '{module}' has another generation ID than '{genid}' (the identity was recreated); restart the module"
                ),
            );
        }
        let req: SignRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return ApiResponse::error(
                    StatusCode::BAD_REQUEST,
                    format!("the body must be {{\"keyId\", \"algo\", \"data\"}}: {e}"),
                );
            }
        };
        if req.algo != "HMACSHA256" {
            return ApiResponse::error(
                StatusCode::BAD_REQUEST,
                format!("algorithm '{}' is not supported: use HMACSHA256", req.algo),
            );
        }
        let Ok(data) = STANDARD.decode(req.data.trim()) else {
            return ApiResponse::error(StatusCode::BAD_REQUEST, "`data` is not valid base64");
        };
        match sign(&identity, &req.key_id, &data) {
            Ok(digest) => ApiResponse::ok(json!({ "digest": digest })),
            Err(m) => ApiResponse::error(StatusCode::BAD_REQUEST, m),
        }
    }
}

#[cfg(test)]
mod tests;

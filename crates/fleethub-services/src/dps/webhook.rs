//! The custom allocation webhook (docs/protocol-notes.md, "Custom allocation webhook"): an
//! enrollment with `allocationPolicy: custom` names a URL in `customAllocationDefinition`; at
//! registration the DPS POSTs Azure's `AllocationRequest` there and takes the hub, the initial
//! twin and the payload for the device from the answer. The HTTP client lives with the server
//! (it needs the network); the services only see [`AllocationWebhooks`].

use super::{Dps, EnrollmentSource};
use crate::dps::Error;
use fleethub_api::{DeviceRegistrationState, InitialTwin};
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// How long a webhook call may take unless the server sets another bound.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// A webhook's whole answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebhookReply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The webhook could not be reached (connect, TLS, I/O); the text is safe to show.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct WebhookError(pub String);

/// The future of [`AllocationWebhooks::post`].
pub type WebhookFuture<'a> =
    Pin<Box<dyn Future<Output = Result<WebhookReply, WebhookError>> + Send + 'a>>;

/// POSTs a JSON body to a webhook URL (`https://`, or `http://` on a loopback address).
pub trait AllocationWebhooks: Send + Sync {
    fn post<'a>(&'a self, url: &'a str, body: &'a [u8]) -> WebhookFuture<'a>;
}

/// Azure's `AllocationResponse`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct AllocationResponse {
    #[serde(default)]
    pub(super) iot_hub_host_name: Option<String>,
    #[serde(default)]
    pub(super) initial_twin: Option<InitialTwin>,
    #[serde(default)]
    pub(super) payload: Option<Value>,
}

/// What a webhook call came to.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Custom {
    /// The hub (one of the linked hubs offered), with the answer's twin and payload.
    Allocated {
        hub: String,
        initial_twin: Option<InitialTwin>,
        payload: Option<Value>,
    },
    /// The registration fails with this Azure error code (`status: failed`).
    Failed { code: u32, message: String },
    /// Timed out, unreachable, or 429/5xx: the device may register again.
    Unavailable(String),
}

/// Azure's codes for a failed custom allocation (its custom allocation how-to, "Troubleshooting").
pub(super) const CUSTOM_ALLOCATION_FAILED: u32 = 400_207;
pub(super) const CUSTOM_ALLOCATION_HUB_NOT_SPECIFIED: u32 = 400_208;
pub(super) const CUSTOM_ALLOCATION_UNAUTHORIZED: u32 = 400_209;

/// Checks `customAllocationDefinition` of a `custom` enrollment: a `webhookUrl` that is
/// `https://` (or `http://` to a loopback host) and an `apiVersion`.
pub(super) fn check_definition(def: Option<&Value>, what: &str) -> Result<(), Error> {
    let Some(def) = def.filter(|d| !d.is_null()) else {
        return Err(Error::invalid(format!(
            "{what}: allocationPolicy 'custom' needs customAllocationDefinition {{webhookUrl, apiVersion}}"
        )));
    };
    let url = def.get("webhookUrl").and_then(Value::as_str).unwrap_or("");
    if url.is_empty() {
        return Err(Error::invalid(format!(
            "{what}: customAllocationDefinition.webhookUrl is required"
        )));
    }
    check_url(url).map_err(|e| {
        Error::invalid(format!(
            "{what}: customAllocationDefinition.webhookUrl: {e}"
        ))
    })?;
    if def
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(Error::invalid(format!(
            "{what}: customAllocationDefinition.apiVersion is required (e.g. 2021-10-01)"
        )));
    }
    Ok(())
}

/// `https://host[:port]/...`, or `http://` to `localhost`/`127.x.x.x`/`[::1]`.
fn check_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' is not an absolute URL"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .trim_start_matches('[');
    let host = host
        .split_once(']')
        .map_or_else(|| host.split(':').next().unwrap_or(""), |(h, _)| h);
    if host.is_empty() {
        return Err(format!("'{url}' names no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err("plain http is only allowed to a loopback host; use https".into()),
        other => Err(format!("scheme '{other}' is not supported; use https")),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The enrollment as sent to the webhook: without keys and registration state.
fn enrollment_document(source: &EnrollmentSource) -> (&'static str, Value) {
    let (field, mut doc) = match source {
        EnrollmentSource::Individual(e) => (
            "individualEnrollment",
            serde_json::to_value(e.as_ref()).unwrap_or_default(),
        ),
        EnrollmentSource::Group { group, .. } => (
            "enrollmentGroup",
            serde_json::to_value(group.as_ref()).unwrap_or_default(),
        ),
    };
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("registrationState");
        if let Some(att) = obj.get_mut("attestation").and_then(Value::as_object_mut) {
            att.retain(|k, _| k == "type");
        }
    }
    (field, doc)
}

/// Azure's `AllocationRequest` for one registration.
pub(super) fn request_body(
    source: &EnrollmentSource,
    registration_id: &str,
    previous: Option<&DeviceRegistrationState>,
    payload: Option<&Value>,
    linked_hubs: &[String],
) -> Value {
    let (field, enrollment) = enrollment_document(source);
    let mut ctx = json!({"registrationId": registration_id, "symmetricKey": {}});
    // A record names a hub only once the device was assigned one (later failed attempts keep it).
    if let Some(prev) = previous.filter(|p| p.assigned_hub.is_some()) {
        if let Some(hub) = &prev.assigned_hub {
            ctx["currentIotHubHostName"] = json!(hub);
        }
        if let Some(device) = &prev.device_id {
            ctx["currentDeviceId"] = json!(device);
        }
    }
    if let Some(p) = payload {
        ctx["payload"] = p.clone();
    }
    json!({field: enrollment, "deviceRuntimeContext": ctx, "linkedHubs": linked_hubs})
}

/// Reads a webhook's answer as Azure does: 200 with a linked `iotHubHostName` allocates; 401
/// is `CustomAllocationUnauthorizedAccess`; 429 and above may be retried; anything else fails.
pub(super) fn classify(reply: &WebhookReply, linked_hubs: &[String]) -> Custom {
    let failed = |code, message: String| Custom::Failed { code, message };
    match reply.status {
        200..=299 => {}
        401 => {
            return failed(
                CUSTOM_ALLOCATION_UNAUTHORIZED,
                "Custom allocation webhook refused the DPS (401 Unauthorized)".into(),
            );
        }
        s if s >= 429 => {
            return Custom::Unavailable(format!("the custom allocation webhook answered {s}"));
        }
        s => {
            return failed(
                CUSTOM_ALLOCATION_FAILED,
                format!("Custom allocation failed: the webhook answered {s}"),
            );
        }
    }
    let resp: AllocationResponse = match serde_json::from_slice(&reply.body) {
        Ok(r) => r,
        Err(e) => {
            return failed(
                CUSTOM_ALLOCATION_FAILED,
                format!(
                    "Custom allocation failed: the webhook's answer is not an AllocationResponse: {e}"
                ),
            );
        }
    };
    let named = resp.iot_hub_host_name.clone().unwrap_or_default();
    let Some(hub) = linked_hubs
        .iter()
        .find(|h| !named.is_empty() && h.eq_ignore_ascii_case(&named))
    else {
        return failed(
            CUSTOM_ALLOCATION_HUB_NOT_SPECIFIED,
            format!(
                "Custom allocation failed: the webhook named hub '{named}', which is not one of the linked hubs offered ({})",
                linked_hubs.join(", ")
            ),
        );
    };
    if let Some(p) = resp
        .payload
        .as_ref()
        .filter(|p| !p.is_object() && !p.is_null())
    {
        return failed(
            CUSTOM_ALLOCATION_FAILED,
            format!(
                "Custom allocation failed: the webhook's payload must be a JSON object, got {p}"
            ),
        );
    }
    Custom::Allocated {
        hub: hub.clone(),
        initial_twin: resp.initial_twin,
        payload: resp.payload.filter(Value::is_object),
    }
}

impl Dps {
    /// Sets what calls allocation webhooks and how long one call may take; without it, a
    /// `custom` registration fails retryably. Only the first is kept.
    pub fn set_allocation_webhooks(
        &self,
        client: std::sync::Arc<dyn AllocationWebhooks>,
        timeout: Duration,
    ) {
        let _ = self.webhooks.set((client, timeout));
    }

    /// Calls the webhook of a `custom` enrollment for one registration.
    pub(super) async fn call_webhook(&self, url: &str, body: &Value, linked: &[String]) -> Custom {
        let Some((client, timeout)) = self.webhooks.get() else {
            return Custom::Unavailable("this server has no client for allocation webhooks".into());
        };
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        match tokio::time::timeout(*timeout, client.post(url, &bytes)).await {
            Err(_) => Custom::Unavailable(format!(
                "the custom allocation webhook did not answer within {} s",
                timeout.as_secs_f32()
            )),
            Ok(Err(e)) => Custom::Unavailable(format!(
                "the custom allocation webhook cannot be reached: {e}"
            )),
            Ok(Ok(reply)) => classify(&reply, linked),
        }
    }
}

impl Dps {
    /// For a `custom` enrollment: asks the webhook and puts its hub, initial twin and payload
    /// into `plan` and `state`. `Some` when the registration ends here: failed as Azure fails
    /// it (recorded, answered `assigning`; the poll reads `failed`), or retryably (recorded,
    /// the device gets [`Error::WebhookUnavailable`]). Nothing is created in either case.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn allocate_custom(
        &self,
        p: &super::DpsPrincipal,
        plan: &mut super::assign::Plan,
        state: &mut DeviceRegistrationState,
        previous: Option<&fleethub_storage::RegistrationRecord>,
        payload: Option<&Value>,
        candidates: &[super::linked_hubs::Candidate],
        operation_id: &str,
    ) -> Option<Result<fleethub_api::RegistrationOperationStatus, Error>> {
        let offered: Vec<String> = if plan.iot_hubs.is_empty() {
            candidates.iter().map(|c| c.name.clone()).collect()
        } else {
            plan.iot_hubs.clone()
        };
        let url = plan
            .custom
            .as_ref()
            .and_then(|d| d.get("webhookUrl"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let body = request_body(
            &p.source,
            &p.registration_id,
            previous.map(|r| &r.state),
            payload,
            &offered,
        );
        let (code, message, retry) = match self.call_webhook(&url, &body, &offered).await {
            Custom::Allocated {
                hub,
                initial_twin,
                payload,
            } => {
                plan.hub = hub;
                if let Some(t) = initial_twin {
                    plan.initial_twin = Some(t);
                    plan.force_twin = true;
                }
                state.payload = payload;
                return None;
            }
            Custom::Failed { code, message } => (code, message, false),
            Custom::Unavailable(reason) => (
                503_000,
                format!("{reason}; the device may register again"),
                true,
            ),
        };
        tracing::warn!(registration = %p.registration_id, %message, "custom allocation failed");
        self.auth_failures.record(
            "dps",
            &p.origin.transport,
            &p.registration_id,
            p.origin.peer.clone(),
            &message,
        );
        state.status = Some("failed".into());
        state.error_code = Some(code);
        state.error_message = Some(message);
        if let Some(prev) = previous {
            state.assigned_hub.clone_from(&prev.state.assigned_hub);
            state.device_id.clone_from(&prev.state.device_id);
        }
        let committed = self
            .store
            .commit_assignment(fleethub_storage::Assignment {
                registration: fleethub_storage::RegistrationRecord {
                    state: std::mem::take(state),
                    operation_id: operation_id.to_string(),
                },
                device: None,
            })
            .await;
        let rec = match committed {
            Ok(rec) => rec,
            Err(e) => return Some(Err(e.into())),
        };
        self.recent.insert(&rec);
        Some(if retry {
            Err(Error::WebhookUnavailable)
        } else {
            Ok(super::assign::assigning(
                operation_id.to_string(),
                &p.registration_id,
            ))
        })
    }
}

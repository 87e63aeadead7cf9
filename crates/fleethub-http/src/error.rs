//! Errors and how they look on the wire.
//!
//! The DPS device API answers in the DPS shape (`DpsErrorBody` + `x-ms-error-code`); the DPS
//! service API, the hub service API and the diagnostics API answer in the hub shape
//! (`HubErrorBody` + `iothub-errorcode`). Handlers return [`DeviceError`] or [`ServiceError`],
//! which only differ in that shape, or [`HubError`], which has the hub shape and IoT Hub's error
//! names (`DeviceNotFound`, `DeviceAlreadyExists`, ...; Node maps errors by these names). The
//! service errors ([`dps::Error`], [`hub::Error`]) are mapped here and nowhere else. Errors
//! axum produces by itself (body too large, bad path encoding, wrong method) are turned into
//! the same shapes by [`json_errors`], so no client ever gets a plain-text error.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fleethub_api::{DpsErrorBody, HubErrorBody};
use fleethub_services::hub::MethodError;
use fleethub_services::{ServiceAuthError, dps, hub};

use crate::MAX_BODY_BYTES;
use crate::body::json_response;

/// Which error shape a route group uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// DPS device API: `{errorCode, trackingId, message, timestampUtc}` + `x-ms-error-code`.
    Device,
    /// DPS service API and diagnostics: hub style `{Message: "ErrorCode:..", ...}` +
    /// `iothub-errorcode`.
    Service,
}

/// A failed request, independent of its wire shape.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    /// Azure's 6-digit code: `{status}{3 digits}`.
    pub code: u32,
    /// Azure's error-code name for hub-style bodies.
    pub name: &'static str,
    /// Shown to the client.
    pub message: String,
    /// Logged instead of `message` when set (e.g. without echoing request data).
    pub log: Option<String>,
    /// Sent as `Retry-After` (seconds): when a throttled request may be repeated.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: u32,
        name: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            name,
            message: message.into(),
            log: None,
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, 400004, "ArgumentInvalid", message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            401002,
            "IotHubUnauthorizedAccess",
            "Unauthorized",
        )
    }

    /// An error with an Azure-like code and name derived from the status alone.
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        let name = match status.as_u16() {
            400 => "ArgumentInvalid",
            401 => "IotHubUnauthorizedAccess",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            408 => "RequestTimeout",
            409 => "Conflict",
            411 => "LengthRequired",
            412 => "PreconditionFailed",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            429 => "ThrottlingException",
            s if s >= 500 => "ServerError",
            _ => "ArgumentInvalid",
        };
        let code = u32::from(status.as_u16()) * 1000 + 1;
        ApiError::new(status, code, name, message)
    }

    pub fn with_log(mut self, log: String) -> Self {
        self.log = Some(log);
        self
    }

    fn log(&self, shape: Shape) {
        let status = self.status.as_u16();
        // client input may be quoted in the message: no secrets in the log
        let what = fleethub_core::redact::redact(self.log.as_deref().unwrap_or(&self.message));
        if self.status.is_server_error() {
            tracing::warn!(status, code = self.code, ?shape, "request failed: {what}");
        } else if self.status == StatusCode::TOO_MANY_REQUESTS {
            // One line per refused request would flood the log exactly when the server is
            // overloaded; `/metrics` counts them (`fleethub_throttled_operations_total`).
            tracing::debug!(
                status,
                code = self.code,
                ?shape,
                "request throttled: {what}"
            );
        } else {
            tracing::info!(status, code = self.code, ?shape, "request refused: {what}");
        }
    }

    pub fn into_response_with(self, shape: Shape) -> Response {
        self.log(shape);
        let retry_after = self.retry_after_secs;
        let mut resp = match shape {
            Shape::Device => {
                let body = DpsErrorBody::new(self.code, self.message);
                let mut resp = json_response(self.status, &body);
                resp.headers_mut()
                    .insert("x-ms-error-code", HeaderValue::from(self.code));
                resp
            }
            Shape::Service => {
                let body = HubErrorBody::new(self.name, self.code, &self.message);
                let mut resp = json_response(self.status, &body);
                resp.headers_mut()
                    .insert("iothub-errorcode", HeaderValue::from_static(self.name));
                resp
            }
        };
        if let Some(secs) = retry_after {
            // Spelled `Retry-After` on the wire by the server's header-case adapter.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// A 503 while the store cannot be reached, with `Retry-After` (docs/scale-out.md).
    fn unavailable(message: String, retry_after_secs: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            503000,
            "ServiceUnavailable",
            message,
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// A 429 of a throttle: Azure's `429001 ThrottlingException` (docs/protocol-notes.md,
    /// "Throttling") with `Retry-After`.
    fn throttled(message: String, retry_after_secs: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            429001,
            "ThrottlingException",
            message,
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }
}

/// The one mapping of DPS errors to the wire (DPS device and service APIs): HTTP status,
/// Azure's 6-digit code and error-code name.
impl From<dps::Error> for ApiError {
    fn from(e: dps::Error) -> Self {
        use dps::Error as E;
        let (status, code, name) = match &e {
            E::Unauthorized => return ApiError::unauthorized(),
            E::Throttled {
                retry_after_secs, ..
            } => return ApiError::throttled(e.to_string(), *retry_after_secs),
            E::Unavailable { retry_after_secs } => {
                return ApiError::unavailable(e.to_string(), *retry_after_secs);
            }
            E::Invalid(_) => (StatusCode::BAD_REQUEST, 400004, "ArgumentInvalid"),
            E::EnrollmentNotFound { .. }
            | E::GroupNotFound { .. }
            | E::LinkedHubNotFound { .. }
            | E::RegistrationNotFound { .. }
            | E::OperationNotFound { .. } => (StatusCode::NOT_FOUND, 404001, "NotFound"),
            E::EnrollmentAlreadyExists { .. } | E::GroupAlreadyExists { .. } => {
                (StatusCode::CONFLICT, 409001, "Conflict")
            }
            E::PreconditionFailed(_) => (
                StatusCode::PRECONDITION_FAILED,
                412001,
                "PreconditionFailed",
            ),
            E::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                413001,
                "RequestEntityTooLarge",
            ),
            E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, 500001, "ServerError"),
            E::HubUnavailable { .. } | E::WebhookUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                503000,
                "ServiceUnavailable",
            ),
        };
        ApiError::new(status, code, name, e.to_string())
    }
}

/// The one mapping of hub errors to the wire (hub service and device APIs): HTTP status and
/// IoT Hub's code and error-code name (Node maps errors by these names).
impl From<hub::Error> for ApiError {
    fn from(e: hub::Error) -> Self {
        use hub::Error as E;
        let (status, code, name) = match &e {
            E::Unauthorized => return ApiError::unauthorized(),
            E::Throttled {
                retry_after_secs, ..
            } => return ApiError::throttled(e.to_string(), *retry_after_secs),
            E::Unavailable { retry_after_secs } => {
                return ApiError::unavailable(e.to_string(), *retry_after_secs);
            }
            E::Invalid(_) | E::InvalidConsumerGroupName(_) => {
                (StatusCode::BAD_REQUEST, 400004, "ArgumentInvalid")
            }
            E::DeviceNotFound { .. } => (StatusCode::NOT_FOUND, 404001, "DeviceNotFound"),
            E::ModuleNotFound { .. } => (StatusCode::NOT_FOUND, 404010, "ModuleNotFound"),
            E::ConfigurationNotFound { .. } => {
                (StatusCode::NOT_FOUND, 404001, "ConfigurationNotFound")
            }
            E::DeviceAlreadyExists { .. } => (StatusCode::CONFLICT, 409001, "DeviceAlreadyExists"),
            E::ModuleAlreadyExists { .. } => {
                (StatusCode::CONFLICT, 409301, "ModuleAlreadyExistsOnDevice")
            }
            E::ConfigurationAlreadyExists { .. } => {
                (StatusCode::CONFLICT, 409001, "ConfigurationAlreadyExists")
            }
            // A twin still contended after the hub's retries is a precondition, not a duplicate.
            E::PreconditionFailed(_) | E::TwinConflict { .. } => (
                StatusCode::PRECONDITION_FAILED,
                412002,
                "PreconditionFailed",
            ),
            E::LockLost { .. } => (
                StatusCode::PRECONDITION_FAILED,
                412002,
                "DeviceMessageLockLost",
            ),
            E::QueueFull { .. } => (
                StatusCode::FORBIDDEN,
                403004,
                "DeviceMaximumQueueDepthExceeded",
            ),
            E::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                413001,
                "RequestEntityTooLarge",
            ),
            E::PartitionOutOfRange { .. } => {
                (StatusCode::BAD_REQUEST, 400004, "ArgumentOutOfRange")
            }
            E::ConsumerGroupNotFound(_) => (StatusCode::NOT_FOUND, 404001, "ConsumerGroupNotFound"),
            E::ConsumerGroupExists(_) => {
                (StatusCode::CONFLICT, 409001, "ConsumerGroupAlreadyExists")
            }
            E::TooManyConsumerGroups { .. } => {
                (StatusCode::FORBIDDEN, 403002, "IotHubQuotaExceeded")
            }
            E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, 500001, "ServerError"),
        };
        ApiError::new(status, code, name, e.to_string())
    }
}

impl From<MethodError> for ApiError {
    fn from(e: MethodError) -> Self {
        let message = e.to_string();
        match e {
            MethodError::NotOnline(_) => {
                ApiError::new(StatusCode::NOT_FOUND, 404103, "DeviceNotOnline", message)
            }
            MethodError::Timeout(..) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                504101,
                "GatewayTimeout",
                message,
            ),
            MethodError::BadRequest(m) => ApiError::bad_request(m),
        }
    }
}

impl From<ServiceAuthError> for ApiError {
    fn from(e: ServiceAuthError) -> Self {
        match e {
            // The reason is in the auth-failure log; the client only learns "Unauthorized".
            ServiceAuthError::Unauthorized => ApiError::unauthorized(),
            ServiceAuthError::Forbidden(msg) => {
                ApiError::new(StatusCode::FORBIDDEN, 403001, "Forbidden", msg)
            }
        }
    }
}

/// Error of the DPS device API (DPS error body).
#[derive(Debug)]
pub(crate) struct DeviceError(pub ApiError);

/// Error of the DPS service API and diagnostics (hub-style error body).
#[derive(Debug)]
pub(crate) struct ServiceError(pub ApiError);

/// Error of the hub service API (hub-style error body, IoT Hub error names).
#[derive(Debug)]
pub(crate) struct HubError(pub ApiError);

pub(crate) type DeviceResult<T> = Result<T, DeviceError>;
pub(crate) type ServiceResult<T> = Result<T, ServiceError>;
pub(crate) type HubResult<T> = Result<T, HubError>;

impl IntoResponse for DeviceError {
    fn into_response(self) -> Response {
        self.0.into_response_with(Shape::Device)
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        self.0.into_response_with(Shape::Service)
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        self.0.into_response_with(Shape::Service)
    }
}

macro_rules! wrap_errors {
    ($wrapper:ident: $($from:ty),*) => {$(
        impl From<$from> for $wrapper {
            fn from(e: $from) -> Self {
                $wrapper(ApiError::from(e))
            }
        }
    )*};
}
wrap_errors!(DeviceError: dps::Error);
wrap_errors!(ServiceError: dps::Error, ServiceAuthError);
wrap_errors!(HubError: hub::Error, MethodError, ServiceAuthError);

impl From<ApiError> for DeviceError {
    fn from(e: ApiError) -> Self {
        DeviceError(e)
    }
}

impl From<ApiError> for ServiceError {
    fn from(e: ApiError) -> Self {
        ServiceError(e)
    }
}

impl From<ApiError> for HubError {
    fn from(e: ApiError) -> Self {
        HubError(e)
    }
}

/// Middleware: turns every error response that is not JSON (axum's own rejections: body too
/// large, undecodable path, method not allowed) into an Azure-style JSON error of `shape`.
pub(crate) async fn json_errors(shape: Shape, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let text = match axum::body::to_bytes(resp.into_body(), 16 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    rejection(status, &method, &path, text).into_response_with(shape)
}

/// The Azure-style error for a response axum produced without a handler's help.
pub(crate) fn rejection(status: StatusCode, method: &Method, path: &str, text: String) -> ApiError {
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes")
        }
        StatusCode::METHOD_NOT_ALLOWED => format!("method {method} is not allowed on {path}"),
        StatusCode::NOT_FOUND if text.is_empty() => format!("no such resource: {method} {path}"),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        _ => text,
    };
    ApiError::from_status(status, message)
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"))
}

/// A response with no body (e.g. 204).
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(e: &ApiError) -> (u16, u32, &'static str) {
        (e.status.as_u16(), e.code, e.name)
    }

    #[test]
    fn hub_errors_on_the_wire() {
        let s = String::new;
        let cases = [
            (
                hub::Error::Unauthorized,
                (401, 401002, "IotHubUnauthorizedAccess"),
            ),
            (hub::Error::Invalid(s()), (400, 400004, "ArgumentInvalid")),
            (
                hub::Error::DeviceNotFound { id: s() },
                (404, 404001, "DeviceNotFound"),
            ),
            (
                hub::Error::ModuleNotFound {
                    device: s(),
                    module: s(),
                },
                (404, 404010, "ModuleNotFound"),
            ),
            (
                hub::Error::ConfigurationNotFound { id: s() },
                (404, 404001, "ConfigurationNotFound"),
            ),
            (
                hub::Error::DeviceAlreadyExists { id: s() },
                (409, 409001, "DeviceAlreadyExists"),
            ),
            (
                hub::Error::ModuleAlreadyExists {
                    device: s(),
                    module: s(),
                },
                (409, 409301, "ModuleAlreadyExistsOnDevice"),
            ),
            (
                hub::Error::ConfigurationAlreadyExists { id: s() },
                (409, 409001, "ConfigurationAlreadyExists"),
            ),
            (
                hub::Error::TwinConflict { target: s() },
                (412, 412002, "PreconditionFailed"),
            ),
            (
                hub::Error::PreconditionFailed(s()),
                (412, 412002, "PreconditionFailed"),
            ),
            (
                hub::Error::LockLost {
                    device: s(),
                    lock_token: s(),
                },
                (412, 412002, "DeviceMessageLockLost"),
            ),
            (
                hub::Error::QueueFull {
                    device: s(),
                    max: 50,
                },
                (403, 403004, "DeviceMaximumQueueDepthExceeded"),
            ),
            (
                hub::Error::TooLarge(s()),
                (413, 413001, "RequestEntityTooLarge"),
            ),
            (hub::Error::Internal(s()), (500, 500001, "ServerError")),
        ];
        for (e, want) in cases {
            assert_eq!(wire(&ApiError::from(e)), want);
        }
        let throttled = ApiError::from(hub::Error::Throttled {
            what: "twin reads",
            retry_after_secs: 3,
        });
        assert_eq!(wire(&throttled), (429, 429001, "ThrottlingException"));
        let resp = throttled.into_response_with(Shape::Service);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        assert_eq!(resp.headers()["iothub-errorcode"], "ThrottlingException");
        let e = ApiError::from(hub::Error::DeviceNotFound { id: "d1".into() });
        assert_eq!(e.message, "device 'd1' not found");
        // The store cannot be reached: 503 with Retry-After, for the hub and the DPS alike.
        for unavailable in [
            ApiError::from(hub::Error::Unavailable {
                retry_after_secs: 5,
            }),
            ApiError::from(dps::Error::Unavailable {
                retry_after_secs: 5,
            }),
        ] {
            assert_eq!(wire(&unavailable), (503, 503000, "ServiceUnavailable"));
            let resp = unavailable.into_response_with(Shape::Service);
            assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        }
    }

    #[test]
    fn dps_errors_on_the_wire() {
        let s = String::new;
        let cases = [
            (
                dps::Error::Unauthorized,
                (401, 401002, "IotHubUnauthorizedAccess"),
            ),
            (dps::Error::Invalid(s()), (400, 400004, "ArgumentInvalid")),
            (
                dps::Error::EnrollmentNotFound { id: s() },
                (404, 404001, "NotFound"),
            ),
            (
                dps::Error::GroupNotFound { id: s() },
                (404, 404001, "NotFound"),
            ),
            (
                dps::Error::RegistrationNotFound { id: s() },
                (404, 404001, "NotFound"),
            ),
            (
                dps::Error::LinkedHubNotFound { name: s() },
                (404, 404001, "NotFound"),
            ),
            (
                dps::Error::HubUnavailable { hub: s() },
                (503, 503000, "ServiceUnavailable"),
            ),
            (
                dps::Error::WebhookUnavailable,
                (503, 503000, "ServiceUnavailable"),
            ),
            (
                dps::Error::EnrollmentAlreadyExists { id: s() },
                (409, 409001, "Conflict"),
            ),
            (
                dps::Error::PreconditionFailed(s()),
                (412, 412001, "PreconditionFailed"),
            ),
            (
                dps::Error::TooLarge(s()),
                (413, 413001, "RequestEntityTooLarge"),
            ),
            (dps::Error::Internal(s()), (500, 500001, "ServerError")),
        ];
        for (e, want) in cases {
            assert_eq!(wire(&ApiError::from(e)), want);
        }
        let throttled = ApiError::from(dps::Error::Throttled {
            what: "device registrations",
            retry_after_secs: 5,
        });
        assert_eq!(wire(&throttled), (429, 429001, "ThrottlingException"));
        let resp = throttled.into_response_with(Shape::Device);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert_eq!(resp.headers()["x-ms-error-code"], "429001");
    }
}

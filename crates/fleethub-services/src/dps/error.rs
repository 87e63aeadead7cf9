//! Errors of the Device Provisioning Service. They name what failed and carry no transport
//! codes: each transport maps them in one place (HTTP status and Azure error body; MQTT
//! `$dps/registrations/res/{status}`). `Display` texts are safe to show to clients.

use fleethub_storage::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The client failed authentication; the real reason went to the auth-failure log.
    #[error("Unauthorized")]
    Unauthorized,
    #[error("enrollment '{id}' not found")]
    EnrollmentNotFound { id: String },
    #[error("enrollment group '{id}' not found")]
    GroupNotFound { id: String },
    #[error("linked hub '{name}' not found")]
    LinkedHubNotFound { name: String },
    /// A linked hub chosen for the device could not take its identity; the device may
    /// register again (the reason is in the registration record).
    #[error("the hub chosen for this device ('{hub}') is unavailable; register again later")]
    HubUnavailable { hub: String },
    /// A `custom` enrollment's webhook timed out, could not be reached or answered 429/5xx;
    /// the device may register again (the reason is in the registration record).
    #[error("the custom allocation webhook is unavailable; register again later")]
    WebhookUnavailable,
    #[error("registration '{id}' not found")]
    RegistrationNotFound { id: String },
    #[error("operation '{operation_id}' not found for registration '{registration_id}'")]
    OperationNotFound {
        operation_id: String,
        registration_id: String,
    },
    #[error("enrollment '{id}' already exists")]
    EnrollmentAlreadyExists { id: String },
    #[error("enrollment group '{id}' already exists")]
    GroupAlreadyExists { id: String },
    /// An `If-Match` etag does not match the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The request is malformed or not allowed as asked.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    /// A throttle refused the operation (docs/protocol-notes.md, "Throttling").
    #[error("{what} are throttled: too many requests; retry after {retry_after_secs} s")]
    Throttled {
        /// The operation class, in words (`twin reads`, `device registrations`, ...).
        what: &'static str,
        retry_after_secs: u64,
    },
    /// The store cannot be reached right now; nothing was changed (docs/scale-out.md).
    #[error("the service is temporarily unavailable; retry after {retry_after_secs} s")]
    Unavailable { retry_after_secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// A copy of a client-facing error (`Internal` details are not kept).
    pub fn duplicate(&self) -> Self {
        match self {
            Error::Unauthorized => Error::Unauthorized,
            Error::EnrollmentNotFound { id } => Error::EnrollmentNotFound { id: id.clone() },
            Error::GroupNotFound { id } => Error::GroupNotFound { id: id.clone() },
            Error::RegistrationNotFound { id } => Error::RegistrationNotFound { id: id.clone() },
            Error::LinkedHubNotFound { name } => Error::LinkedHubNotFound { name: name.clone() },
            Error::HubUnavailable { hub } => Error::HubUnavailable { hub: hub.clone() },
            Error::WebhookUnavailable => Error::WebhookUnavailable,
            Error::OperationNotFound {
                operation_id,
                registration_id,
            } => Error::OperationNotFound {
                operation_id: operation_id.clone(),
                registration_id: registration_id.clone(),
            },
            Error::EnrollmentAlreadyExists { id } => {
                Error::EnrollmentAlreadyExists { id: id.clone() }
            }
            Error::GroupAlreadyExists { id } => Error::GroupAlreadyExists { id: id.clone() },
            Error::PreconditionFailed(m) => Error::PreconditionFailed(m.clone()),
            Error::Invalid(m) => Error::Invalid(m.clone()),
            Error::TooLarge(m) => Error::TooLarge(m.clone()),
            Error::Throttled {
                what,
                retry_after_secs,
            } => Error::Throttled {
                what,
                retry_after_secs: *retry_after_secs,
            },
            Error::Unavailable { retry_after_secs } => Error::Unavailable {
                retry_after_secs: *retry_after_secs,
            },
            Error::Internal(m) => Error::Internal(m.clone()),
        }
    }
}

impl From<crate::throttle::Throttled> for Error {
    fn from(t: crate::throttle::Throttled) -> Self {
        Error::Throttled {
            what: t.op.describe(),
            retry_after_secs: t.retry_after_secs(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound {
                kind: "enrollment",
                id,
            } => Error::EnrollmentNotFound { id },
            StoreError::NotFound {
                kind: "enrollment group",
                id,
            } => Error::GroupNotFound { id },
            StoreError::NotFound {
                kind: "registration",
                id,
            } => Error::RegistrationNotFound { id },
            StoreError::NotFound {
                kind: "linked hub",
                id,
            } => Error::LinkedHubNotFound { name: id },
            StoreError::AlreadyExists {
                kind: "enrollment",
                id,
            } => Error::EnrollmentAlreadyExists { id },
            StoreError::AlreadyExists {
                kind: "enrollment group",
                id,
            } => Error::GroupAlreadyExists { id },
            StoreError::EtagMismatch { .. } => Error::PreconditionFailed(e.to_string()),
            StoreError::InvalidArgument(m) => Error::Invalid(m),
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                Error::Unavailable {
                    retry_after_secs: crate::STORE_RETRY_AFTER_SECS,
                }
            }
            StoreError::NotFound { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::QueueFull { .. }
            | StoreError::LimitReached { .. }
            | StoreError::Backend(_)
            | StoreError::Corrupt { .. } => {
                tracing::error!(error = %e, "store error");
                Error::Internal("storage failure".into())
            }
        }
    }
}

use fleethub_store::StoreError;
use thiserror::Error;

/// Errors of the DPS service. `message` texts are safe to show to clients.
#[derive(Debug, Error)]
pub enum DpsError {
    /// The client failed authentication; the real reason went to the auth-failure log.
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{message}")]
    BadRequest { code: u32, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DpsError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        DpsError::BadRequest {
            code: 400004,
            message: message.into(),
        }
    }

    /// HTTP status (also used in MQTT `$dps/registrations/res/{status}`).
    pub fn status(&self) -> u16 {
        match self {
            DpsError::Unauthorized => 401,
            DpsError::BadRequest { .. } => 400,
            DpsError::NotFound(_) => 404,
            DpsError::Conflict(_) => 409,
            DpsError::PreconditionFailed(_) => 412,
            DpsError::PayloadTooLarge(_) => 413,
            DpsError::Internal(_) => 500,
        }
    }

    /// Azure's 6-digit error code: `{httpStatus}{3 digits}`.
    pub fn error_code(&self) -> u32 {
        match self {
            DpsError::Unauthorized => 401002,
            DpsError::BadRequest { code, .. } => *code,
            DpsError::NotFound(_) => 404001,
            DpsError::Conflict(_) => 409001,
            DpsError::PreconditionFailed(_) => 412001,
            DpsError::PayloadTooLarge(_) => 413001,
            DpsError::Internal(_) => 500001,
        }
    }

    /// Azure error-code name for hub-style bodies (`ErrorCode:{name};...`).
    pub fn error_name(&self) -> &'static str {
        match self {
            DpsError::Unauthorized => "IotHubUnauthorizedAccess",
            DpsError::BadRequest { .. } => "ArgumentInvalid",
            DpsError::NotFound(_) => "NotFound",
            DpsError::Conflict(_) => "Conflict",
            DpsError::PreconditionFailed(_) => "PreconditionFailed",
            DpsError::PayloadTooLarge(_) => "RequestEntityTooLarge",
            DpsError::Internal(_) => "ServerError",
        }
    }
}

impl From<StoreError> for DpsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => DpsError::NotFound(e.to_string()),
            StoreError::AlreadyExists { .. } => DpsError::Conflict(e.to_string()),
            StoreError::EtagMismatch { .. } => DpsError::PreconditionFailed(e.to_string()),
            StoreError::InvalidArgument(m) => DpsError::bad_request(m),
            StoreError::Backend(_) | StoreError::Corrupt { .. } => {
                tracing::error!(error = %e, "store error");
                DpsError::Internal("storage failure".into())
            }
        }
    }
}

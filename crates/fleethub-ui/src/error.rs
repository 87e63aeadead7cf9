//! What can go wrong in a dashboard request, and the one place it becomes a response: a page
//! with the reason (services' errors already say what to fix), or a redirect to sign-in.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleethub_services::MethodError;
use fleethub_services::{dps, hub};

use crate::page;

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No valid session: go to the sign-in page.
    #[error("sign in first")]
    SignIn,
    /// Signed in, but the policy lacks the right.
    #[error("your shared access policy does not allow this: it needs {0}")]
    Forbidden(&'static str),
    /// A state-changing request without this session's CSRF token.
    #[error("the form expired or did not come from this dashboard: reload the page and try again")]
    Csrf,
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Dps(#[from] dps::Error),
    #[error(transparent)]
    Hub(#[from] hub::Error),
    #[error(transparent)]
    Method(#[from] MethodError),
}

impl UiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            UiError::SignIn => StatusCode::SEE_OTHER,
            UiError::Forbidden(_) | UiError::Csrf => StatusCode::FORBIDDEN,
            UiError::BadInput(_) | UiError::Method(MethodError::BadRequest(_)) => {
                StatusCode::BAD_REQUEST
            }
            UiError::Dps(
                dps::Error::EnrollmentNotFound { .. }
                | dps::Error::GroupNotFound { .. }
                | dps::Error::RegistrationNotFound { .. },
            )
            | UiError::Hub(hub::Error::DeviceNotFound { .. } | hub::Error::ModuleNotFound { .. })
            | UiError::Method(MethodError::NotOnline(_)) => StatusCode::NOT_FOUND,
            UiError::Hub(hub::Error::PreconditionFailed(_) | hub::Error::TwinConflict { .. }) => {
                StatusCode::PRECONDITION_FAILED
            }
            UiError::Method(MethodError::Timeout(..)) => StatusCode::GATEWAY_TIMEOUT,
            UiError::Dps(_) | UiError::Hub(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if matches!(self, UiError::SignIn) {
            return (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/login")]).into_response();
        }
        let status = self.status();
        tracing::debug!(status = status.as_u16(), "ui: {self}");
        (status, page::error_page(status, &self.to_string())).into_response()
    }
}

pub type UiResult<T> = Result<T, UiError>;

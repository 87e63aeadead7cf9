//! Operator diagnostics: `GET /diagnostics/authFailures?limit=N` -> the most recent
//! authentication failures with their real reasons (devices only ever see "Unauthorized").

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::HttpState;
use crate::auth;
use crate::body::{Peer, ok_json};
use crate::error::{ApiError, ServiceResult};

/// Entries returned when `limit` is absent.
pub const DEFAULT_AUTH_FAILURES_LIMIT: usize = 100;

pub(crate) async fn auth_failures(
    State(state): State<HttpState>,
    RawQuery(query): RawQuery,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    auth::diagnostics(&state, &headers, &peer)?;
    let limit = limit(query.as_deref())?;
    Ok(ok_json(&state.auth_failures.recent(limit)))
}

/// `limit=N` from the query string (other parameters, e.g. `api-version`, are ignored).
fn limit(query: Option<&str>) -> Result<usize, ApiError> {
    let value = query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("limit"))
        .map(|(_, v)| v);
    match value {
        None | Some("") => Ok(DEFAULT_AUTH_FAILURES_LIMIT),
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("limit '{v}' is not a non-negative integer"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(limit(None).unwrap(), DEFAULT_AUTH_FAILURES_LIMIT);
        assert_eq!(limit(Some("api-version=2021-10-01&limit=5")).unwrap(), 5);
        assert!(limit(Some("limit=-1")).is_err());
    }
}

//! Request and response plumbing shared by the route groups: JSON bodies, headers, the peer
//! address, query pages.

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use fleethub_api::QuerySpecification;
use fleethub_services::{Page, PageRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::net::SocketAddr;

use crate::error::ApiError;

pub(crate) const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// `status` + JSON body + `Content-Type: application/json; charset=utf-8`.
pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    let (status, bytes) = match serde_json::to_vec(value) {
        Ok(b) => (status, b),
        Err(e) => {
            tracing::warn!("cannot serialize a response: {e}");
            let body = fleethub_api::DpsErrorBody::new(
                500001,
                "internal error: cannot serialize the response",
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        }
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    resp
}

/// 200 + JSON.
pub(crate) fn ok_json<T: Serialize + ?Sized>(value: &T) -> Response {
    json_response(StatusCode::OK, value)
}

/// Parses a JSON request body; `None` when the body is empty (or only whitespace).
/// `what` names the expected document in the error message.
pub(crate) fn parse_json<T: DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        // The message may quote request data (which may hold keys): log only where it failed.
        let log = format!(
            "request body is not a valid {what}: {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        );
        ApiError::bad_request(format!(
            "the request body is not a valid {what} JSON document: {e}"
        ))
        .with_log(log)
    })
}

/// Like [`parse_json`], but an empty body is an error.
pub(crate) fn require_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    parse_json(body, what)?.ok_or_else(|| {
        ApiError::bad_request(format!("the request body must be a {what} JSON document"))
    })
}

/// The `Authorization` header, if present and readable.
pub(crate) fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
}

/// The `If-Match` header, passed through as sent (quotes and `W/` are handled by the store).
pub(crate) fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
}

/// The client's address when the server provided it (`ConnectInfo<SocketAddr>` extension).
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer(pub Option<String>);

impl Peer {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.to_string()),
        ))
    }
}

/// The value of query parameter `name` (case-insensitive name, percent-decoded, `+` read as a
/// space); `Some("")` for a bare `name` or `name=`, `None` when absent.
pub(crate) fn query_param(raw: Option<&str>, name: &str) -> Option<String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    raw.unwrap_or("")
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| decode(k).eq_ignore_ascii_case(name))
        .map(|(_, v)| decode(v))
}

/// Query parameter `name` as an unsigned integer, `None` when absent or empty.
pub(crate) fn query_u64(raw: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    match query_param(raw, name).as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!("{name} '{v}' is not a non-negative integer"))
        }),
    }
}

/// Checks an optional `QuerySpecification` body. Only "everything" queries exist in DPS's
/// service API (`*`, or `SELECT * FROM ...`); anything else is refused rather than ignored.
pub(crate) fn check_query(body: &[u8]) -> Result<(), ApiError> {
    let Some(spec) = parse_json::<QuerySpecification>(body, "QuerySpecification")? else {
        return Ok(());
    };
    let q = spec
        .query
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    if q.is_empty() || q == "*" || (q.starts_with("select * from ") && !q.contains(" where ")) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "query '{}' is not supported: only \"*\" (all records) is",
        spec.query
    )))
}

/// Reads `x-ms-max-item-count` and `x-ms-continuation`.
pub(crate) fn page_request(headers: &HeaderMap) -> Result<PageRequest, ApiError> {
    let max_items = match headers.get("x-ms-max-item-count") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::bad_request("header x-ms-max-item-count must be a non-negative integer")
            })?,
    };
    let continuation = headers
        .get("x-ms-continuation")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    Ok(PageRequest {
        continuation,
        max_items,
    })
}

/// 200 + JSON array + `x-ms-item-type`; `x-ms-continuation` only when there are more pages
/// (Node loops forever on an empty one).
pub(crate) fn page_response<T: Serialize>(
    page: Page<T>,
    item_type: &'static str,
    req: &PageRequest,
) -> Response {
    let mut resp = ok_json(&page.items);
    let h = resp.headers_mut();
    h.insert("x-ms-item-type", HeaderValue::from_static(item_type));
    if req.max_items > 0 {
        h.insert("x-ms-max-item-count", HeaderValue::from(req.max_items));
    }
    if let Some(c) = page.continuation.filter(|c| !c.is_empty())
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        h.insert("x-ms-continuation", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_line_and_column() {
        let e = parse_json::<QuerySpecification>(b"{\n  \"query\": }", "QuerySpecification")
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("line 2 column"), "{}", e.message);
        assert!(
            parse_json::<QuerySpecification>(b"  \n", "x")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn query_params() {
        let raw = Some("api-version=2021-04-12&consumerGroup=%24Default&reject&From=7&x=a+b");
        assert_eq!(
            query_param(raw, "consumergroup").as_deref(),
            Some("$Default")
        );
        assert_eq!(query_param(raw, "reject").as_deref(), Some(""));
        assert_eq!(query_param(raw, "x").as_deref(), Some("a b"));
        assert_eq!(query_param(raw, "nope"), None);
        assert_eq!(query_u64(raw, "from").unwrap(), Some(7));
        assert!(query_u64(raw, "x").is_err());
        assert_eq!(query_u64(None, "from").unwrap(), None);
    }

    #[test]
    fn queries() {
        assert!(check_query(b"").is_ok());
        assert!(check_query(br#"{"query":"*"}"#).is_ok());
        assert!(check_query(br#"{"query":"SELECT *  FROM enrollments"}"#).is_ok());
        assert!(check_query(br"{}").is_ok());
        assert!(check_query(br#"{"query":"SELECT * FROM enrollments WHERE x = 1"}"#).is_err());
    }
}

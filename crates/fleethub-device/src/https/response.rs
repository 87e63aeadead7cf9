//! [`HttpsResponse`]: a complete response and its body helpers.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::HttpsError;

/// A complete HTTPS response.
#[derive(Debug, Clone)]
pub struct HttpsResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpsResponse {
    /// 2xx?
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// A header value as text (the first one; `None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Deserializes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpsError> {
        serde_json::from_slice(&self.body).map_err(|source| HttpsError::Json {
            status: self.status.as_u16(),
            source,
        })
    }
}

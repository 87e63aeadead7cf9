//! REST client of the DPS and hub service APIs: SAS auth, Azure headers, error mapping, paging.
//!
//! The wire is behind [`Transport`] so the command logic is tested without sockets; the real
//! transport (`transport.rs`) is the device SDK's HTTPS client.

use crate::errors::{ServiceError, explain_transport_error};
use crate::settings::Endpoint;
use anyhow::{Context, Result, anyhow, bail};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::future::Future;

/// api-version of the DPS service API (what the Node service SDK sends).
pub(crate) const API_VERSION: &str = "2021-10-01";
/// api-version of the IoT hub service API.
pub(crate) const HUB_API_VERSION: &str = "2021-04-12";
/// Lifetime of the service SAS tokens we sign.
const TOKEN_TTL_SECS: u64 = 3600;
/// `x-ms-max-item-count` sent with every query.
pub(crate) const PAGE_SIZE: usize = 100;

/// One HTTP request, path already percent-encoded (query included).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub method: &'static str,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self, operation: &str) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "{operation}: the server answered {} with a body that is not JSON",
                self.status
            )
        })
    }
}

/// Sends one request and returns the whole response (any status). Errors are transport errors.
pub(crate) trait Transport {
    fn send(&self, req: Request) -> impl Future<Output = Result<Response>> + Send;
}

/// `encodeURIComponent` (what the Node SDK applies to IDs in paths).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Percent-encodes one path segment.
pub(crate) fn seg(id: &str) -> String {
    utf8_percent_encode(id, COMPONENT).to_string()
}

pub(crate) struct ServiceClient<T> {
    transport: T,
    endpoint: Endpoint,
    clock: fn() -> u64,
    api_version: &'static str,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<T: Transport> ServiceClient<T> {
    pub(crate) fn new(transport: T, endpoint: Endpoint) -> Self {
        ServiceClient {
            transport,
            endpoint,
            clock: unix_now,
            api_version: API_VERSION,
        }
    }

    /// Sends `api-version=version` instead of the DPS one.
    pub(crate) fn with_api_version(mut self, version: &'static str) -> Self {
        self.api_version = version;
        self
    }

    pub(crate) fn api_version(&self) -> &'static str {
        self.api_version
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Current time, unix seconds (fixed in tests).
    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }

    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    #[cfg(test)]
    pub(crate) fn transport(&self) -> &T {
        &self.transport
    }

    /// A service SAS token for the connection string's policy, valid for an hour.
    pub(crate) fn token(&self) -> Result<String> {
        let expiry = (self.clock)() + TOKEN_TTL_SECS;
        fleethub_core::sas::build_token(
            &self.endpoint.host_name,
            &self.endpoint.key,
            expiry,
            Some(&self.endpoint.key_name),
        )
        .map_err(|e| {
            anyhow!(
                "cannot sign a token with the key from {}: {e}",
                self.endpoint.origin
            )
        })
    }

    /// Sends `method path` (path without query; `query` is appended after `api-version`).
    /// Returns the response whatever its status.
    pub(crate) async fn send(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        extra_headers: Vec<(String, String)>,
        body: Option<&Value>,
    ) -> Result<Response> {
        let mut path_and_query = format!("{path}?api-version={}", self.api_version);
        for (k, v) in query {
            path_and_query.push_str(&format!("&{k}={}", seg(v)));
        }
        let mut headers = vec![
            ("Authorization".to_string(), self.token()?),
            ("Accept".to_string(), "application/json".to_string()),
            ("Request-Id".to_string(), uuid::Uuid::new_v4().to_string()),
            (
                "User-Agent".to_string(),
                concat!("fleethub-cli/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ];
        let body = match body {
            Some(v) => {
                headers.push((
                    "Content-Type".to_string(),
                    "application/json; charset=utf-8".to_string(),
                ));
                Some(serde_json::to_vec(v)?)
            }
            None => None,
        };
        headers.extend(extra_headers);
        tracing::debug!(method, path = %path_and_query, dial = %self.endpoint.dial, "request");
        let req = Request {
            method,
            path_and_query,
            headers,
            body,
        };
        let resp = self
            .transport
            .send(req)
            .await
            .map_err(|e| explain_transport_error(e, &self.endpoint))?;
        tracing::debug!(status = resp.status, "response");
        Ok(resp)
    }

    /// Sends and requires a 2xx status.
    pub(crate) async fn send_ok(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        headers: Vec<(String, String)>,
        body: Option<&Value>,
    ) -> Result<Response> {
        let resp = self.send(method, path, query, headers, body).await?;
        if (200..300).contains(&resp.status) {
            Ok(resp)
        } else {
            Err(
                ServiceError::from_response(format!("{method} {path}"), resp.status, &resp.body)
                    .into(),
            )
        }
    }

    /// `GET path` -> JSON.
    pub(crate) async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.send_ok("GET", path, query, vec![], None)
            .await?
            .json(&format!("GET {path}"))
    }

    /// `GET path` -> JSON, or `None` on 404.
    pub(crate) async fn get_opt(&self, path: &str) -> Result<Option<Value>> {
        let resp = self.send("GET", path, &[], vec![], None).await?;
        match resp.status {
            404 => Ok(None),
            200..=299 => Ok(Some(resp.json(&format!("GET {path}"))?)),
            s => Err(ServiceError::from_response(format!("GET {path}"), s, &resp.body).into()),
        }
    }

    /// `PUT path` with a JSON body and optional `If-Match` / `If-None-Match: *`.
    pub(crate) async fn put(&self, path: &str, body: &Value, cond: Condition<'_>) -> Result<Value> {
        self.send_ok("PUT", path, &[], cond.headers(), Some(body))
            .await?
            .json(&format!("PUT {path}"))
    }

    /// `PATCH path` with a JSON body and optional `If-Match`.
    pub(crate) async fn patch(
        &self,
        path: &str,
        body: &Value,
        cond: Condition<'_>,
    ) -> Result<Value> {
        self.send_ok("PATCH", path, &[], cond.headers(), Some(body))
            .await?
            .json(&format!("PATCH {path}"))
    }

    /// `POST path` with a JSON body -> JSON.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send_ok("POST", path, &[], vec![], Some(body))
            .await?
            .json(&format!("POST {path}"))
    }

    /// `DELETE path` with an optional `If-Match`.
    pub(crate) async fn delete(&self, path: &str, if_match: Option<&str>) -> Result<()> {
        let cond = if_match.map_or(Condition::None, Condition::IfMatch);
        self.send_ok("DELETE", path, &[], cond.headers(), None)
            .await?;
        Ok(())
    }

    /// `POST path` with `{"query":"*"}`, following `x-ms-continuation` until the last page.
    pub(crate) async fn query_all(&self, path: &str) -> Result<Vec<Value>> {
        let body = json!({ "query": "*" });
        let mut items = Vec::new();
        let mut continuation: Option<String> = None;
        let mut seen = HashSet::new();
        loop {
            let mut headers = vec![("x-ms-max-item-count".to_string(), PAGE_SIZE.to_string())];
            if let Some(c) = &continuation {
                headers.push(("x-ms-continuation".to_string(), c.clone()));
            }
            let op = format!("POST {path}");
            let resp = self
                .send_ok("POST", path, &[], headers, Some(&body))
                .await?;
            match resp.json(&op)? {
                Value::Array(page) => items.extend(page),
                other => bail!(
                    "{op}: expected a JSON array, the server sent {}",
                    kind(&other)
                ),
            }
            match resp
                .header("x-ms-continuation")
                .map(str::trim)
                .filter(|c| !c.is_empty())
            {
                None => return Ok(items),
                Some(c) => {
                    if !seen.insert(c.to_string()) {
                        bail!(
                            "{op}: the server sent the continuation token '{c}' twice; stopping to avoid a loop"
                        );
                    }
                    continuation = Some(c.to_string());
                }
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Write precondition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition<'a> {
    None,
    IfMatch(&'a str),
    /// Create only (`If-None-Match: *`).
    MustNotExist,
}

impl Condition<'_> {
    fn headers(self) -> Vec<(String, String)> {
        match self {
            Condition::None => vec![],
            Condition::IfMatch(e) => vec![("If-Match".to_string(), e.to_string())],
            Condition::MustNotExist => vec![("If-None-Match".to_string(), "*".to_string())],
        }
    }
}

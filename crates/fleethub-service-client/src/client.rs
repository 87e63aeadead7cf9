//! The service client core: SAS-signed requests with the Azure headers, `api-version`, error
//! mapping and query paging. The typed operations live in [`crate::dps`] and [`crate::hub`].

use crate::error::{Error, ServiceError};
use crate::transport::{Request, Response, Transport};
use fleethub_core::connection_string::ConnectionString;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::fmt::Write as _;

/// api-version of the DPS service API (what the Node service SDK sends).
pub const DPS_API_VERSION: &str = "2021-10-01";
/// api-version of the IoT hub service API (what the Node service SDK sends).
pub const HUB_API_VERSION: &str = "2021-04-12";
/// Lifetime of the service SAS tokens we sign.
pub const TOKEN_TTL_SECS: u64 = 3600;
/// `x-ms-max-item-count` sent with every query page.
pub const PAGE_SIZE: usize = 100;
/// `User-Agent` sent unless [`ServiceClient::with_user_agent`] says otherwise.
pub const USER_AGENT: &str = concat!("fleethub-service-client/", env!("CARGO_PKG_VERSION"));

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

/// Percent-encodes one path segment (or query value).
pub fn seg(id: &str) -> String {
    utf8_percent_encode(id, COMPONENT).to_string()
}

/// The shared-access policy a service client signs with: `sr` is the `HostName`, `skn` the
/// policy name (see docs/protocol-notes.md, "SAS tokens").
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub host_name: String,
    pub key_name: String,
    pub key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// From `HostName=..;SharedAccessKeyName=..;SharedAccessKey=..`.
    pub fn from_connection_string(s: &str) -> Result<Self, Error> {
        let cs = ConnectionString::parse(s)?;
        Ok(Credentials {
            key_name: cs
                .shared_access_key_name
                .ok_or(Error::MissingField("SharedAccessKeyName"))?,
            key: cs
                .shared_access_key
                .ok_or(Error::MissingField("SharedAccessKey"))?,
            host_name: cs.host_name,
        })
    }

    /// A service SAS token valid until `expiry` (unix seconds).
    pub fn token(&self, expiry: u64) -> Result<String, Error> {
        fleethub_core::sas::build_token(&self.host_name, &self.key, expiry, Some(&self.key_name))
            .map_err(Error::Sign)
    }
}

/// Write precondition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition<'a> {
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

fn unix_now() -> u64 {
    fleethub_core::time_util::now_unix()
}

/// A client of one service API (DPS or hub) over a [`Transport`].
pub struct ServiceClient<T> {
    transport: T,
    credentials: Credentials,
    clock: fn() -> u64,
    api_version: &'static str,
    user_agent: &'static str,
}

impl<T: Transport> ServiceClient<T> {
    /// A client sending the DPS service api-version; see [`Self::with_api_version`].
    pub fn new(transport: T, credentials: Credentials) -> Self {
        ServiceClient {
            transport,
            credentials,
            clock: unix_now,
            api_version: DPS_API_VERSION,
            user_agent: USER_AGENT,
        }
    }

    /// A DPS service API client.
    pub fn dps(transport: T, credentials: Credentials) -> Self {
        Self::new(transport, credentials)
    }

    /// An IoT hub service API client.
    pub fn hub(transport: T, credentials: Credentials) -> Self {
        Self::new(transport, credentials).with_api_version(HUB_API_VERSION)
    }

    /// Sends `api-version=version`.
    pub fn with_api_version(mut self, version: &'static str) -> Self {
        self.api_version = version;
        self
    }

    /// Sends this `User-Agent`.
    pub fn with_user_agent(mut self, user_agent: &'static str) -> Self {
        self.user_agent = user_agent;
        self
    }

    /// Reads the time (unix seconds) from `clock` (fixed in tests).
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    pub fn api_version(&self) -> &'static str {
        self.api_version
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Current time, unix seconds.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// A service SAS token for the policy, valid for [`TOKEN_TTL_SECS`].
    pub fn token(&self) -> Result<String, Error> {
        self.credentials.token(self.now() + TOKEN_TTL_SECS)
    }

    /// Sends `method path` (path without query; `query` is appended after `api-version`).
    /// Returns the response whatever its status.
    pub async fn send(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        extra_headers: Vec<(String, String)>,
        body: Option<&Value>,
    ) -> Result<Response, Error> {
        let mut path_and_query = format!("{path}?api-version={}", self.api_version);
        for (k, v) in query {
            let _ = write!(path_and_query, "&{k}={}", seg(v));
        }
        let mut headers = vec![
            ("Authorization".to_string(), self.token()?),
            ("Accept".to_string(), "application/json".to_string()),
            ("Request-Id".to_string(), uuid::Uuid::new_v4().to_string()),
            ("User-Agent".to_string(), self.user_agent.to_string()),
        ];
        let body = match body {
            Some(v) => {
                headers.push((
                    "Content-Type".to_string(),
                    "application/json; charset=utf-8".to_string(),
                ));
                Some(serde_json::to_vec(v).map_err(Error::Encode)?)
            }
            None => None,
        };
        headers.extend(extra_headers);
        tracing::debug!(method, path = %path_and_query, "request");
        let req = Request {
            method,
            path_and_query,
            headers,
            body,
        };
        let resp = self.transport.send(req).await.map_err(Error::Transport)?;
        tracing::debug!(status = resp.status, "response");
        Ok(resp)
    }

    /// Sends and requires a 2xx status.
    pub async fn send_ok(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        headers: Vec<(String, String)>,
        body: Option<&Value>,
    ) -> Result<Response, Error> {
        let resp = self.send(method, path, query, headers, body).await?;
        if resp.is_success() {
            Ok(resp)
        } else {
            Err(
                ServiceError::from_response(format!("{method} {path}"), resp.status, &resp.body)
                    .into(),
            )
        }
    }

    /// `GET path` -> JSON.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Error> {
        self.send_ok("GET", path, query, vec![], None)
            .await?
            .json(&format!("GET {path}"))
    }

    /// `GET path` -> JSON, or `None` on 404.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>, Error> {
        let resp = self.send("GET", path, &[], vec![], None).await?;
        match resp.status {
            404 => Ok(None),
            200..=299 => Ok(Some(resp.json(&format!("GET {path}"))?)),
            s => Err(ServiceError::from_response(format!("GET {path}"), s, &resp.body).into()),
        }
    }

    /// `PUT path` with a JSON body and optional `If-Match` / `If-None-Match: *`.
    pub async fn put(&self, path: &str, body: &Value, cond: Condition<'_>) -> Result<Value, Error> {
        self.send_ok("PUT", path, &[], cond.headers(), Some(body))
            .await?
            .json(&format!("PUT {path}"))
    }

    /// `PATCH path` with a JSON body and optional `If-Match`.
    pub async fn patch(
        &self,
        path: &str,
        body: &Value,
        cond: Condition<'_>,
    ) -> Result<Value, Error> {
        self.send_ok("PATCH", path, &[], cond.headers(), Some(body))
            .await?
            .json(&format!("PATCH {path}"))
    }

    /// `POST path` with a JSON body -> JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.send_ok("POST", path, &[], vec![], Some(body))
            .await?
            .json(&format!("POST {path}"))
    }

    /// `DELETE path` with an optional `If-Match`.
    pub async fn delete(&self, path: &str, if_match: Option<&str>) -> Result<(), Error> {
        let cond = if_match.map_or(Condition::None, Condition::IfMatch);
        self.send_ok("DELETE", path, &[], cond.headers(), None)
            .await?;
        Ok(())
    }

    /// `POST path` with `{"query":"*"}`, following `x-ms-continuation` until the last page.
    pub async fn query_all(&self, path: &str) -> Result<Vec<Value>, Error> {
        self.query_pages(path, &json!({ "query": "*" })).await
    }

    /// `POST path` with `body` (a query specification), following `x-ms-continuation` until
    /// the last page; each page is a JSON array.
    pub async fn query_pages(&self, path: &str, body: &Value) -> Result<Vec<Value>, Error> {
        self.query_pages_limit(path, body, None).await
    }

    /// [`Self::query_pages`], stopping once `limit` items arrived (the rest are not read).
    pub async fn query_pages_limit(
        &self,
        path: &str,
        body: &Value,
        limit: Option<usize>,
    ) -> Result<Vec<Value>, Error> {
        let mut items = Vec::new();
        let mut continuation: Option<String> = None;
        let mut seen = HashSet::new();
        let operation = format!("POST {path}");
        loop {
            let mut headers = vec![("x-ms-max-item-count".to_string(), PAGE_SIZE.to_string())];
            if let Some(c) = &continuation {
                headers.push(("x-ms-continuation".to_string(), c.clone()));
            }
            let resp = self.send_ok("POST", path, &[], headers, Some(body)).await?;
            match resp.json(&operation)? {
                Value::Array(page) => items.extend(page),
                other => {
                    return Err(Error::NotAnArray {
                        operation,
                        kind: kind(&other),
                    });
                }
            }
            if let Some(n) = limit.filter(|&n| items.len() >= n) {
                items.truncate(n);
                return Ok(items);
            }
            match resp
                .header("x-ms-continuation")
                .map(str::trim)
                .filter(|c| !c.is_empty())
            {
                None => return Ok(items),
                Some(c) => {
                    if !seen.insert(c.to_string()) {
                        return Err(Error::ContinuationLoop {
                            operation,
                            token: c.to_string(),
                        });
                    }
                    continuation = Some(c.to_string());
                }
            }
        }
    }

    /// `GET path` (a JSON array), following `x-ms-continuation` while the server sends one and
    /// fewer than `limit` items arrived; `top` asks each page for at most the items still wanted
    /// (the server's maximum is `page_max`).
    pub async fn get_pages(
        &self,
        path: &str,
        limit: Option<usize>,
        page_max: usize,
    ) -> Result<Vec<Value>, Error> {
        let mut items = Vec::new();
        let mut continuation: Option<String> = None;
        let mut seen = HashSet::new();
        let operation = format!("GET {path}");
        loop {
            let want = limit.map_or(page_max, |n| (n - items.len()).min(page_max));
            let headers = continuation
                .iter()
                .map(|c| ("x-ms-continuation".to_string(), c.clone()))
                .collect();
            let resp = self
                .send_ok("GET", path, &[("top", want.to_string())], headers, None)
                .await?;
            match resp.json(&operation)? {
                Value::Array(page) => items.extend(page),
                other => {
                    return Err(Error::NotAnArray {
                        operation,
                        kind: kind(&other),
                    });
                }
            }
            if limit.is_some_and(|n| items.len() >= n) {
                return Ok(items);
            }
            match resp
                .header("x-ms-continuation")
                .map(str::trim)
                .filter(|c| !c.is_empty())
            {
                None => return Ok(items),
                Some(c) if !seen.insert(c.to_string()) => {
                    return Err(Error::ContinuationLoop {
                        operation,
                        token: c.to_string(),
                    });
                }
                Some(c) => continuation = Some(c.to_string()),
            }
        }
    }

    /// `GET path` -> `R`.
    pub(crate) async fn get_as<R: DeserializeOwned>(&self, path: &str) -> Result<R, Error> {
        decode(self.get(path, &[]).await?, &format!("GET {path}"))
    }

    /// `GET path` -> `R`, or `None` on 404.
    pub(crate) async fn get_opt_as<R: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<R>, Error> {
        match self.get_opt(path).await? {
            Some(v) => decode(v, &format!("GET {path}")).map(Some),
            None => Ok(None),
        }
    }

    /// `PUT path` with `body` -> `R`.
    pub(crate) async fn put_as<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        cond: Condition<'_>,
    ) -> Result<R, Error> {
        let body = serde_json::to_value(body).map_err(Error::Encode)?;
        decode(self.put(path, &body, cond).await?, &format!("PUT {path}"))
    }

    /// `PATCH path` with `body` -> `R`.
    pub(crate) async fn patch_as<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        cond: Condition<'_>,
    ) -> Result<R, Error> {
        let body = serde_json::to_value(body).map_err(Error::Encode)?;
        decode(
            self.patch(path, &body, cond).await?,
            &format!("PATCH {path}"),
        )
    }

    /// `POST path` with `body` -> `R`.
    pub(crate) async fn post_as<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, Error> {
        let body = serde_json::to_value(body).map_err(Error::Encode)?;
        decode(self.post(path, &body).await?, &format!("POST {path}"))
    }
}

/// A JSON value as `R`; a mismatch is reported like a body that is not JSON.
fn decode<R: DeserializeOwned>(v: Value, operation: &str) -> Result<R, Error> {
    serde_json::from_value(v).map_err(|source| Error::Shape {
        operation: operation.to_string(),
        source,
    })
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

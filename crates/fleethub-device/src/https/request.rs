//! [`HttpsRequest`]: building a request, URL and `host:port` parsing, conversion to hyper.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::Full;
use serde::Serialize;

use super::{DEFAULT_HTTPS_PORT, HttpsError};

/// An HTTPS request. `host` is `host` or `host:port` (default port 443).
#[derive(Debug, Clone)]
pub struct HttpsRequest {
    pub method: Method,
    pub host: String,
    /// Origin-form target, e.g. `/0ne00000A0A/registrations/dev-01/register?api-version=2021-06-01`.
    pub path_and_query: String,
    /// Extra headers; `Host` and `User-Agent` are added when absent.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl HttpsRequest {
    /// Parses `https://host[:port]/path?query`, `host[:port]/path?query` or `host[:port]`.
    pub fn new(method: Method, url: &str) -> Result<Self, HttpsError> {
        let (host, path_and_query) = split_url(url)?;
        Ok(Self::from_parts(method, host, path_and_query))
    }

    /// A request from an already split host (`host` or `host:port`) and origin-form target.
    pub fn from_parts(
        method: Method,
        host: impl Into<String>,
        path_and_query: impl Into<String>,
    ) -> Self {
        let mut path_and_query = path_and_query.into();
        if !path_and_query.starts_with('/') {
            path_and_query.insert(0, '/');
        }
        HttpsRequest {
            method,
            host: host.into(),
            path_and_query,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(url: &str) -> Result<Self, HttpsError> {
        Self::new(Method::GET, url)
    }

    pub fn put(url: &str) -> Result<Self, HttpsError> {
        Self::new(Method::PUT, url)
    }

    pub fn post(url: &str) -> Result<Self, HttpsError> {
        Self::new(Method::POST, url)
    }

    pub fn delete(url: &str) -> Result<Self, HttpsError> {
        Self::new(Method::DELETE, url)
    }

    /// Adds a header (validated when sent).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body and `Content-Type: application/json; charset=utf-8` (unless a
    /// content type was already given).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, HttpsError> {
        self.body = Some(serde_json::to_vec(value).map_err(HttpsError::Serialize)?);
        if !self.has_header(CONTENT_TYPE.as_str()) {
            self = self.header("Content-Type", "application/json; charset=utf-8");
        }
        Ok(self)
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    pub(super) fn to_hyper(&self, port: u16) -> Result<Request<Full<Bytes>>, HttpsError> {
        let uri: Uri = self
            .path_and_query
            .parse()
            .map_err(|e: http::uri::InvalidUri| HttpsError::InvalidUrl {
                url: self.path_and_query.clone(),
                reason: e.to_string(),
            })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let invalid = |reason: String| HttpsError::InvalidHeader {
                name: name.clone(),
                reason,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let v = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
            headers.append(n, v);
        }
        if !headers.contains_key(HOST) {
            let host = if port == DEFAULT_HTTPS_PORT {
                host_only(&self.host).to_string()
            } else {
                self.host.clone()
            };
            let v = HeaderValue::from_str(&host).map_err(|e| HttpsError::InvalidHeader {
                name: "Host".into(),
                reason: e.to_string(),
            })?;
            headers.insert(HOST, v);
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static(crate::USER_AGENT));
        }
        let body = Full::new(Bytes::from(self.body.clone().unwrap_or_default()));
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Ok(req)
    }
}

/// Splits a URL (scheme optional, `https` only) into (`host[:port]`, path-and-query).
fn split_url(url: &str) -> Result<(String, String), HttpsError> {
    let invalid = |reason: &str| HttpsError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some(_) => return Err(invalid("only https:// URLs are supported")),
        None => url,
    };
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    if host.contains('@') {
        return Err(invalid("user info in URLs is not supported"));
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    split_host_port(host).map_err(|e| invalid(&e))?;
    Ok((host.to_string(), path))
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; the host keeps no brackets.
pub fn split_host_port(host: &str) -> Result<(&str, u16), String> {
    if let Some(rest) = host.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unterminated '[' in host")?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((h, parse_port(p)?)),
            None if after.is_empty() => Ok((h, DEFAULT_HTTPS_PORT)),
            None => Err("junk after ']' in host".into()),
        };
    }
    match host.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => Ok((host, DEFAULT_HTTPS_PORT)), // bare IPv6
        Some((h, p)) if !h.is_empty() => Ok((h, parse_port(p)?)),
        Some(_) => Err("missing host".into()),
        None if host.is_empty() => Err("missing host".into()),
        None => Ok((host, DEFAULT_HTTPS_PORT)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port '{p}'")),
        Ok(port) => Ok(port),
    }
}

pub(super) fn host_only(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(_) => host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]),
        None => host.split(':').next().unwrap_or(host),
    }
}

//! A scripted transport: answers from a closure and records every request.

use crate::client::{Request, Response, ServiceClient, Transport};
use crate::settings::Endpoint;
use anyhow::Result;
use fleethub_service_client::TransportError;
use serde_json::Value;
use std::future::Future;
use std::sync::Mutex;

type Handler = Box<dyn Fn(&Request) -> Result<Response> + Send + Sync>;

pub(crate) struct Fake {
    handler: Handler,
    pub requests: Mutex<Vec<Request>>,
}

impl Transport for Fake {
    fn send(
        &self,
        req: Request,
    ) -> impl Future<Output = std::result::Result<Response, TransportError>> + Send {
        let resp = (self.handler)(&req).map_err(Into::into);
        self.requests.lock().unwrap().push(req);
        std::future::ready(resp)
    }
}

/// Group key of the protocol test vectors (bytes 0..31).
pub(crate) const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub(crate) fn endpoint() -> Endpoint {
    Endpoint {
        host_name: "dps.fleethub.test".into(),
        key_name: "provisioningserviceowner".into(),
        key: KEY.into(),
        dial: "127.0.0.1:8443".into(),
        ca_cert: None,
        origin: "--dps-connection-string".into(),
    }
}

pub(crate) fn client(
    handler: impl Fn(&Request) -> Result<Response> + Send + Sync + 'static,
) -> ServiceClient<Fake> {
    ServiceClient::new(
        Fake {
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
        },
        endpoint(),
    )
    .with_clock(|| 1_700_000_000)
}

#[allow(
    clippy::needless_pass_by_value,
    clippy::unnecessary_wraps,
    reason = "responders are written inline as the fake transport's return value"
)]
pub(crate) fn json(status: u16, body: Value) -> Result<Response> {
    Ok(Response {
        status,
        headers: vec![],
        body: serde_json::to_vec(&body).unwrap(),
    })
}

pub(crate) fn page(body: Value, continuation: Option<&str>) -> Result<Response> {
    let mut r = json(200, body)?;
    if let Some(c) = continuation {
        r.headers.push(("x-ms-continuation".into(), c.into()));
    }
    Ok(r)
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "responders are written inline as the fake transport's return value"
)]
pub(crate) fn empty(status: u16) -> Result<Response> {
    Ok(Response {
        status,
        headers: vec![],
        body: vec![],
    })
}

pub(crate) fn not_found(what: &str) -> Result<Response> {
    json(
        404,
        serde_json::json!({
            "Message": format!("ErrorCode:DeviceNotFound;{what} not found"),
            "ExceptionMessage": "Tracking ID:abc-TimeStamp:2024-01-01T00:00:00Z",
            "errorCode": 404201,
        }),
    )
}

/// Path without the query string.
pub(crate) fn path(req: &Request) -> &str {
    req.path_and_query.split('?').next().unwrap_or("")
}

pub(crate) fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn body(req: &Request) -> Value {
    serde_json::from_slice(req.body.as_deref().unwrap_or(b"null")).unwrap()
}

/// A hub service client (api-version 2021-04-12, policy iothubowner) over the scripted
/// transport.
pub(crate) fn hub_client(
    handler: impl Fn(&Request) -> Result<Response> + Send + Sync + 'static,
) -> ServiceClient<Fake> {
    ServiceClient::new(
        Fake {
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
        },
        Endpoint {
            host_name: "hub.fleethub.test".into(),
            key_name: "iothubowner".into(),
            origin: "--hub-connection-string".into(),
            ..endpoint()
        },
    )
    .with_clock(|| 1_700_000_000)
    .with_api_version(crate::client::HUB_API_VERSION)
}

//! Shared fixture of the integration tests: the router over a real SQLite store, real `Dps` and
//! `Hub`, real SAS tokens.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use fleethub_core::sas;
use fleethub_http::{HttpState, router};
use fleethub_services::policies::{default_dps_policies, default_hub_policies};
use fleethub_services::{Clock, Dps, DpsConfig, Hub, HubConfig, ServiceAuth, Shared};
use fleethub_store::sqlite::SqliteStore;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

pub const SCOPE: &str = "0ne0000ABCD";
pub const HUB: &str = "hub.fleethub.test";
pub const DPS_HOST: &str = "dps.fleethub.test";
pub const RETRY_AFTER: u32 = 3;

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub app: Router,
    pub hub: Arc<Hub>,
    pub dps_auth: Arc<ServiceAuth>,
    pub hub_auth: Arc<ServiceAuth>,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let shared = Shared::new(store);
    let log = shared.auth_failures.clone();
    let hub_policies = default_hub_policies();
    let hub = Arc::new(Hub::new(
        &shared,
        HubConfig {
            host: HUB.into(),
            token_skew_secs: 30,
        },
        hub_policies.clone(),
    ));
    let dps = Arc::new(Dps::new(
        &shared,
        DpsConfig {
            id_scope: SCOPE.into(),
            linked_hubs: vec![HUB.into()],
            token_skew_secs: 30,
            retry_after_secs: RETRY_AFTER,
        },
    ));
    let dps_auth = Arc::new(ServiceAuth::new(
        "dps-service",
        DPS_HOST.into(),
        default_dps_policies(),
        log.clone(),
    ));
    let hub_auth = Arc::new(ServiceAuth::new(
        "hub-service",
        HUB.into(),
        hub_policies,
        log.clone(),
    ));
    let app = router(HttpState {
        dps,
        hub: hub.clone(),
        dps_service_auth: dps_auth.clone(),
        hub_service_auth: hub_auth.clone(),
        auth_failures: log,
    });
    Fixture {
        _dir: dir,
        app,
        hub,
        dps_auth,
        hub_auth,
    }
}

pub fn policy_token(auth: &ServiceAuth, host: &str, policy: &str) -> String {
    let p = auth
        .policies()
        .iter()
        .find(|p| p.key_name == policy)
        .unwrap();
    sas::build_token(host, &p.primary_key, unix_now() + 3600, Some(policy)).unwrap()
}

pub fn device_token(reg: &str, key: &str) -> String {
    sas::build_token(
        &format!("{SCOPE}/registrations/{reg}"),
        key,
        unix_now() + 3600,
        Some("registration"),
    )
    .unwrap()
}

/// A hub device-plane token for `{HUB}/devices/{device}`, signed with the device key.
pub fn hub_device_token(device: &str, key: &str) -> String {
    sas::build_token(
        &format!("{HUB}/devices/{device}"),
        key,
        unix_now() + 3600,
        None,
    )
    .unwrap()
}

/// A response whose body is not (necessarily) JSON.
pub struct RawResp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Fixture {
    pub fn owner(&self) -> String {
        policy_token(&self.dps_auth, DPS_HOST, "provisioningserviceowner")
    }

    /// A hub service API call signed with the hub policy `policy`.
    pub async fn hub_as(
        &self,
        policy: &str,
        method: Method,
        uri: &str,
        extra: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let token = policy_token(&self.hub_auth, HUB, policy);
        let mut headers = vec![
            ("authorization", token.as_str()),
            ("content-type", "application/json; charset=utf-8"),
        ];
        headers.extend_from_slice(extra);
        self.call(method, uri, &headers, body).await
    }

    /// A hub service API call with the `iothubowner` policy.
    pub async fn hub_svc(
        &self,
        method: Method,
        uri: &str,
        extra: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        self.hub_as("iothubowner", method, uri, extra, body).await
    }

    /// Creates a hub device with generated keys; returns its primary key.
    pub async fn hub_device(&self, id: &str) -> String {
        let r = self
            .hub_svc(
                Method::PUT,
                &format!("/devices/{id}?api-version=2021-04-12"),
                &[],
                serde_json::json!({"deviceId": id, "authentication": {"symmetricKey": {}}})
                    .to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A request whose answer is returned as bytes (no content-type checks).
    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> RawResp {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        RawResp {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status} body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        if !bytes.is_empty() {
            assert_eq!(
                headers.get("content-type").unwrap(),
                "application/json; charset=utf-8",
                "{status} {json}"
            );
        }
        Resp {
            status,
            headers,
            json,
        }
    }

    /// A DPS service API call with the owner policy.
    pub async fn svc(
        &self,
        method: Method,
        uri: &str,
        extra: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let token = self.owner();
        let mut headers = vec![
            ("authorization", token.as_str()),
            ("content-type", "application/json; charset=utf-8"),
        ];
        headers.extend_from_slice(extra);
        self.call(method, uri, &headers, body).await
    }
}

pub fn header<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

/// The hub-style error body of the service API.
pub fn assert_hub_error(r: &Resp, status: u16, name: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.json);
    let msg = r.json["Message"].as_str().unwrap_or_default();
    assert!(msg.starts_with(&format!("ErrorCode:{name};")), "{}", r.json);
    assert!(
        r.json["errorCode"].as_u64().unwrap() / 1000 == u64::from(status),
        "{}",
        r.json
    );
    assert!(r.json["trackingId"].is_string() && r.json["timestampUtc"].is_string());
    assert_eq!(header(r, "iothub-errorcode"), Some(name));
}

/// The DPS error body of the device API.
pub fn assert_dps_error(r: &Resp, status: u16) {
    assert_eq!(r.status.as_u16(), status, "{}", r.json);
    let code = r.json["errorCode"].as_u64().unwrap();
    assert_eq!(code / 1000, u64::from(status), "{}", r.json);
    assert!(
        r.json["trackingId"].is_string()
            && r.json["timestampUtc"].is_string()
            && r.json["message"].is_string()
    );
    assert_eq!(
        header(r, "x-ms-error-code"),
        Some(code.to_string().as_str())
    );
}

/// Current unix time in seconds.
pub fn unix_now() -> u64 {
    Clock::system().unix()
}

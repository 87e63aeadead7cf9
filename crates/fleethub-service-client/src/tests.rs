//! The client against a scripted transport: what goes on the wire, what comes back.

use crate::{
    Condition, Credentials, Error, HUB_API_VERSION, Request, Response, ServiceClient, Transport,
    TransportError,
};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Mutex;

type Handler = Box<dyn Fn(&Request) -> Result<Response, TransportError> + Send + Sync>;

struct Script {
    handler: Handler,
    requests: Mutex<Vec<Request>>,
}

impl Transport for Script {
    fn send(&self, req: Request) -> impl Future<Output = Result<Response, TransportError>> + Send {
        let resp = (self.handler)(&req);
        self.requests.lock().unwrap().push(req);
        std::future::ready(resp)
    }
}

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn creds() -> Credentials {
    Credentials::from_connection_string(&format!(
        "HostName=hub.fleethub.test;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
    ))
    .unwrap()
}

fn hub(
    handler: impl Fn(&Request) -> Result<Response, TransportError> + Send + Sync + 'static,
) -> ServiceClient<Script> {
    ServiceClient::hub(
        Script {
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
        },
        creds(),
    )
    .with_clock(|| 1_700_000_000)
}

#[allow(
    clippy::needless_pass_by_value,
    clippy::unnecessary_wraps,
    reason = "responders are written inline as the fake transport's return value"
)]
fn json_resp(status: u16, body: Value) -> Result<Response, TransportError> {
    Ok(Response {
        status,
        headers: vec![],
        body: serde_json::to_vec(&body).unwrap(),
    })
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn credentials_need_a_policy_and_a_key() {
    let e = Credentials::from_connection_string("HostName=h;SharedAccessKey=AAAA").unwrap_err();
    assert!(
        matches!(e, Error::MissingField("SharedAccessKeyName")),
        "{e}"
    );
    let e = Credentials::from_connection_string("HostName=h;SharedAccessKeyName=p").unwrap_err();
    assert!(matches!(e, Error::MissingField("SharedAccessKey")), "{e}");
    assert!(matches!(
        Credentials::from_connection_string("nonsense"),
        Err(Error::ConnectionString(_))
    ));
    // The key never shows in Debug output.
    assert!(!format!("{:?}", creds()).contains(KEY));
}

#[tokio::test]
async fn requests_carry_sas_api_version_and_azure_headers() {
    let c = hub(|_| json_resp(200, json!({"deviceId": "d 1", "etag": "e1"})));
    let device = c.get_device("d 1").await.unwrap();
    assert_eq!(device.device_id, "d 1");
    let reqs = c.transport().requests.lock().unwrap();
    let r = &reqs[0];
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.path_and_query,
        format!("/devices/d%201?api-version={HUB_API_VERSION}")
    );
    let auth = header(r, "Authorization").unwrap();
    let token = fleethub_core::sas::SasToken::parse(auth).unwrap();
    assert!(token.covers("hub.fleethub.test"));
    assert!(token.verify_signature(KEY).unwrap());
    assert_eq!(token.expiry, 1_700_000_000 + crate::TOKEN_TTL_SECS);
    assert!(auth.ends_with("&skn=iothubowner"), "{auth}");
    assert_eq!(header(r, "Accept"), Some("application/json"));
    assert!(header(r, "Request-Id").is_some());
    assert!(
        header(r, "User-Agent")
            .unwrap()
            .starts_with("fleethub-service-client/")
    );
}

#[tokio::test]
async fn azure_error_body_becomes_a_typed_error() {
    let c = hub(|_| {
        json_resp(
            404,
            json!({"Message": "ErrorCode:DeviceNotFound;Device d1 not found", "ExceptionMessage": "x", "errorCode": 404001}),
        )
    });
    let e = c.get_twin("d1", None).await.unwrap_err();
    let se = e.service().unwrap();
    assert_eq!(se.status, 404);
    assert_eq!(se.code.as_deref(), Some("DeviceNotFound"));
    assert_eq!(se.message, "Device d1 not found");
    assert_eq!(se.operation, "GET /twins/d1");
    assert_eq!(
        e.to_string(),
        "GET /twins/d1 failed: 404 Not Found (DeviceNotFound): Device d1 not found"
    );
}

#[tokio::test]
async fn preconditions_become_headers() {
    let c = hub(|_| json_resp(200, json!({"deviceId": "d1"})));
    let device = fleethub_api::Device {
        device_id: "d1".into(),
        ..Default::default()
    };
    c.put_device(&device, Condition::MustNotExist)
        .await
        .unwrap();
    c.put_device(&device, Condition::IfMatch("\"e\""))
        .await
        .unwrap();
    c.delete_device("d1", None).await.unwrap();
    let reqs = c.transport().requests.lock().unwrap();
    assert_eq!(header(&reqs[0], "If-None-Match"), Some("*"));
    assert_eq!(header(&reqs[1], "If-Match"), Some("\"e\""));
    assert_eq!(header(&reqs[2], "If-Match"), None);
    assert_eq!(
        header(&reqs[0], "Content-Type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(reqs[2].body, None);
}

#[tokio::test]
async fn queries_follow_continuation_tokens() {
    let c = hub(|req| {
        let mut r = match header(req, "x-ms-continuation") {
            None => json_resp(200, json!([{"deviceId": "a"}]))?,
            Some("p2") => json_resp(200, json!([{"deviceId": "b"}]))?,
            Some(other) => panic!("unexpected continuation {other}"),
        };
        if header(req, "x-ms-continuation").is_none() {
            r.headers.push(("x-ms-continuation".into(), "p2".into()));
        }
        Ok(r)
    });
    let items = c
        .query_devices("SELECT * FROM devices WHERE tags.env = 'prod'")
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    let reqs = c.transport().requests.lock().unwrap();
    assert_eq!(reqs.len(), 2);
    assert_eq!(header(&reqs[0], "x-ms-max-item-count"), Some("100"));
    let body: Value = serde_json::from_slice(reqs[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body["query"],
        "SELECT * FROM devices WHERE tags.env = 'prod'"
    );
}

#[tokio::test]
async fn a_repeated_continuation_token_stops_paging() {
    let c = hub(|_| {
        let mut r = json_resp(200, json!([]))?;
        r.headers.push(("x-ms-continuation".into(), "same".into()));
        Ok(r)
    });
    let e = c.query_all("/devices/query").await.unwrap_err();
    assert!(matches!(e, Error::ContinuationLoop { .. }), "{e}");
}

#[tokio::test]
async fn bulk_item_errors_are_a_result_not_an_error() {
    let c = hub(|_| {
        json_resp(
            400,
            json!({"isSuccessful": false, "errors": [{"deviceId": "d1", "errorCode": "DeviceAlreadyExists", "errorStatus": "exists", "operation": "create"}], "warnings": []}),
        )
    });
    let items = crate::hub::bulk_create_items(&["d1".into()], KEY, KEY);
    let r = c.bulk_devices(&items).await.unwrap();
    assert!(!r.is_successful);
    assert_eq!(r.errors[0].error_code, "DeviceAlreadyExists");

    let c = hub(|_| {
        json_resp(
            400,
            json!({"Message": "ErrorCode:ArgumentInvalid;too many"}),
        )
    });
    let e = c.bulk_devices(&items).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
}

#[tokio::test]
async fn transport_and_body_failures_are_typed() {
    let c = hub(|_| Err("connection refused".into()));
    let e = c.device_statistics().await.unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e}");

    let c = hub(|_| {
        Ok(Response {
            status: 200,
            headers: vec![],
            body: b"not json".to_vec(),
        })
    });
    let e = c.service_statistics().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "GET /statistics/service: the server answered 200 with a body that is not JSON"
    );
}

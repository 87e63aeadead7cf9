//! The IoT Hub service REST API end to end through the router: real SQLite store, real `Hub`,
//! real SAS tokens, requests shaped as the Python and Node service SDKs send them.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::*;
use fleethub_core::keys;
use fleethub_services::hub::{Features, HubEvent};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const API: &str = "api-version=2021-04-12";

/// What Node's `Registry.create({deviceId})` PUTs (empty keys).
fn node_device(id: &str) -> String {
    json!({"deviceId": id, "status": "enabled", "authentication": {
        "symmetricKey": {"primaryKey": "", "secondaryKey": ""},
        "x509Thumbprint": {"primaryThumbprint": "", "secondaryThumbprint": ""}}})
    .to_string()
}

/// What Python's `create_device_with_sas(id, None, None, "enabled", iot_edge)` PUTs.
fn python_device(id: &str, iot_edge: bool) -> String {
    json!({"deviceId": id, "status": "enabled",
           "authentication": {"symmetricKey": {}, "type": "sas"},
           "capabilities": {"iotEdge": iot_edge}})
    .to_string()
}

impl Fixture {
    async fn create(&self, id: &str, iot_edge: bool) -> Value {
        let r = self
            .hub_svc(
                Method::PUT,
                &format!("/devices/{id}?{API}"),
                &[],
                python_device(id, iot_edge),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json
    }

    async fn query(&self, q: &str, extra: &[(&str, &str)]) -> Resp {
        self.hub_svc(
            Method::POST,
            &format!("/devices/query?{API}"),
            extra,
            json!({ "query": q }).to_string(),
        )
        .await
    }

    async fn query_ids(&self, q: &str) -> Vec<String> {
        let r = self.query(q, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.json);
        assert_eq!(header(&r, "x-ms-item-type"), Some("twin"));
        ids(&r.json)
    }
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn device_create_conflict_update_list_delete() {
    let f = fixture();
    let uri = format!("/devices/dev-01?{API}");
    let created = f
        .hub_svc(Method::PUT, &uri, &[], node_device("dev-01"))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    let d = &created.json;
    assert_eq!(d["deviceId"], "dev-01");
    assert_eq!(d["status"], "enabled");
    assert_eq!(d["connectionState"], "Disconnected");
    assert_eq!(d["authentication"]["type"], "sas");
    for k in ["primaryKey", "secondaryKey"] {
        let key = d["authentication"]["symmetricKey"][k].as_str().unwrap();
        assert!(keys::decode_key(key).is_ok(), "{k}: {key}");
    }
    let etag = d["etag"].as_str().unwrap().to_string();

    // Python's `symmetricKey: {}`, and a PUT body without deviceId
    let r = f
        .hub_svc(
            Method::PUT,
            "/devices/dev-02",
            &[],
            r#"{"authentication":{"symmetricKey":{}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["authentication"]["symmetricKey"]["primaryKey"].is_string());

    // create again (no If-Match): DeviceAlreadyExists in the `ErrorCode:` form Node parses
    let again = f
        .hub_svc(Method::PUT, &uri, &[], node_device("dev-01"))
        .await;
    assert_hub_error(&again, 409, "DeviceAlreadyExists");
    assert_eq!(again.json["errorCode"], 409001);

    let mut changed = d.clone();
    changed["status"] = json!("disabled");
    let stale = f
        .hub_svc(
            Method::PUT,
            &uri,
            &[("if-match", "\"not-the-etag\"")],
            changed.to_string(),
        )
        .await;
    assert_hub_error(&stale, 412, "PreconditionFailed");
    assert_eq!(stale.json["errorCode"], 412002);

    let quoted = format!("\"{etag}\"");
    let updated = f
        .hub_svc(
            Method::PUT,
            &uri,
            &[("if-match", &quoted)],
            changed.to_string(),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.json);
    assert_eq!(updated.json["status"], "disabled");
    assert_eq!(
        updated.json["authentication"]["symmetricKey"], d["authentication"]["symmetricKey"],
        "keys sent back are kept"
    );
    assert_ne!(updated.json["etag"], etag.as_str());

    let got = f.hub_svc(Method::GET, &uri, &[], Body::empty()).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json["status"], "disabled");

    // Node lists with a trailing slash, Python with ?top=N
    let all = f
        .hub_svc(Method::GET, &format!("/devices/?{API}"), &[], Body::empty())
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.json);
    assert_eq!(ids(&all.json), ["dev-01", "dev-02"]);
    let top = f
        .hub_svc(
            Method::GET,
            &format!("/devices?top=1&{API}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(ids(&top.json), ["dev-01"]);

    let stale = f
        .hub_svc(
            Method::DELETE,
            &uri,
            &[("if-match", "\"nope\"")],
            Body::empty(),
        )
        .await;
    assert_hub_error(&stale, 412, "PreconditionFailed");
    let deleted = f
        .hub_svc(
            Method::DELETE,
            &uri,
            &[("if-match", "\"*\"")],
            Body::empty(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = f.hub_svc(Method::GET, &uri, &[], Body::empty()).await;
    assert_hub_error(&gone, 404, "DeviceNotFound");
    assert_eq!(gone.json["errorCode"], 404001);
    let gone = f.hub_svc(Method::DELETE, &uri, &[], Body::empty()).await;
    assert_hub_error(&gone, 404, "DeviceNotFound");

    let mismatch = f
        .hub_svc(Method::PUT, "/devices/dev-03", &[], node_device("other"))
        .await;
    assert_hub_error(&mismatch, 400, "ArgumentInvalid");
    let not_json = f
        .hub_svc(Method::PUT, "/devices/dev-03", &[], "{\"deviceId\":")
        .await;
    assert_hub_error(&not_json, 400, "ArgumentInvalid");
}

#[tokio::test]
async fn twin_patch_with_etag_then_query_by_tag() {
    let f = fixture();
    f.create("dev-a", false).await;
    f.create("dev-b", false).await;
    let twin = f
        .hub_svc(Method::GET, "/twins/dev-a", &[], Body::empty())
        .await;
    assert_eq!(twin.status, StatusCode::OK, "{}", twin.json);
    assert_eq!(twin.json["deviceId"], "dev-a");
    assert_eq!(twin.json["connectionState"], "Disconnected");
    assert_eq!(twin.json["status"], "enabled");
    assert!(twin.json["properties"]["desired"]["$version"].is_number());
    let etag = twin.json["etag"].as_str().unwrap().to_string();

    let patch =
        json!({"tags": {"environment": "test"}, "properties": {"desired": {"interval": 5}}});
    let stale = f
        .hub_svc(
            Method::PATCH,
            "/twins/dev-a",
            &[("if-match", "\"AAAAAAAAAAk=\"")],
            patch.to_string(),
        )
        .await;
    assert_hub_error(&stale, 412, "PreconditionFailed");
    let patched = f
        .hub_svc(
            Method::PATCH,
            &format!("/twins/dev-a?{API}"),
            &[("if-match", &format!("\"{etag}\""))],
            patch.to_string(),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    assert_eq!(patched.json["tags"]["environment"], "test");
    assert_eq!(patched.json["properties"]["desired"]["interval"], 5);
    assert_eq!(patched.json["connectionState"], "Disconnected");
    assert!(patched.json["deviceEtag"].is_string());
    assert_ne!(patched.json["etag"], etag.as_str());
    assert!(patched.json["version"].as_u64().unwrap() > twin.json["version"].as_u64().unwrap());

    assert_eq!(
        f.query_ids("SELECT * FROM devices WHERE tags.environment = 'test'")
            .await,
        ["dev-a"]
    );
    assert!(
        f.query_ids("SELECT * FROM devices WHERE tags.environment = 'prod'")
            .await
            .is_empty()
    );
    assert_eq!(
        f.query_ids(
            "select * from devices where properties.desired.interval >= 5 and status = 'enabled'"
        )
        .await,
        ["dev-a"]
    );
    assert_eq!(
        f.query_ids("SELECT * FROM devices").await,
        ["dev-a", "dev-b"]
    );
    let r = f
        .query("SELECT * FROM devices WHERE tags.environment = 'test'", &[])
        .await;
    assert_eq!(r.json[0]["tags"]["environment"], "test");
    assert!(r.headers.get("x-ms-continuation").is_none());

    // PUT replaces tags and desired properties
    let replaced = f
        .hub_svc(
            Method::PUT,
            "/twins/dev-a",
            &[],
            json!({"tags": {"site": "b"}, "properties": {"desired": {"mode": "eco"}}}).to_string(),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.json);
    assert_eq!(replaced.json["tags"], json!({"site": "b"}));
    assert_eq!(replaced.json["properties"]["desired"]["mode"], "eco");
    assert!(
        replaced.json["properties"]["desired"]
            .get("interval")
            .is_none()
    );

    for bad in ["{\"tags\":", "[]", r#"{"tags": "x"}"#] {
        let r = f.hub_svc(Method::PATCH, "/twins/dev-a", &[], bad).await;
        assert_hub_error(&r, 400, "ArgumentInvalid");
    }
    // Azure's per-section limits: depth 10, tags 8 KB, desired 32 KB (400 ArgumentInvalid)
    let mut deep = json!({"leaf": 1});
    for i in 0..11 {
        deep = json!({ format!("l{i}"): deep });
    }
    let big = |n: usize| json!({ "k": "x".repeat(n) });
    for body in [
        json!({"tags": deep}),
        json!({"properties": {"desired": deep}}),
        json!({"tags": big(8 * 1024)}),
        json!({"properties": {"desired": big(32 * 1024)}}),
    ] {
        for method in [Method::PATCH, Method::PUT] {
            let r = f
                .hub_svc(method.clone(), "/twins/dev-a", &[], body.to_string())
                .await;
            assert_hub_error(&r, 400, "ArgumentInvalid");
        }
    }
    let r = f
        .hub_svc(Method::GET, "/twins/nobody", &[], Body::empty())
        .await;
    assert_hub_error(&r, 404, "DeviceNotFound");
    let r = f
        .hub_svc(Method::PATCH, "/twins/nobody", &[], r#"{"tags":{}}"#)
        .await;
    assert_hub_error(&r, 404, "DeviceNotFound");
}

#[tokio::test]
async fn query_by_capability_pages_and_rejects_unknown_syntax() {
    let f = fixture();
    for i in 0..7 {
        f.create(&format!("dev-{i}"), i % 2 == 0).await;
    }
    let edge = f
        .query_ids("SELECT * FROM devices WHERE capabilities.iotEdge = true")
        .await;
    assert_eq!(edge, ["dev-0", "dev-2", "dev-4", "dev-6"]);
    let leaf = f
        .query_ids("SELECT * FROM devices WHERE capabilities.iotEdge = false OR deviceId = 'dev-0'")
        .await;
    assert_eq!(leaf, ["dev-0", "dev-1", "dev-3", "dev-5"]);

    // pages of 3 over the 4 edge devices: continuation only while more exist, nothing lost
    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut h = vec![("x-ms-max-item-count", "3")];
        if let Some(c) = &continuation {
            h.push(("x-ms-continuation", c.as_str()));
        }
        let r = f
            .query(
                "SELECT * FROM devices WHERE capabilities.iotEdge = true",
                &h,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        pages += 1;
        seen.extend(ids(&r.json));
        continuation = header(&r, "x-ms-continuation").map(str::to_string);
        match &continuation {
            Some(c) => assert!(!c.is_empty()),
            None => break,
        }
        assert!(pages < 5, "too many pages");
    }
    assert_eq!(seen, ["dev-0", "dev-2", "dev-4", "dev-6"]);
    assert!(pages <= 3, "{pages}");

    for (q, needle) in [
        ("SELECT * FROM devices.jobs", "devices.jobs"),
        ("SELECT * FROM devices ORDER BY deviceId", "ORDER BY"),
        ("SELECT * FROM devices WHERE tags.x ~ 1", "~"),
        ("SELECT * FROM devices WHERE", "ends"),
    ] {
        let r = f.query(q, &[]).await;
        assert_hub_error(&r, 400, "ArgumentInvalid");
        let msg = r.json["Message"].as_str().unwrap();
        assert!(msg.contains(needle), "{q}: {msg}");
    }
    let r = f
        .query(
            "SELECT * FROM devices",
            &[("x-ms-continuation", "not-a-continuation")],
        )
        .await;
    assert_hub_error(&r, 400, "ArgumentInvalid");
}

#[tokio::test]
async fn direct_methods_offline_online_and_timeout() {
    let f = fixture();
    f.create("dev-m", false).await;
    let call = json!({"methodName": "reboot", "payload": "", "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 0});
    let offline = f
        .hub_svc(
            Method::POST,
            &format!("/twins/dev-m/methods?{API}"),
            &[],
            call.to_string(),
        )
        .await;
    assert_hub_error(&offline, 404, "DeviceNotOnline");
    assert_eq!(offline.json["errorCode"], 404103);
    let unknown = f
        .hub_svc(Method::POST, "/twins/nobody/methods", &[], call.to_string())
        .await;
    assert_hub_error(&unknown, 404, "DeviceNotFound");
    let bad = f
        .hub_svc(
            Method::POST,
            "/twins/dev-m/methods",
            &[],
            r#"{"payload": 1}"#,
        )
        .await;
    assert_hub_error(&bad, 400, "ArgumentInvalid");

    // a connected device subscribed to methods answers
    let mut rx = f.hub.attach("dev-m", None, 1);
    f.hub.set_features(
        "dev-m",
        None,
        1,
        Features {
            methods: true,
            ..Default::default()
        },
    );
    let hub = f.hub.clone();
    let device = tokio::spawn(async move {
        let mut names = Vec::new();
        while let Some(ev) = rx.recv().await {
            if let HubEvent::MethodRequest(call) = ev {
                let fleethub_services::hub::MethodCall { rid, name, payload } = *call;
                let answered = name == "reboot";
                names.push((name, String::from_utf8(payload).unwrap()));
                if answered {
                    hub.method_response(&rid, 201, br#"{"rebooting":true}"#);
                } else {
                    return names; // "hang" is never answered
                }
            }
        }
        names
    });
    let stats = f
        .hub_svc(Method::GET, "/statistics/service", &[], Body::empty())
        .await;
    assert_eq!(stats.json, json!({"connectedDeviceCount": 1}));
    let twin = f
        .hub_svc(Method::GET, "/twins/dev-m", &[], Body::empty())
        .await;
    assert_eq!(twin.json["connectionState"], "Connected");

    let ok = f
        .hub_as(
            "service",
            Method::POST,
            "/twins/dev-m/methods",
            &[],
            call.to_string(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    assert_eq!(
        ok.json,
        json!({"status": 201, "payload": {"rebooting": true}})
    );

    let hang = json!({"methodName": "hang", "payload": {"a": 1}, "responseTimeoutInSeconds": 5});
    let timeout = f
        .hub_svc(Method::POST, "/twins/dev-m/methods", &[], hang.to_string())
        .await;
    assert_hub_error(&timeout, 504, "GatewayTimeout");
    assert_eq!(timeout.json["errorCode"], 504101);
    let names = device.await.unwrap();
    assert_eq!(
        names,
        [
            ("reboot".to_string(), "\"\"".to_string()),
            ("hang".to_string(), r#"{"a":1}"#.to_string())
        ]
    );
}

#[tokio::test]
async fn registry_statistics() {
    let f = fixture();
    f.create("s-1", false).await;
    f.create("s-2", false).await;
    let r = f
        .hub_svc(
            Method::PUT,
            "/devices/s-3",
            &[],
            json!({"deviceId": "s-3", "status": "disabled"}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let stats = f
        .hub_as(
            "registryRead",
            Method::GET,
            &format!("/statistics/devices?{API}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.json);
    assert_eq!(
        stats.json,
        json!({"totalDeviceCount": 3, "enabledDeviceCount": 2, "disabledDeviceCount": 1})
    );
    let service = f
        .hub_svc(Method::GET, "/Statistics/Service", &[], Body::empty())
        .await;
    assert_eq!(service.json, json!({"connectedDeviceCount": 0}));
}

#[tokio::test]
async fn unauthorized_and_forbidden() {
    let f = fixture();
    let r = f
        .call(
            Method::GET,
            &format!("/devices/x?{API}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");
    assert_eq!(
        r.json["Message"],
        "ErrorCode:IotHubUnauthorizedAccess;Unauthorized"
    );
    // a DPS token is not a hub token
    let dps = f.owner();
    let r = f
        .call(
            Method::GET,
            "/devices",
            &[("authorization", &dps)],
            Body::empty(),
        )
        .await;
    assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");

    let r = f
        .hub_as(
            "registryRead",
            Method::PUT,
            "/devices/x",
            &[],
            node_device("x"),
        )
        .await;
    assert_hub_error(&r, 403, "Forbidden");
    let r = f
        .hub_as("service", Method::PUT, "/devices/x", &[], node_device("x"))
        .await;
    assert_hub_error(&r, 403, "Forbidden");
    let r = f
        .hub_as("device", Method::GET, "/devices", &[], Body::empty())
        .await;
    assert_hub_error(&r, 403, "Forbidden");
    let r = f
        .hub_as(
            "registryRead",
            Method::POST,
            "/twins/x/methods",
            &[],
            r#"{"methodName":"m"}"#,
        )
        .await;
    assert_hub_error(&r, 403, "Forbidden");

    // registryRead reads, service (ServiceConnect) reads and writes twins
    f.create("x", false).await;
    let r = f
        .hub_as(
            "registryRead",
            Method::GET,
            "/devices/x",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = f
        .hub_as(
            "registryRead",
            Method::PATCH,
            "/twins/x",
            &[],
            r#"{"tags":{"a":1}}"#,
        )
        .await;
    assert_hub_error(&r, 403, "Forbidden");
    let r = f
        .hub_as(
            "service",
            Method::PATCH,
            "/twins/x",
            &[],
            r#"{"tags":{"a":1}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = f
        .hub_as(
            "service",
            Method::POST,
            "/devices/query",
            &[],
            r#"{"query":"SELECT * FROM devices WHERE tags.a = 1"}"#,
        )
        .await;
    assert_eq!(ids(&r.json), ["x"]);

    // the auth-failure log names the real reason
    let diag = f
        .hub_svc(Method::GET, "/diagnostics/authFailures", &[], Body::empty())
        .await;
    let reasons: Vec<&str> = diag
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("no Authorization header")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn bulk_registry_create_conflict_and_node_delete() {
    let f = fixture();
    let create = json!([
        {"id": "b-1", "importMode": "create", "status": "enabled",
         "authentication": {"symmetricKey": {}, "type": "sas"},
         "tags": {"batch": "one"}},
        {"id": "b-2", "importMode": "create", "capabilities": {"iotEdge": true}},
    ]);
    let r = f
        .hub_svc(
            Method::POST,
            &format!("/devices?{API}"),
            &[],
            create.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json,
        json!({"isSuccessful": true, "errors": [], "warnings": []})
    );
    assert_eq!(
        f.query_ids("SELECT * FROM devices WHERE tags.batch = 'one'")
            .await,
        ["b-1"]
    );
    assert_eq!(
        f.query_ids("SELECT * FROM devices WHERE capabilities.iotEdge = true")
            .await,
        ["b-2"]
    );

    // again: both fail, 400 with the same body shape
    let r = f
        .hub_svc(Method::POST, "/devices", &[], create.to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["isSuccessful"], false);
    let errors = r.json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["deviceId"], "b-1");
    assert_eq!(errors[0]["errorCode"], "DeviceAlreadyExists");
    assert_eq!(errors[0]["operation"], "create");
    assert!(errors[0]["errorStatus"].is_string());

    // Node: trailing slash, `deviceId` renamed to `id`, per-item import modes
    let b1 = f
        .hub_svc(Method::GET, "/devices/b-1", &[], Body::empty())
        .await;
    let etag = b1.json["etag"].as_str().unwrap();
    let ops = json!([
        {"id": "b-1", "importMode": "deleteIfMatchETag", "eTag": "\"wrong\""},
        {"id": "b-2", "importMode": "delete"},
        {"id": "b-3", "importMode": "bogus"},
    ]);
    let r = f
        .hub_svc(Method::POST, "/devices/", &[], ops.to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let failed: BTreeSet<(String, String)> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["deviceId"].as_str().unwrap().to_string(),
                e["errorCode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        BTreeSet::from([
            ("b-1".to_string(), "PreconditionFailed".to_string()),
            ("b-3".to_string(), "ArgumentInvalid".to_string()),
        ])
    );
    let ops = json!([{"id": "b-1", "importMode": "deleteIfMatchETag", "eTag": etag}]);
    let r = f
        .hub_svc(Method::POST, "/devices/", &[], ops.to_string())
        .await;
    assert_eq!(r.json["isSuccessful"], true, "{}", r.json);
    let all = f.hub_svc(Method::GET, "/devices", &[], Body::empty()).await;
    assert_eq!(all.json, json!([]));

    let r = f.hub_svc(Method::POST, "/devices", &[], "{}").await;
    assert_hub_error(&r, 400, "ArgumentInvalid");
}

#[tokio::test]
async fn device_named_query_and_unknown_hub_paths() {
    let f = fixture();
    let created = f.create("query", false).await;
    assert_eq!(created["deviceId"], "query");
    let got = f
        .hub_svc(Method::GET, "/devices/query", &[], Body::empty())
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.json);
    let r = f.hub_svc(Method::POST, "/devices/dev-1", &[], "{}").await;
    assert_hub_error(&r, 405, "MethodNotAllowed");
    let r = f
        .hub_svc(Method::GET, "/devices/query/gadgets", &[], Body::empty())
        .await;
    assert_hub_error(&r, 404, "NotFound");
    // a device named "query" has (no) modules
    let r = f
        .hub_svc(Method::GET, "/devices/query/modules", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json, json!([]));
    let r = f
        .hub_svc(Method::DELETE, "/twins/query", &[], Body::empty())
        .await;
    assert_hub_error(&r, 405, "MethodNotAllowed");
}

//! Module identities, module twins and module methods through the router: real SQLite store,
//! real `Hub`, real SAS tokens. Service callers use hub policies; an IoT Edge device manages
//! its own modules with its device SAS token, as aziot-identityd does.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use fleethub_core::{keys, sas};
use fleethub_services::AuthContext;
use serde_json::{Value, json};

const API: &str = "api-version=2021-04-12";
/// What aziot-identityd sends.
const EDGE_API: &str = "api-version=2017-11-08-preview";

impl Fixture {
    /// Creates a device (edge-enabled or not); returns its primary key.
    async fn device(&self, id: &str, iot_edge: bool) -> String {
        let r = self
            .hub_svc(
                Method::PUT,
                &format!("/devices/{id}?{API}"),
                &[],
                json!({"deviceId": id, "status": "enabled",
                       "authentication": {"symmetricKey": {}, "type": "sas"},
                       "capabilities": {"iotEdge": iot_edge}})
                .to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A request signed with a device SAS token (no `skn`), as aziot-identityd sends it.
    async fn as_device(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        extra: &[(&str, &str)],
        body: impl Into<axum::body::Body>,
    ) -> Resp {
        let mut headers = vec![
            ("authorization", token),
            ("content-type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        self.call(method, uri, &headers, body).await
    }
}

fn module_ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| m["moduleId"].as_str().unwrap())
        .collect()
}

#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, read top to bottom"
)]
#[tokio::test]
async fn service_module_crud() {
    let f = fixture();
    f.device("dev-1", false).await;
    let uri = format!("/devices/dev-1/modules/mod-a?{API}");

    // Node's addModule: empty keys
    let created = f
        .hub_svc(
            Method::PUT,
            &uri,
            &[],
            json!({"deviceId": "dev-1", "moduleId": "mod-a", "authentication": {
                "symmetricKey": {"primaryKey": "", "secondaryKey": ""}}})
            .to_string(),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    let m = &created.json;
    assert_eq!(
        (m["deviceId"].as_str(), m["moduleId"].as_str()),
        (Some("dev-1"), Some("mod-a"))
    );
    assert!(m["generationId"].as_str().is_some_and(|g| !g.is_empty()));
    assert_eq!(m["connectionState"], "Disconnected");
    assert_eq!(m["authentication"]["type"], "sas");
    let key = m["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(keys::decode_key(&key).is_ok());
    let etag = m["etag"].as_str().unwrap().to_string();

    // again without If-Match
    let again = f.hub_svc(Method::PUT, &uri, &[], "{}").await;
    assert_hub_error(&again, 409, "ModuleAlreadyExistsOnDevice");
    assert_eq!(again.json["errorCode"], 409301);

    // get, and the keyword segment in another case
    let got = f
        .hub_svc(Method::GET, "/Devices/dev-1/Modules/mod-a", &[], "")
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.json);
    assert_eq!(got.json["generationId"], m["generationId"]);
    assert_eq!(
        got.json["authentication"]["symmetricKey"]["primaryKey"],
        key.as_str()
    );

    // Python's create: every member present, most of them null
    let r = f
        .hub_svc(
            Method::PUT,
            &format!("/devices/dev-1/modules/mod-b?{API}"),
            &[],
            json!({"moduleId": "mod-b", "managedBy": "me", "deviceId": "dev-1",
                   "generationId": null, "etag": null, "connectionState": null,
                   "cloudToDeviceMessageCount": null,
                   "authentication": {"symmetricKey": {"primaryKey": null, "secondaryKey": null},
                                      "x509Thumbprint": {"primaryThumbprint": null,
                                                         "secondaryThumbprint": null},
                                      "type": "sas"}})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["managedBy"], "me");

    let list = f
        .hub_svc(
            Method::GET,
            &format!("/devices/dev-1/modules?{API}"),
            &[],
            "",
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.json);
    assert_eq!(module_ids(&list.json), ["mod-a", "mod-b"]);

    // update: a stale etag, then the right one with new keys
    let new_key = keys::generate_key();
    let update = json!({"moduleId": "mod-a", "deviceId": "dev-1", "managedBy": "ops",
                        "authentication": {"symmetricKey": {"primaryKey": new_key,
                                                            "secondaryKey": new_key}}})
    .to_string();
    let stale = f
        .hub_svc(
            Method::PUT,
            &uri,
            &[("if-match", "\"stale\"")],
            update.clone(),
        )
        .await;
    assert_hub_error(&stale, 412, "PreconditionFailed");
    let quoted = format!("\"{etag}\"");
    let updated = f
        .hub_svc(Method::PUT, &uri, &[("if-match", quoted.as_str())], update)
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.json);
    assert_eq!(updated.json["managedBy"], "ops");
    assert_eq!(updated.json["generationId"], m["generationId"]);
    assert_eq!(
        updated.json["authentication"]["symmetricKey"]["primaryKey"],
        new_key.as_str()
    );
    assert_ne!(updated.json["etag"], m["etag"]);

    // errors
    let mismatch = f
        .hub_svc(
            Method::PUT,
            &format!("/devices/dev-1/modules/mod-c?{API}"),
            &[],
            json!({"moduleId": "other"}).to_string(),
        )
        .await;
    assert_hub_error(&mismatch, 400, "ArgumentInvalid");
    let not_json = f
        .hub_svc(
            Method::PUT,
            &format!("/devices/dev-1/modules/mod-c?{API}"),
            &[],
            "[1]",
        )
        .await;
    assert_hub_error(&not_json, 400, "ArgumentInvalid");
    let missing = f
        .hub_svc(
            Method::GET,
            &format!("/devices/dev-1/modules/nope?{API}"),
            &[],
            "",
        )
        .await;
    assert_hub_error(&missing, 404, "ModuleNotFound");
    assert_eq!(missing.json["errorCode"], 404010);
    let no_device = f
        .hub_svc(
            Method::GET,
            &format!("/devices/ghost/modules/mod-a?{API}"),
            &[],
            "",
        )
        .await;
    assert_hub_error(&no_device, 404, "DeviceNotFound");
    let no_device = f
        .hub_svc(
            Method::GET,
            &format!("/devices/ghost/modules?{API}"),
            &[],
            "",
        )
        .await;
    assert_hub_error(&no_device, 404, "DeviceNotFound");
    let no_device = f
        .hub_svc(
            Method::PUT,
            &format!("/devices/ghost/modules/m?{API}"),
            &[],
            "{}",
        )
        .await;
    assert_hub_error(&no_device, 404, "DeviceNotFound");
    let update_missing = f
        .hub_svc(
            Method::PUT,
            &format!("/devices/dev-1/modules/mod-z?{API}"),
            &[("if-match", "*")],
            "{}",
        )
        .await;
    assert_hub_error(&update_missing, 404, "ModuleNotFound");

    // delete: stale etag, then unconditionally; then it is gone
    let stale = f
        .hub_svc(Method::DELETE, &uri, &[("if-match", "\"stale\"")], "")
        .await;
    assert_hub_error(&stale, 412, "PreconditionFailed");
    let deleted = f
        .hub_svc(Method::DELETE, &uri, &[("if-match", "*")], "")
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.json);
    let gone = f.hub_svc(Method::DELETE, &uri, &[], "").await;
    assert_hub_error(&gone, 404, "ModuleNotFound");
    let list = f
        .hub_svc(
            Method::GET,
            &format!("/devices/dev-1/modules?{API}"),
            &[],
            "",
        )
        .await;
    assert_eq!(module_ids(&list.json), ["mod-b"]);
}

#[tokio::test]
async fn service_rights() {
    let f = fixture();
    f.device("dev-1", false).await;
    let uri = format!("/devices/dev-1/modules/mod-a?{API}");
    let r = f.hub_as("registryRead", Method::PUT, &uri, &[], "{}").await;
    assert_hub_error(&r, 403, "Forbidden");
    let r = f.hub_as("service", Method::PUT, &uri, &[], "{}").await;
    assert_hub_error(&r, 403, "Forbidden");
    let r = f
        .hub_as("registryReadWrite", Method::PUT, &uri, &[], "{}")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = f.hub_as("registryRead", Method::GET, &uri, &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = f
        .hub_as("registryRead", Method::DELETE, &uri, &[], "")
        .await;
    assert_hub_error(&r, 403, "Forbidden");
    let r = f
        .hub_as(
            "service",
            Method::GET,
            &format!("/devices/dev-1/modules?{API}"),
            &[],
            "",
        )
        .await;
    assert_hub_error(&r, 403, "Forbidden");
    // a device-policy token (skn present) is a service token without registry rights
    let r = f.hub_as("device", Method::GET, &uri, &[], "").await;
    assert_hub_error(&r, 403, "Forbidden");
    // no token at all
    let r = f.call(Method::GET, &uri, &[], "").await;
    assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");
}

#[tokio::test]
async fn module_twin_patch_replace_get() {
    let f = fixture();
    f.device("dev-1", false).await;
    let r = f
        .hub_svc(
            Method::PUT,
            &format!("/devices/dev-1/modules/mod-a?{API}"),
            &[],
            "{}",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let uri = format!("/twins/dev-1/modules/mod-a?{API}");

    let twin = f.hub_svc(Method::GET, &uri, &[], "").await;
    assert_eq!(twin.status, StatusCode::OK, "{}", twin.json);
    assert_eq!(twin.json["deviceId"], "dev-1");
    assert_eq!(twin.json["moduleId"], "mod-a");
    assert_eq!(twin.json["connectionState"], "Disconnected");
    let etag = twin.json["etag"].as_str().unwrap().to_string();

    let patched = f
        .hub_svc(
            Method::PATCH,
            &uri,
            &[("if-match", etag.as_str())],
            json!({"tags": {"site": "a"}, "properties": {"desired": {"interval": 5, "mode": "x"}}})
                .to_string(),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    assert_eq!(patched.json["moduleId"], "mod-a");
    assert_eq!(patched.json["tags"]["site"], "a");
    assert_eq!(patched.json["properties"]["desired"]["interval"], 5);
    assert_eq!(patched.json["properties"]["desired"]["$version"], 2);

    let got = f.hub_svc(Method::GET, &uri, &[], "").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json["tags"]["site"], "a");
    assert_eq!(got.json["properties"]["desired"]["interval"], 5);
    assert_eq!(got.json["properties"]["desired"]["mode"], "x");
    assert_ne!(got.json["etag"].as_str(), Some(etag.as_str()));
    // the device twin is untouched
    let device_twin = f
        .hub_svc(Method::GET, &format!("/twins/dev-1?{API}"), &[], "")
        .await;
    assert!(
        device_twin.json["tags"].get("site").is_none(),
        "{}",
        device_twin.json
    );

    // stale etag
    let stale = f
        .hub_svc(
            Method::PATCH,
            &uri,
            &[("if-match", etag.as_str())],
            json!({"tags": {"site": "b"}}).to_string(),
        )
        .await;
    assert_hub_error(&stale, 412, "PreconditionFailed");

    // replace: desired keys not in the body go away; ServiceConnect is enough
    let replaced = f
        .hub_as(
            "service",
            Method::PUT,
            &uri,
            &[],
            json!({"properties": {"desired": {"interval": 9}}}).to_string(),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.json);
    assert_eq!(replaced.json["properties"]["desired"]["interval"], 9);
    assert!(replaced.json["properties"]["desired"].get("mode").is_none());

    let missing = f
        .hub_svc(
            Method::GET,
            &format!("/twins/dev-1/modules/nope?{API}"),
            &[],
            "",
        )
        .await;
    assert_hub_error(&missing, 404, "ModuleNotFound");
    let missing = f
        .hub_svc(
            Method::PATCH,
            &format!("/twins/dev-1/modules/nope?{API}"),
            &[],
            json!({"tags": {}}).to_string(),
        )
        .await;
    assert_hub_error(&missing, 404, "ModuleNotFound");
    let no_device = f
        .hub_svc(
            Method::GET,
            &format!("/twins/ghost/modules/mod-a?{API}"),
            &[],
            "",
        )
        .await;
    assert_hub_error(&no_device, 404, "DeviceNotFound");
    let bad = f.hub_svc(Method::PATCH, &uri, &[], "[]").await;
    assert_hub_error(&bad, 400, "ArgumentInvalid");
    let r = f
        .hub_as("registryRead", Method::PATCH, &uri, &[], "{}")
        .await;
    assert_hub_error(&r, 403, "Forbidden");
}

#[tokio::test]
async fn module_method_on_offline_module() {
    let f = fixture();
    f.device("dev-1", false).await;
    f.hub_svc(
        Method::PUT,
        &format!("/devices/dev-1/modules/mod-a?{API}"),
        &[],
        "{}",
    )
    .await;
    let body = json!({"methodName": "reboot", "payload": {"x": 1},
                      "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 0})
    .to_string();
    let r = f
        .hub_svc(
            Method::POST,
            &format!("/twins/dev-1/modules/mod-a/methods?{API}"),
            &[],
            body.clone(),
        )
        .await;
    assert_hub_error(&r, 404, "DeviceNotOnline");
    assert_eq!(r.json["errorCode"], 404103);
    let r = f
        .hub_svc(
            Method::POST,
            &format!("/TWINS/dev-1/MODULES/mod-a/METHODS?{API}"),
            &[],
            body.clone(),
        )
        .await;
    assert_hub_error(&r, 404, "DeviceNotOnline");
    let r = f
        .hub_svc(
            Method::POST,
            &format!("/twins/dev-1/modules/nope/methods?{API}"),
            &[],
            body.clone(),
        )
        .await;
    assert_hub_error(&r, 404, "ModuleNotFound");
    let r = f
        .hub_svc(
            Method::POST,
            &format!("/twins/ghost/modules/mod-a/methods?{API}"),
            &[],
            body.clone(),
        )
        .await;
    assert_hub_error(&r, 404, "DeviceNotFound");
    let r = f
        .hub_as(
            "registryReadWrite",
            Method::POST,
            &format!("/twins/dev-1/modules/mod-a/methods?{API}"),
            &[],
            body,
        )
        .await;
    assert_hub_error(&r, 403, "Forbidden");
}

#[tokio::test]
async fn edge_device_manages_its_own_modules() {
    let f = fixture();
    let key = f.device("edge-1", true).await;
    let token = hub_device_token("edge-1", &key);
    let base = "/devices/edge-1/modules";

    // the system modules exist from the start
    let list = f
        .as_device(&token, Method::GET, &format!("{base}?{EDGE_API}"), &[], "")
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.json);
    assert_eq!(module_ids(&list.json), ["$edgeAgent", "$edgeHub"]);
    let agent = f
        .as_device(
            &token,
            Method::GET,
            &format!("{base}/%24edgeAgent?{EDGE_API}"),
            &[],
            "",
        )
        .await;
    assert_eq!(agent.status, StatusCode::OK, "{}", agent.json);
    assert!(agent.json["generationId"].is_string());

    // create: no If-Match, no authentication (serde's Option::None members left out)
    let uri = format!("{base}/mod-a?{EDGE_API}");
    let created = f
        .as_device(
            &token,
            Method::PUT,
            &uri,
            &[],
            json!({"moduleId": "mod-a", "deviceId": "edge-1"}).to_string(),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    let generation = created.json["generationId"].as_str().unwrap().to_string();
    assert!(!generation.is_empty());

    // update with If-Match: * and the keys identityd derived locally
    let (primary, secondary) = (keys::generate_key(), keys::generate_key());
    let updated = f
        .as_device(
            &token,
            Method::PUT,
            &uri,
            &[("if-match", "*")],
            json!({"moduleId": "mod-a", "managedBy": "iotEdge", "deviceId": "edge-1",
                   "authentication": {"symmetricKey": {"primaryKey": primary,
                                                       "secondaryKey": secondary},
                                      "type": "sas"}})
            .to_string(),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.json);
    assert_eq!(updated.json["generationId"], generation.as_str());
    assert_eq!(updated.json["managedBy"], "iotEdge");
    assert_eq!(
        updated.json["authentication"]["symmetricKey"]["primaryKey"],
        primary.as_str()
    );
    // ... which the module can now connect with
    let module_token = sas::build_token(
        &format!("{HUB}/devices/edge-1/modules/mod-a"),
        &secondary,
        unix_now() + 30,
        None,
    )
    .unwrap();
    let ctx = AuthContext {
        transport: "https",
        peer: None,
    };
    f.hub
        .authenticate_device("edge-1", Some("mod-a"), &module_token, ctx)
        .await
        .unwrap();

    // identityd also updates the system modules it did not create
    let r = f
        .as_device(
            &token,
            Method::PUT,
            &format!("{base}/$edgeAgent?{EDGE_API}"),
            &[("if-match", "*")],
            json!({"moduleId": "$edgeAgent", "deviceId": "edge-1",
                   "authentication": {"symmetricKey": {"primaryKey": primary,
                                                       "secondaryKey": secondary},
                                      "type": "sas"}})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    let list = f
        .as_device(&token, Method::GET, &format!("{base}?{EDGE_API}"), &[], "")
        .await;
    assert_eq!(module_ids(&list.json), ["$edgeAgent", "$edgeHub", "mod-a"]);

    // creating it again is a conflict the daemon can read (`Message`)
    let again = f
        .as_device(
            &token,
            Method::PUT,
            &uri,
            &[],
            json!({"moduleId": "mod-a"}).to_string(),
        )
        .await;
    assert_hub_error(&again, 409, "ModuleAlreadyExistsOnDevice");
    assert!(again.json["Message"].is_string());

    let deleted = f
        .as_device(&token, Method::DELETE, &uri, &[("if-match", "*")], "")
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.json);
    let gone = f.as_device(&token, Method::GET, &uri, &[], "").await;
    assert_hub_error(&gone, 404, "ModuleNotFound");
    let list = f
        .as_device(&token, Method::GET, &format!("{base}?{EDGE_API}"), &[], "")
        .await;
    assert_eq!(module_ids(&list.json), ["$edgeAgent", "$edgeHub"]);
}

#[tokio::test]
async fn device_tokens_that_may_not_manage_modules() {
    let f = fixture();
    let edge_key = f.device("edge-1", true).await;
    let leaf_key = f.device("leaf-1", false).await;
    let other_edge_key = f.device("edge-2", true).await;
    let body = json!({"moduleId": "mod-a"}).to_string();

    // a device that is not edge-enabled, even for its own modules
    let leaf = hub_device_token("leaf-1", &leaf_key);
    for (method, uri) in [
        (Method::GET, "/devices/leaf-1/modules"),
        (Method::PUT, "/devices/leaf-1/modules/mod-a"),
        (Method::GET, "/devices/leaf-1/modules/mod-a"),
        (Method::DELETE, "/devices/leaf-1/modules/mod-a"),
    ] {
        let r = f
            .as_device(&leaf, method.clone(), uri, &[], body.clone())
            .await;
        assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");
        assert!(r.json["Message"].is_string());
    }
    let failures = f.hub.auth_failures().recent(10);
    assert!(
        failures
            .iter()
            .any(|a| a.identity == "leaf-1" && a.reason.contains("not an IoT Edge device")),
        "{failures:?}"
    );

    // another device's token (edge or not) for edge-1's modules
    for token in [
        hub_device_token("edge-2", &other_edge_key),
        hub_device_token("leaf-1", &leaf_key),
        // right resource, wrong key
        hub_device_token("edge-1", &other_edge_key),
    ] {
        for (method, uri) in [
            (Method::GET, "/devices/edge-1/modules"),
            (Method::PUT, "/devices/edge-1/modules/mod-a"),
        ] {
            let r = f.as_device(&token, method, uri, &[], body.clone()).await;
            assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");
        }
    }

    // a module token is not a device token
    let module_token = sas::build_token(
        &format!("{HUB}/devices/edge-1/modules/$edgeAgent"),
        &edge_key,
        unix_now() + 30,
        None,
    )
    .unwrap();
    let r = f
        .as_device(
            &module_token,
            Method::GET,
            "/devices/edge-1/modules",
            &[],
            "",
        )
        .await;
    assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");

    // unknown device: 401, not 404 (the edge runtime reprovisions on 401)
    let ghost = hub_device_token("ghost", &edge_key);
    let r = f
        .as_device(&ghost, Method::GET, "/devices/ghost/modules", &[], "")
        .await;
    assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");

    // the device's own token does not reach the module twin or method APIs
    let edge = hub_device_token("edge-1", &edge_key);
    let r = f
        .as_device(
            &edge,
            Method::GET,
            "/twins/edge-1/modules/$edgeAgent",
            &[],
            "",
        )
        .await;
    assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");

    // disabled edge device
    let r = f
        .as_device(&edge, Method::GET, "/devices/edge-1/modules", &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let mut device = f
        .hub_svc(Method::GET, &format!("/devices/edge-1?{API}"), &[], "")
        .await
        .json;
    device["status"] = json!("disabled");
    let r = f
        .hub_svc(
            Method::PUT,
            &format!("/devices/edge-1?{API}"),
            &[("if-match", "*")],
            device.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = f
        .as_device(&edge, Method::GET, "/devices/edge-1/modules", &[], "")
        .await;
    assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");
}

//! The dashboard's handlers over a real SQLite store and real `Dps`/`Hub` services: sign-in,
//! sessions, CSRF, rights per policy, escaping, the twin editor's conflict and validation paths.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fleethub_api::hub::Device;
use fleethub_services::hub::TwinTarget;
use fleethub_services::policies::{Policy, default_dps_policies, default_hub_policies};
use fleethub_services::{Clock, Dps, DpsConfig, Hub, HubConfig, ServiceAuth, Shared};
use fleethub_store::sqlite::SqliteStore;
use fleethub_ui::rate::TelemetryRate;
use fleethub_ui::{SessionKey, UiState, router};
use http_body_util::BodyExt;
use serde_json::json;
use std::sync::Arc;
use tower::ServiceExt;

const HUB: &str = "hub.fleethub.test";
const DPS: &str = "dps.fleethub.test";

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    state: UiState,
    hub_policies: Vec<Policy>,
    dps_policies: Vec<Policy>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let shared = Shared::new(store);
    let hub_policies = default_hub_policies();
    let dps_policies = default_dps_policies();
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
            id_scope: "0ne0000ABCD".into(),
            linked_hubs: vec![HUB.into()],
            token_skew_secs: 30,
            retry_after_secs: 3,
        },
    ));
    let log = shared.auth_failures.clone();
    let state = UiState {
        dps,
        hub,
        dps_auth: Arc::new(ServiceAuth::new(
            "dps-service",
            DPS.into(),
            dps_policies.clone(),
            log.clone(),
        )),
        hub_auth: Arc::new(ServiceAuth::new(
            "hub-service",
            HUB.into(),
            hub_policies.clone(),
            log.clone(),
        )),
        auth_failures: log,
        session_key: SessionKey::generate(),
        session_secs: 3600,
        clock: Clock::system(),
        rate: TelemetryRate::new(Clock::system()),
    };
    Fixture {
        _dir: dir,
        app: router(state.clone()),
        state,
        hub_policies,
        dps_policies,
    }
}

fn connection_string(host: &str, policy: &Policy) -> String {
    format!(
        "HostName={host};SharedAccessKeyName={};SharedAccessKey={}",
        policy.key_name, policy.primary_key
    )
}

fn policy<'a>(policies: &'a [Policy], name: &str) -> &'a Policy {
    policies.iter().find(|p| p.key_name == name).unwrap()
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_string())
    };
    let (location, set_cookie) = (header(header::LOCATION), header(header::SET_COOKIE));
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        location,
        set_cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn get(app: &Router, path: &str, cookie: Option<&str>) -> Answer {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Answer {
    let mut req =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    send(app, req.body(Body::from(form_body(fields))).unwrap()).await
}

/// Signs in with the given connection strings; returns (cookie, csrf token).
async fn sign_in(f: &Fixture, cs1: &str, cs2: &str) -> (String, String) {
    let a = post(&f.app, "/ui/login", None, &[("cs1", cs1), ("cs2", cs2)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location.as_deref(), Some("/ui/"));
    let set = a.set_cookie.expect("a session cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let home = get(&f.app, "/ui/", Some(&cookie)).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let csrf = home
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a csrf field")
        .to_string();
    (cookie, csrf)
}

async fn owner(f: &Fixture) -> (String, String) {
    let hub = connection_string(HUB, policy(&f.hub_policies, "iothubowner"));
    let dps = connection_string(DPS, policy(&f.dps_policies, "provisioningserviceowner"));
    sign_in(f, &hub, &dps).await
}

#[tokio::test]
async fn pages_need_a_session() {
    let f = fixture();
    for path in ["/ui/", "/ui/devices", "/ui/enrollments", "/ui/groups/new"] {
        let a = get(&f.app, path, None).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(a.location.as_deref(), Some("/ui/login"), "{path}");
    }
    let forged = get(&f.app, "/ui/", Some("fleethub_ui=e30.AAAA")).await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);
    let login = get(&f.app, "/ui/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login
            .body
            .contains("<form method=\"post\" action=\"/ui/login\"")
    );
}

#[tokio::test]
async fn a_wrong_key_fails_without_saying_which_part_and_is_logged() {
    let f = fixture();
    let mut p = policy(&f.hub_policies, "iothubowner").clone();
    p.primary_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let a = post(
        &f.app,
        "/ui/login",
        None,
        &[("cs1", &connection_string(HUB, &p))],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.set_cookie.is_none());
    assert!(a.body.contains("Sign-in failed"), "{}", a.body);
    assert!(
        !a.body.contains("not a key of policy"),
        "no detail on the page"
    );
    let unknown = post(
        &f.app,
        "/ui/login",
        None,
        &[(
            "cs1",
            "HostName=other.test;SharedAccessKeyName=x;SharedAccessKey=eA==",
        )],
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let logged = f.state.auth_failures.recent(10);
    assert!(
        logged
            .iter()
            .any(|r| r.reason.contains("not a key of policy 'iothubowner'")),
        "{logged:?}"
    );
    assert!(
        logged
            .iter()
            .any(|r| r.reason.contains("neither this hub's nor this DPS's")),
        "{logged:?}"
    );
}

#[tokio::test]
async fn csrf_is_required_for_every_change() {
    let f = fixture();
    let (cookie, csrf) = owner(&f).await;
    for token in ["", "wrong"] {
        let a = post(
            &f.app,
            "/ui/groups/new",
            Some(&cookie),
            &[("csrf", token), ("id", "g1")],
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{token:?}");
    }
    assert!(
        f.state.dps.get_group("g1").await.is_err(),
        "nothing was created"
    );
    let a = post(
        &f.app,
        "/ui/groups/new",
        Some(&cookie),
        &[("csrf", &csrf), ("id", "g1"), ("edge", "on")],
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let group = f.state.dps.get_group("g1").await.unwrap();
    assert!(group.capabilities.unwrap().iot_edge);
    let logout = post(&f.app, "/ui/logout", Some(&cookie), &[("csrf", "nope")]).await;
    assert_eq!(logout.status, StatusCode::FORBIDDEN);
    let logout = post(&f.app, "/ui/logout", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert!(logout.set_cookie.unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn group_pages_hide_keys_until_asked_and_derive_device_keys() {
    let f = fixture();
    let (cookie, csrf) = owner(&f).await;
    let bad = post(
        &f.app,
        "/ui/groups/new",
        Some(&cookie),
        &[("csrf", &csrf), ("id", "g2"), ("initial_twin", "{not json")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not valid JSON"), "{}", bad.body);
    assert!(bad.body.contains("{not json"), "the text is kept");
    assert!(f.state.dps.get_group("g2").await.is_err());
    let twin = r#"{"tags": {"site": "<b>north</b>"}}"#;
    let ok = post(
        &f.app,
        "/ui/groups/new",
        Some(&cookie),
        &[("csrf", &csrf), ("id", "g2"), ("initial_twin", twin)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let group = f.state.dps.get_group("g2").await.unwrap();
    let key = group
        .attestation
        .symmetric_key
        .unwrap()
        .primary_key
        .unwrap();
    let page = get(&f.app, "/ui/groups/g2", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains(&key), "keys are hidden by default");
    assert!(
        page.body.contains("&lt;b&gt;north&lt;/b&gt;"),
        "twin text is escaped"
    );
    assert!(!page.body.contains("<b>north</b>"));
    let shown = get(&f.app, "/ui/groups/g2?keys=show", Some(&cookie)).await;
    assert!(shown.body.contains(&key));
    let derived = get(&f.app, "/ui/groups/g2?derive=dev-7", Some(&cookie)).await;
    let expected = fleethub_core::keys::derive_device_key(&key, "dev-7").unwrap();
    assert!(derived.body.contains(&expected));
    let list = get(&f.app, "/ui/enrollments", Some(&cookie)).await;
    assert!(list.body.contains("/ui/groups/g2"));
    let del = post(
        &f.app,
        "/ui/groups/g2/delete",
        Some(&cookie),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(del.status, StatusCode::SEE_OTHER);
    assert!(f.state.dps.get_group("g2").await.is_err());
}

async fn device(f: &Fixture, id: &str) {
    let d = Device {
        device_id: id.into(),
        ..Device::default()
    };
    f.state.hub.put_device(id, d, None).await.unwrap();
}

#[tokio::test]
async fn a_read_only_policy_gets_read_only_pages() {
    let f = fixture();
    device(&f, "ro-1").await;
    let (cookie, csrf) = sign_in(
        &f,
        &connection_string(HUB, policy(&f.hub_policies, "registryRead")),
        "",
    )
    .await;
    let page = get(&f.app, "/ui/devices/ro-1", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("Save twin"));
    assert!(!page.body.contains("Invoke method"));
    let home = get(&f.app, "/ui/", Some(&cookie)).await;
    assert!(
        !home.body.contains("href=\"/ui/enrollments\""),
        "no DPS section"
    );
    let patch = post(
        &f.app,
        "/ui/devices/ro-1/twin",
        Some(&cookie),
        &[("csrf", &csrf), ("twin", r#"{"tags": {"a": 1}}"#)],
    )
    .await;
    assert_eq!(patch.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&f.app, "/ui/enrollments", Some(&cookie)).await.status,
        StatusCode::FORBIDDEN
    );
    let twin = f
        .state
        .hub
        .get_twin(TwinTarget::Device("ro-1"))
        .await
        .unwrap();
    assert!(
        twin.tags.is_none_or(|t| t.get("a").is_none()),
        "nothing changed"
    );
}

#[tokio::test]
async fn the_twin_editor_validates_and_detects_concurrent_edits() {
    let f = fixture();
    device(&f, "tw-1").await;
    let (cookie, csrf) = owner(&f).await;
    let page = get(&f.app, "/ui/devices/tw-1", Some(&cookie)).await;
    let etag = page
        .body
        .split("name=\"etag\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let bad = post(
        &f.app,
        "/ui/devices/tw-1/twin",
        Some(&cookie),
        &[("csrf", &csrf), ("etag", &etag), ("twin", "[1, 2")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not valid JSON"));
    // Someone else edits the twin meanwhile.
    f.state
        .hub
        .update_service_twin(
            TwinTarget::Device("tw-1"),
            &json!({"tags": {"owner": "other"}}),
            None,
            false,
        )
        .await
        .unwrap();
    let mine = r#"{"tags": {"mine": "<script>alert(1)</script>"}}"#;
    let stale = post(
        &f.app,
        "/ui/devices/tw-1/twin",
        Some(&cookie),
        &[("csrf", &csrf), ("etag", &etag), ("twin", mine)],
    )
    .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert!(stale.body.contains("Someone else changed this twin"));
    assert!(
        stale.body.contains("&lt;script&gt;"),
        "my text is kept, escaped"
    );
    assert!(!stale.body.contains("<script>alert"));
    let twin = f
        .state
        .hub
        .get_twin(TwinTarget::Device("tw-1"))
        .await
        .unwrap();
    assert_eq!(twin.tags.as_ref().unwrap()["owner"], "other");
    assert!(twin.tags.as_ref().unwrap().get("mine").is_none());
    let fresh = twin.etag.clone().unwrap_or_default();
    let ok = post(
        &f.app,
        "/ui/devices/tw-1/twin",
        Some(&cookie),
        &[("csrf", &csrf), ("etag", &fresh), ("twin", mine)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let twin = f
        .state
        .hub
        .get_twin(TwinTarget::Device("tw-1"))
        .await
        .unwrap();
    assert_eq!(
        twin.tags.as_ref().unwrap()["mine"],
        "<script>alert(1)</script>"
    );
    assert_eq!(
        twin.tags.as_ref().unwrap()["owner"],
        "other",
        "a patch merges"
    );
    let shown = get(&f.app, "/ui/devices/tw-1", Some(&cookie)).await;
    assert!(shown.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test]
async fn a_method_to_an_offline_device_says_so() {
    let f = fixture();
    device(&f, "m-1").await;
    let (cookie, csrf) = owner(&f).await;
    let a = post(
        &f.app,
        "/ui/devices/m-1/method",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("method", "reboot"),
            ("payload", "{}"),
            ("timeout", "5"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body.contains("not connected"), "{}", a.body);
    let bad = post(
        &f.app,
        "/ui/devices/m-1/method",
        Some(&cookie),
        &[("csrf", &csrf), ("method", "reboot"), ("payload", "{")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_overview_counts_what_the_policies_can_read() {
    let f = fixture();
    device(&f, "c-1").await;
    device(&f, "c-2").await;
    let (cookie, _) = owner(&f).await;
    let home = get(&f.app, "/ui/", Some(&cookie)).await;
    assert!(home.body.contains("Devices"));
    assert!(home.body.contains("Enrollment groups"));
    assert!(
        home.body
            .contains("<div class=\"n\">2</div><div>Devices</div>"),
        "{}",
        home.body
    );
}

fn modules_content() -> serde_json::Value {
    json!({
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}}
            },
            "modules": {"sensor": {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                                   "settings": {"image": "example/sensor:1", "createOptions": "{}"}}}
        }},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1",
            "routes": {"upstream": "FROM /messages/* INTO $upstream"},
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
        }}
    })
}

async fn edge_device(f: &Fixture, id: &str, tags: serde_json::Value) {
    let d: Device =
        serde_json::from_value(json!({"deviceId": id, "capabilities": {"iotEdge": true}})).unwrap();
    f.state.hub.put_device(id, d, None).await.unwrap();
    f.state
        .hub
        .update_service_twin(TwinTarget::Device(id), &json!({"tags": tags}), None, false)
        .await
        .unwrap();
}

#[tokio::test]
async fn deployments_are_created_validated_and_counted() {
    let f = fixture();
    tokio::spawn(
        f.state
            .hub
            .clone()
            .run_deployments(std::time::Duration::from_secs(1)),
    );
    edge_device(&f, "edge-1", json!({"environment": "lab"})).await;
    let (cookie, csrf) = owner(&f).await;
    let manifest = modules_content().to_string();
    let bad = post(
        &f.app,
        "/ui/deployments/new",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("id", "d1"),
            ("target_condition", "tags.environment='lab'"),
            ("priority", "5"),
            ("modules_content", "{\"$edgeAgent\": "),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not valid JSON"), "{}", bad.body);
    let bad_condition = post(
        &f.app,
        "/ui/deployments/new",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("id", "d1"),
            ("target_condition", "tags.environment = = 'lab'"),
            ("priority", "5"),
            ("modules_content", &manifest),
        ],
    )
    .await;
    assert_eq!(
        bad_condition.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_condition.body
    );
    assert!(
        f.state.hub.get_configuration("d1").await.is_err(),
        "nothing was saved"
    );
    let no_csrf = post(
        &f.app,
        "/ui/deployments/new",
        Some(&cookie),
        &[
            ("csrf", "x"),
            ("id", "d1"),
            ("target_condition", "tags.environment='lab'"),
            ("priority", "5"),
            ("modules_content", &manifest),
        ],
    )
    .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let ok = post(
        &f.app,
        "/ui/deployments/new",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("id", "d1"),
            ("target_condition", "tags.environment='lab'"),
            ("priority", "5"),
            ("modules_content", &manifest),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let list = get(&f.app, "/ui/deployments", Some(&cookie)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains("tags.environment=&#39;lab&#39;")
            || list.body.contains("tags.environment='lab'"),
        "{}",
        list.body
    );
    // One device targeted (the deployment engine plans in the background, which a loaded
    // machine can delay by seconds), shown on the page.
    let mut targeted = false;
    for _ in 0..300 {
        let all = f.state.hub.list_configurations(0).await.unwrap();
        targeted = all[0]
            .system_metrics
            .as_ref()
            .and_then(|m| m.results.get("targetedCount"))
            .copied()
            == Some(1);
        if targeted {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(targeted, "the deployment targets edge-1");
    let list = get(&f.app, "/ui/deployments", Some(&cookie)).await;
    assert!(
        list.body.contains("<td>5</td><td>1</td>"),
        "priority 5, targeted 1: {}",
        list.body
    );
    let detail = get(&f.app, "/ui/deployments/d1", Some(&cookie)).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(
        detail.body.contains("/ui/devices/edge-1"),
        "{}",
        detail.body
    );
    assert!(
        detail.body.contains("example/sensor:1"),
        "the manifest is shown"
    );
    let del = post(
        &f.app,
        "/ui/deployments/d1/delete",
        Some(&cookie),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(del.status, StatusCode::SEE_OTHER);
    assert!(f.state.hub.get_configuration("d1").await.is_err());
}

#[tokio::test]
async fn an_edge_device_page_explains_417_and_lists_modules() {
    let f = fixture();
    edge_device(&f, "edge-2", json!({})).await;
    let (cookie, _) = owner(&f).await;
    let page = get(&f.app, "/ui/devices/edge-2", Some(&cookie)).await;
    assert!(page.body.contains("has not reported yet"), "{}", page.body);
    let agent = TwinTarget::Module("edge-2", "$edgeAgent");
    if f.state.hub.service_twin(agent).await.is_err() {
        f.state
            .hub
            .put_module(
                "edge-2",
                "$edgeAgent",
                fleethub_api::hub::Module::default(),
                None,
            )
            .await
            .unwrap();
    }
    f.state
        .hub
        .patch_reported(agent, &json!({
            "lastDesiredStatus": {"code": 417, "description": "The device's deployment configuration is not set"},
            "systemModules": {"edgeHub": {"runtimeStatus": "running", "exitCode": 0, "restartCount": 0}},
            "modules": {"sensor": {"runtimeStatus": "backoff", "exitCode": 3, "restartCount": 4, "statusDescription": "exited <3>"}}
        }))
        .await
        .unwrap();
    let page = get(&f.app, "/ui/devices/edge-2", Some(&cookie)).await;
    assert!(
        page.body.contains("417: no deployment is set"),
        "{}",
        page.body
    );
    assert!(page.body.contains("backoff") && page.body.contains("exited &lt;3&gt;"));
}

#[tokio::test]
async fn c2d_messages_are_queued_from_the_device_page() {
    let f = fixture();
    device(&f, "c2d-1").await;
    let (cookie, csrf) = owner(&f).await;
    let bad = post(
        &f.app,
        "/ui/devices/c2d-1/c2d",
        Some(&cookie),
        &[("csrf", &csrf), ("body", "x"), ("properties", "novalue")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(f.state.hub.pending_c2d("c2d-1").await.unwrap().is_empty());
    let ok = post(
        &f.app,
        "/ui/devices/c2d-1/c2d",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("body", "hello <b>"),
            ("properties", "a=1\nb = two"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let queued = f.state.hub.pending_c2d("c2d-1").await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].body, b"hello <b>");
    assert_eq!(
        queued[0].properties.get("b").map(String::as_str),
        Some("two")
    );
    let (ro, ro_csrf) = sign_in(
        &f,
        &connection_string(HUB, policy(&f.hub_policies, "registryRead")),
        "",
    )
    .await;
    let refused = post(
        &f.app,
        "/ui/devices/c2d-1/c2d",
        Some(&ro),
        &[("csrf", &ro_csrf), ("body", "x")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(f.state.hub.pending_c2d("c2d-1").await.unwrap().len(), 1);
}

#[tokio::test]
async fn individual_enrollments_are_created_never_replaced_and_deleted() {
    let f = fixture();
    let (cookie, csrf) = owner(&f).await;
    let ok = post(
        &f.app,
        "/ui/enrollments/new",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("registration_id", "ind-1"),
            ("device_id", "dev-ind-1"),
            ("edge", "on"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let e = f.state.dps.get_enrollment("ind-1").await.unwrap();
    assert_eq!(e.device_id.as_deref(), Some("dev-ind-1"));
    let key = e.attestation.symmetric_key.unwrap().primary_key.unwrap();
    let again = post(
        &f.app,
        "/ui/enrollments/new",
        Some(&cookie),
        &[("csrf", &csrf), ("registration_id", "ind-1")],
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.body.contains("already exists"));
    let still = f.state.dps.get_enrollment("ind-1").await.unwrap();
    assert_eq!(
        still
            .attestation
            .symmetric_key
            .unwrap()
            .primary_key
            .unwrap(),
        key,
        "not replaced"
    );
    let bad_id = post(
        &f.app,
        "/ui/enrollments/new",
        Some(&cookie),
        &[("csrf", &csrf), ("registration_id", "bad id!")],
    )
    .await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST, "{}", bad_id.body);
    let page = get(&f.app, "/ui/enrollments/ind-1", Some(&cookie)).await;
    assert!(page.body.contains("dev-ind-1") && !page.body.contains(&key));
    assert!(
        get(&f.app, "/ui/enrollments/ind-1?keys=show", Some(&cookie))
            .await
            .body
            .contains(&key)
    );
    let group = post(
        &f.app,
        "/ui/groups/new",
        Some(&cookie),
        &[("csrf", &csrf), ("id", "dup")],
    )
    .await;
    assert_eq!(group.status, StatusCode::SEE_OTHER);
    let gkey = f
        .state
        .dps
        .get_group("dup")
        .await
        .unwrap()
        .attestation
        .symmetric_key
        .unwrap()
        .primary_key;
    let dup = post(
        &f.app,
        "/ui/groups/new",
        Some(&cookie),
        &[("csrf", &csrf), ("id", "dup")],
    )
    .await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        f.state
            .dps
            .get_group("dup")
            .await
            .unwrap()
            .attestation
            .symmetric_key
            .unwrap()
            .primary_key,
        gkey
    );
    let del = post(
        &f.app,
        "/ui/enrollments/ind-1/delete",
        Some(&cookie),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(del.status, StatusCode::SEE_OTHER);
    assert!(f.state.dps.get_enrollment("ind-1").await.is_err());
    let (ro, ro_csrf) = sign_in(
        &f,
        &connection_string(DPS, policy(&f.dps_policies, "enrollmentread")),
        "",
    )
    .await;
    let list = get(&f.app, "/ui/enrollments", Some(&ro)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.body.contains("Add an individual enrollment"));
    let refused = post(
        &f.app,
        "/ui/enrollments/new",
        Some(&ro),
        &[("csrf", &ro_csrf), ("registration_id", "ind-2")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn live_telemetry_streams_text_for_service_connect_only() {
    let f = fixture();
    let d = f
        .state
        .hub
        .put_device("tel-1", Device::default(), None)
        .await
        .unwrap();
    let (cookie, _) = owner(&f).await;
    let page = get(&f.app, "/ui/telemetry?device=tel-1", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("data-stream=\"/ui/telemetry/stream?device=tel-1\""),
        "{}",
        page.body
    );
    let (ro, _) = sign_in(
        &f,
        &connection_string(HUB, policy(&f.hub_policies, "registryRead")),
        "",
    )
    .await;
    assert_eq!(
        get(&f.app, "/ui/telemetry", Some(&ro)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&f.app, "/ui/telemetry/stream", Some(&ro)).await.status,
        StatusCode::FORBIDDEN
    );

    let req = Request::get("/ui/telemetry/stream?device=tel-1")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let res = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = res.into_body();
    let key = d.authentication.unwrap().keys()[0].to_string();
    let resource = fleethub_iot_protocol::identity::hub_sas_resource(HUB, "tel-1", None);
    let expiry = f.state.clock.unix() + 600;
    let token = fleethub_core::sas::build_token(&resource, &key, expiry, None).unwrap();
    let ctx = fleethub_services::AuthContext {
        transport: "test",
        peer: None,
    };
    let p = f
        .state
        .hub
        .authenticate_device("tel-1", None, &token, ctx)
        .await
        .unwrap();
    let msg = fleethub_services::TelemetryIn {
        body: b"<script>x</script>".to_vec(),
        properties: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    };
    f.state.hub.send_telemetry(&p, msg).await.unwrap();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
        .await
        .expect("an event in time")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(text.trim().strip_prefix("data:").unwrap().trim()).unwrap();
    assert_eq!(json["deviceId"], "tel-1");
    assert_eq!(
        json["body"], "<script>x</script>",
        "sent as data; the page inserts it as text"
    );
    assert_eq!(json["properties"]["k"], "v");
}

#[tokio::test]
async fn the_device_list_filters_by_query_and_sorts() {
    let f = fixture();
    for (id, env) in [("q-a", "prod"), ("q-b", "test"), ("q-c", "prod")] {
        device(&f, id).await;
        f.state
            .hub
            .update_service_twin(
                TwinTarget::Device(id),
                &json!({"tags": {"env": env}}),
                None,
                false,
            )
            .await
            .unwrap();
    }
    let (cookie, _) = owner(&f).await;
    let all = get(&f.app, "/ui/devices", Some(&cookie)).await;
    assert!(all.body.contains(">q-a<") && all.body.contains(">q-b<"));
    let q = percent("SELECT * FROM devices WHERE tags.env = 'prod'");
    let prod = get(&f.app, &format!("/ui/devices?q={q}"), Some(&cookie)).await;
    assert_eq!(prod.status, StatusCode::OK);
    assert!(
        prod.body.contains(">q-a<") && prod.body.contains(">q-c<"),
        "{}",
        prod.body
    );
    assert!(!prod.body.contains(">q-b<"));
    let count = get(
        &f.app,
        &format!(
            "/ui/devices?q={}",
            percent("SELECT COUNT() AS n FROM devices")
        ),
        Some(&cookie),
    )
    .await;
    assert!(
        count.body.contains("&quot;n&quot;: 3") || count.body.contains("\"n\": 3"),
        "{}",
        count.body
    );
    let bad = get(
        &f.app,
        &format!("/ui/devices?q={}", percent("SELECT FROM WHERE")),
        Some(&cookie),
    )
    .await;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(bad.body.contains("does not parse"));
    let sorted = get(&f.app, "/ui/devices?sort=status", Some(&cookie)).await;
    assert_eq!(sorted.status, StatusCode::OK);
}

#[tokio::test]
async fn edge_devices_are_listed_and_get_their_modules_set() {
    let f = fixture();
    edge_device(&f, "edge-9", json!({})).await;
    device(&f, "leaf-9").await;
    let (cookie, csrf) = owner(&f).await;
    let list = get(&f.app, "/ui/edge", Some(&cookie)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains(">edge-9<") && !list.body.contains(">leaf-9<"),
        "{}",
        list.body
    );
    assert!(list.body.contains("not reported yet"));
    let bad = post(
        &f.app,
        "/ui/devices/edge-9/modules",
        Some(&cookie),
        &[("csrf", &csrf), ("modules_content", "{}")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    let leaf = post(
        &f.app,
        "/ui/devices/leaf-9/modules",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("modules_content", &modules_content().to_string()),
        ],
    )
    .await;
    assert_eq!(
        leaf.status,
        StatusCode::BAD_REQUEST,
        "not an edge device: {}",
        leaf.body
    );
    let ok = post(
        &f.app,
        "/ui/devices/edge-9/modules",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("modules_content", &modules_content().to_string()),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let agent = f
        .state
        .hub
        .service_twin(TwinTarget::Module("edge-9", "$edgeAgent"))
        .await
        .unwrap();
    assert!(
        agent
            .properties
            .desired
            .pointer("/modules/sensor")
            .is_some(),
        "{:?}",
        agent.properties.desired
    );
    let (ro, ro_csrf) = sign_in(
        &f,
        &connection_string(HUB, policy(&f.hub_policies, "registryRead")),
        "",
    )
    .await;
    let page = get(&f.app, "/ui/devices/edge-9", Some(&ro)).await;
    assert!(!page.body.contains("Set modules"));
    let refused = post(
        &f.app,
        "/ui/devices/edge-9/modules",
        Some(&ro),
        &[("csrf", &ro_csrf), ("modules_content", "{}")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn enrollments_are_edited_with_etags_and_keys_regenerated() {
    let f = fixture();
    let (cookie, csrf) = owner(&f).await;
    post(
        &f.app,
        "/ui/groups/new",
        Some(&cookie),
        &[("csrf", &csrf), ("id", "ge")],
    )
    .await;
    let before = f.state.dps.get_group("ge").await.unwrap();
    let etag = before.etag.clone().unwrap_or_default();
    let keys = before.attestation.symmetric_key.clone().unwrap();
    let page = get(&f.app, "/ui/groups/ge", Some(&cookie)).await;
    assert!(page.body.contains("Save changes"));
    let bad = post(
        &f.app,
        "/ui/groups/ge/edit",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("etag", &etag),
            ("status", "disabled"),
            ("initial_twin", "{oops"),
            ("regenerate", "both"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        f.state.dps.get_group("ge").await.unwrap(),
        before,
        "nothing saved"
    );
    let ok = post(
        &f.app,
        "/ui/groups/ge/edit",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("etag", &etag),
            ("status", "disabled"),
            ("initial_twin", r#"{"tags": {"a": 1}}"#),
            ("regenerate", "primary"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let after = f.state.dps.get_group("ge").await.unwrap();
    let new_keys = after.attestation.symmetric_key.clone().unwrap();
    assert_eq!(after.provisioning_status.as_deref(), Some("disabled"));
    assert_ne!(
        new_keys.primary_key, keys.primary_key,
        "primary regenerated"
    );
    assert_eq!(new_keys.secondary_key, keys.secondary_key, "secondary kept");
    assert_eq!(
        after.initial_twin.as_ref().unwrap().tags.as_ref().unwrap()["a"],
        1
    );
    let stale = post(
        &f.app,
        "/ui/groups/ge/edit",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("etag", &etag),
            ("status", "enabled"),
            ("initial_twin", ""),
        ],
    )
    .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert_eq!(
        f.state.dps.get_group("ge").await.unwrap(),
        after,
        "nothing saved"
    );

    post(
        &f.app,
        "/ui/enrollments/new",
        Some(&cookie),
        &[("csrf", &csrf), ("registration_id", "ie")],
    )
    .await;
    let e = f.state.dps.get_enrollment("ie").await.unwrap();
    let ok = post(
        &f.app,
        "/ui/enrollments/ie/edit",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("etag", e.etag.as_deref().unwrap_or("")),
            ("status", "disabled"),
            ("initial_twin", ""),
            ("regenerate", "both"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let e2 = f.state.dps.get_enrollment("ie").await.unwrap();
    assert_eq!(e2.provisioning_status.as_deref(), Some("disabled"));
    let (k1, k2) = (
        e.attestation.symmetric_key.unwrap(),
        e2.attestation.symmetric_key.unwrap(),
    );
    assert!(k1.primary_key != k2.primary_key && k1.secondary_key != k2.secondary_key);
    let no_csrf = post(
        &f.app,
        "/ui/enrollments/ie/edit",
        Some(&cookie),
        &[("csrf", ""), ("status", "enabled")],
    )
    .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn module_twins_are_shown_and_edited() {
    let f = fixture();
    device(&f, "md-1").await;
    f.state
        .hub
        .put_module("md-1", "filter", fleethub_api::hub::Module::default(), None)
        .await
        .unwrap();
    let (cookie, csrf) = owner(&f).await;
    let page = get(&f.app, "/ui/devices/md-1", Some(&cookie)).await;
    assert!(
        page.body.contains("/ui/devices/md-1/modules/filter"),
        "{}",
        page.body
    );
    let module = get(&f.app, "/ui/devices/md-1/modules/filter", Some(&cookie)).await;
    assert_eq!(module.status, StatusCode::OK);
    let etag = module
        .body
        .split("name=\"etag\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let ok = post(
        &f.app,
        "/ui/devices/md-1/modules/filter/twin",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("etag", &etag),
            ("twin", r#"{"properties": {"desired": {"threshold": 7}}}"#),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let twin = f
        .state
        .hub
        .get_twin(TwinTarget::Module("md-1", "filter"))
        .await
        .unwrap();
    assert_eq!(twin.properties.desired["threshold"], 7);
    let stale = post(
        &f.app,
        "/ui/devices/md-1/modules/filter/twin",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("etag", &etag),
            ("twin", r#"{"properties": {"desired": {"threshold": 8}}}"#),
        ],
    )
    .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let missing = get(&f.app, "/ui/devices/md-1/modules/nope", Some(&cookie)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// Every state-changing route (all POSTs but sign-in) refuses a request without this session's
/// CSRF token, and such a request changes nothing.
#[tokio::test]
async fn every_post_needs_the_csrf_token() {
    let f = fixture();
    edge_device(&f, "x-edge", json!({})).await;
    f.state
        .hub
        .put_module("x-edge", "m", fleethub_api::hub::Module::default(), None)
        .await
        .unwrap();
    let (cookie, csrf) = owner(&f).await;
    post(
        &f.app,
        "/ui/groups/new",
        Some(&cookie),
        &[("csrf", &csrf), ("id", "xg")],
    )
    .await;
    post(
        &f.app,
        "/ui/enrollments/new",
        Some(&cookie),
        &[("csrf", &csrf), ("registration_id", "xe")],
    )
    .await;
    let manifest = modules_content().to_string();
    post(
        &f.app,
        "/ui/deployments/new",
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("id", "xd"),
            ("target_condition", "tags.a='b'"),
            ("priority", "1"),
            ("modules_content", &manifest),
        ],
    )
    .await;
    let before = (
        f.state.dps.get_group("xg").await.unwrap(),
        f.state.dps.get_enrollment("xe").await.unwrap(),
        f.state.hub.get_configuration("xd").await.unwrap().etag,
        f.state
            .hub
            .get_twin(TwinTarget::Device("x-edge"))
            .await
            .unwrap(),
        f.state
            .hub
            .get_twin(TwinTarget::Module("x-edge", "m"))
            .await
            .unwrap(),
        f.state.hub.pending_c2d("x-edge").await.unwrap().len(),
    );
    let routes: [(&str, Vec<(&str, &str)>); 15] = [
        ("/ui/logout", vec![]),
        ("/ui/groups/new", vec![("id", "xg2")]),
        ("/ui/groups/xg/delete", vec![]),
        ("/ui/groups/xg/edit", vec![("status", "disabled")]),
        ("/ui/groups/xg/registrations/r1/delete", vec![]),
        ("/ui/enrollments/new", vec![("registration_id", "xe2")]),
        ("/ui/enrollments/xe/delete", vec![]),
        ("/ui/enrollments/xe/edit", vec![("status", "disabled")]),
        (
            "/ui/devices/x-edge/twin",
            vec![("twin", r#"{"tags": {"t": 1}}"#)],
        ),
        ("/ui/devices/x-edge/method", vec![("method", "m")]),
        ("/ui/devices/x-edge/c2d", vec![("body", "b")]),
        (
            "/ui/devices/x-edge/modules",
            vec![("modules_content", manifest.as_str())],
        ),
        (
            "/ui/devices/x-edge/modules/m/twin",
            vec![("twin", r#"{"tags": {"t": 1}}"#)],
        ),
        (
            "/ui/deployments/new",
            vec![
                ("id", "xd2"),
                ("target_condition", "tags.a='b'"),
                ("priority", "1"),
                ("modules_content", manifest.as_str()),
            ],
        ),
        ("/ui/deployments/xd/delete", vec![]),
    ];
    for (path, fields) in &routes {
        for token in [None, Some("forged")] {
            let mut all = fields.clone();
            if let Some(t) = token {
                all.push(("csrf", t));
            }
            let a = post(&f.app, path, Some(&cookie), &all).await;
            assert!(
                a.status == StatusCode::FORBIDDEN || a.status == StatusCode::UNPROCESSABLE_ENTITY,
                "{path} with csrf {token:?}: {}",
                a.status
            );
        }
    }
    let after = (
        f.state.dps.get_group("xg").await.unwrap(),
        f.state.dps.get_enrollment("xe").await.unwrap(),
        f.state.hub.get_configuration("xd").await.unwrap().etag,
        f.state
            .hub
            .get_twin(TwinTarget::Device("x-edge"))
            .await
            .unwrap(),
        f.state
            .hub
            .get_twin(TwinTarget::Module("x-edge", "m"))
            .await
            .unwrap(),
        f.state.hub.pending_c2d("x-edge").await.unwrap().len(),
    );
    assert_eq!(before, after, "nothing changed");
    assert!(f.state.dps.get_group("xg2").await.is_err());
    assert!(f.state.dps.get_enrollment("xe2").await.is_err());
    assert!(f.state.hub.get_configuration("xd2").await.is_err());
    // The session is still there (the forged sign-out did nothing).
    assert_eq!(
        get(&f.app, "/ui/", Some(&cookie)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn enrollments_are_filtered_by_id_and_sorted() {
    let f = fixture();
    let (cookie, csrf) = owner(&f).await;
    for id in ["plant-a", "plant-b", "office-1"] {
        post(
            &f.app,
            "/ui/enrollments/new",
            Some(&cookie),
            &[("csrf", &csrf), ("registration_id", id)],
        )
        .await;
    }
    post(
        &f.app,
        "/ui/groups/new",
        Some(&cookie),
        &[("csrf", &csrf), ("id", "plant-group")],
    )
    .await;
    post(
        &f.app,
        "/ui/groups/new",
        Some(&cookie),
        &[("csrf", &csrf), ("id", "office-group")],
    )
    .await;
    let plant = get(&f.app, "/ui/enrollments?filter=PLANT", Some(&cookie)).await;
    assert_eq!(plant.status, StatusCode::OK);
    assert!(
        plant.body.contains(">plant-a<")
            && plant.body.contains(">plant-b<")
            && plant.body.contains(">plant-group<")
    );
    assert!(!plant.body.contains(">office-1<") && !plant.body.contains(">office-group<"));
    let sorted = get(&f.app, "/ui/enrollments?sort=updated", Some(&cookie)).await;
    let (a, o) = (
        sorted.body.find(">plant-a<").unwrap(),
        sorted.body.find(">office-1<").unwrap(),
    );
    assert!(o < a, "the most recently updated first");
}

//! `docs/openapi.json` describes exactly the routes the router serves ([`ROUTES`], which the
//! router is built from), with the two error shapes; and every route answers through the
//! router (401 without credentials: none is open).

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use fleethub_http::{ROUTE_PERMISSIONS, ROUTES};
use fleethub_services::Right;
use serde_json::Value;
use std::collections::BTreeSet;
use tower::ServiceExt;

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

fn spec() -> Value {
    let text = std::fs::read_to_string(SPEC).unwrap_or_else(|e| panic!("{SPEC}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{SPEC} is not JSON: {e}"))
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

#[test]
fn spec_lists_exactly_the_routes() {
    let spec = spec();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.0"));
    let paths = spec["paths"].as_object().expect("paths");

    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_ascii_lowercase(), p.to_string()))
        .collect();
    assert_eq!(served.len(), ROUTES.len(), "duplicate entries in ROUTES");
    let described: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();

    let missing: Vec<_> = served.difference(&described).collect();
    assert!(
        missing.is_empty(),
        "routes missing from {SPEC}: {missing:?}"
    );
    let extra: Vec<_> = described.difference(&served).collect();
    assert!(
        extra.is_empty(),
        "{SPEC} describes routes not served: {extra:?}"
    );

    // every operation documents its answers, and path parameters match the template
    for (method, path) in &served {
        let op = &paths[path.as_str()][method.as_str()];
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path}: no responses"
        );
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, templated, "{method} {path}: path parameters");
    }
}

#[test]
fn spec_has_both_error_shapes_and_resolvable_refs() {
    let spec = spec();
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in ["HubErrorBody", "DpsErrorBody"] {
        assert!(schemas.contains_key(name), "schema {name}");
    }
    assert_eq!(
        spec["components"]["schemas"]["HubErrorBody"]["required"],
        serde_json::json!(["Message", "ExceptionMessage"])
    );
    let text = spec.to_string();
    for piece in text.split("\"$ref\":\"#/components/").skip(1) {
        let target = piece.split('"').next().unwrap();
        let (kind, name) = target.split_once('/').unwrap();
        assert!(
            spec["components"][kind].get(name).is_some(),
            "unresolved $ref #/components/{target}"
        );
    }
}

/// Routes anyone may call (probes and the API description).
fn public(method: &str, path: &str) -> bool {
    ROUTE_PERMISSIONS
        .iter()
        .any(|(m, p, perm)| *m == method && *p == path && *perm == "public")
}

#[tokio::test]
async fn every_route_is_served_and_needs_credentials() {
    let f = fixture();
    for (method, path) in ROUTES {
        if public(method, path) {
            let r = f
                .raw(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    path,
                    &[],
                    Body::empty(),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{method} {path} is open");
            continue;
        }
        // `POST /devices/{id}` only exists as `POST /devices/query`
        let uri: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "query" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = f.raw(method.clone(), &uri, &[], Body::empty()).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

/// Every operation names who may call it (`x-fleethub-permission`), exactly as the route table
/// declares it.
#[test]
fn spec_documents_every_route_permission() {
    let spec = spec();
    assert_eq!(ROUTE_PERMISSIONS.len(), ROUTES.len());
    for (method, path, permission) in ROUTE_PERMISSIONS {
        let op = &spec["paths"][*path][method.to_ascii_lowercase().as_str()];
        assert_eq!(
            op["x-fleethub-permission"].as_str(),
            Some(*permission),
            "{method} {path}: x-fleethub-permission"
        );
        for alternative in permission.split('|') {
            let known = ["public", "registration", "device", "edgeDevice"].contains(&alternative)
                || policy_right(alternative, "dps").is_some()
                || policy_right(alternative, "hub").is_some();
            assert!(known, "{method} {path}: unknown permission {alternative:?}");
        }
    }
}

/// `dps:Right` / `hub:Right` -> the right, for the endpoint `prefix`.
fn policy_right(alternative: &str, prefix: &str) -> Option<Right> {
    let name = alternative.strip_prefix(prefix)?.strip_prefix(':')?;
    serde_json::from_value(Value::String(name.to_string())).ok()
}

/// The handlers enforce the declared permissions: for every route and every default DPS and hub
/// policy, a valid token of that policy is refused (401/403) exactly when the policy has none of
/// the rights the route declares for its endpoint (routes for device tokens refuse them all).
#[tokio::test]
async fn handlers_enforce_the_declared_permissions() {
    let f = fixture();
    let policies: Vec<(&str, &str, String, Vec<Right>)> = f
        .dps_auth
        .policies()
        .iter()
        .map(|p| ("dps", DPS_HOST, p.key_name.clone(), p.rights.clone()))
        .chain(
            f.hub_auth
                .policies()
                .iter()
                .map(|p| ("hub", HUB, p.key_name.clone(), p.rights.clone())),
        )
        .collect();
    for (method, path, permission) in ROUTE_PERMISSIONS {
        let uri: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "query" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (endpoint, host, name, rights) in &policies {
            let auth = if *endpoint == "dps" {
                &f.dps_auth
            } else {
                &f.hub_auth
            };
            let token = policy_token(auth, host, name);
            let allowed = *permission == "public"
                || permission
                    .split('|')
                    .filter_map(|a| policy_right(a, endpoint))
                    .any(|r| rights.contains(&r));
            let req = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&uri)
                .header("authorization", token)
                .body(Body::empty())
                .unwrap();
            // the status only: the live tail's body never ends
            let status = f.app.clone().oneshot(req).await.unwrap().status();
            let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
            assert_eq!(
                refused, !allowed,
                "{method} {uri} ({permission}) with {endpoint} policy {name}: {status}"
            );
        }
    }
}

/// The probes answer without credentials, and the served document is the committed one.
#[tokio::test]
async fn probes_and_the_served_document() {
    let f = fixture();
    let r = f.raw(Method::GET, "/healthz", &[], Body::empty()).await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::OK, serde_json::json!({"status": "ok"}))
    );
    let r = f.raw(Method::GET, "/readyz", &[], Body::empty()).await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::OK, serde_json::json!({"status": "ready"}))
    );
    let r = f
        .raw(Method::GET, "/openapi.json", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(r.json(), spec());
}

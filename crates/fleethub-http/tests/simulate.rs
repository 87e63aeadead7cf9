//! `POST /registrations/{id}/simulate`: the dry run of a registration through the router, with
//! the DPS service SAS and the key in the body.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::*;
use fleethub_core::keys;
use serde_json::json;

const API: &str = "api-version=2021-10-01";

#[tokio::test]
async fn simulate_reports_without_registering() {
    let f = fixture();
    let key = keys::generate_key();
    let enrollment = json!({
        "registrationId": "dev-sim",
        "deviceId": "sim-device",
        "attestation": {"type": "symmetricKey",
                        "symmetricKey": {"primaryKey": key, "secondaryKey": keys::generate_key()}},
        "capabilities": {"iotEdge": false},
        "initialTwin": {"tags": {"env": "lab"}},
    });
    let r = f
        .svc(
            Method::PUT,
            &format!("/enrollments/dev-sim?{API}"),
            &[],
            enrollment.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    let uri = format!("/registrations/dev-sim/simulate?{API}");
    let r = f
        .svc(Method::POST, &uri, &[], json!({"key": key}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["result"], "assigned");
    assert_eq!(r.json["key"], "primary");
    assert_eq!(r.json["assignedHub"], HUB);
    assert_eq!(r.json["deviceId"], "sim-device");
    assert_eq!(r.json["initialTwin"]["tags"]["env"], "lab");
    assert_eq!(r.json["deviceExists"], false);

    // No body: the key is not checked. A wrong key: unauthorized, and nothing is logged.
    let r = f.svc(Method::POST, &uri, &[], Body::empty()).await;
    assert_eq!(
        (r.json["result"].as_str(), r.json["key"].as_str()),
        (Some("assigned"), Some("notChecked"))
    );
    let r = f
        .svc(
            Method::POST,
            &uri,
            &[],
            json!({"key": keys::generate_key()}).to_string(),
        )
        .await;
    assert_eq!(r.json["result"], "unauthorized");
    assert!(
        f.hub.get_device("sim-device").await.is_err(),
        "nothing created"
    );

    // Unknown fields and bad IDs are 400; the read-only policy may simulate, the hub's may not.
    let r = f
        .svc(Method::POST, &uri, &[], r#"{"primaryKey":"x"}"#)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let r = f
        .svc(
            Method::POST,
            &format!("/registrations/bad%20id/simulate?{API}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let read_only = policy_token(&f.dps_auth, DPS_HOST, "enrollmentread");
    let r = f
        .call(
            Method::POST,
            &uri,
            &[("authorization", read_only.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = f.hub_svc(Method::POST, &uri, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
}

//! The HTTP APIs end to end through the router: real SQLite store, real `Dps`, real SAS tokens.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::*;
use fleethub_core::keys;
use fleethub_http::MAX_BODY_BYTES;
use serde_json::{Value, json};

fn enrollment(reg: &str) -> String {
    json!({"registrationId": reg, "attestation": {"type": "symmetricKey"}, "capabilities": {"iotEdge": false}})
        .to_string()
}

#[tokio::test]
async fn enrollment_create_get_update_if_match_delete() {
    let f = fixture();
    let uri = "/enrollments/dev-01?api-version=2021-10-01";
    let created = f.svc(Method::PUT, uri, &[], enrollment("dev-01")).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    assert_eq!(created.json["registrationId"], "dev-01");
    assert!(created.json["attestation"]["symmetricKey"]["primaryKey"].is_string());
    let etag = created.json["etag"].as_str().unwrap().to_string();

    // any api-version, or none
    let got = f
        .svc(Method::GET, "/enrollments/DEV-01", &[], Body::empty())
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json["etag"], etag.as_str());

    let mut changed = got.json.clone();
    changed["capabilities"]["iotEdge"] = json!(true);
    let stale = f
        .svc(
            Method::PUT,
            uri,
            &[("if-match", "\"not-the-etag\"")],
            changed.to_string(),
        )
        .await;
    assert_hub_error(&stale, 412, "PreconditionFailed");

    let quoted = format!("\"{}\"", etag.trim_matches('"'));
    let updated = f
        .svc(
            Method::PUT,
            uri,
            &[("if-match", &quoted)],
            changed.to_string(),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.json);
    assert_eq!(updated.json["capabilities"]["iotEdge"], true);
    assert_ne!(updated.json["etag"], etag.as_str());

    let att = f
        .svc(
            Method::POST,
            "/enrollments/dev-01/attestationmechanism",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(att.status, StatusCode::OK);
    assert_eq!(att.json["type"], "symmetricKey");

    let stale_delete = f
        .svc(
            Method::DELETE,
            uri,
            &[("if-match", "\"nope\"")],
            Body::empty(),
        )
        .await;
    assert_hub_error(&stale_delete, 412, "PreconditionFailed");
    let deleted = f.svc(Method::DELETE, uri, &[], Body::empty()).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(deleted.json, Value::Null);
    assert_hub_error(
        &f.svc(Method::GET, uri, &[], Body::empty()).await,
        404,
        "NotFound",
    );
}

#[tokio::test]
async fn enrollment_query_pages_with_continuation_only_when_more() {
    let f = fixture();
    for i in 0..5 {
        let r = f
            .svc(
                Method::PUT,
                &format!("/enrollments/dev-{i}"),
                &[],
                enrollment(&format!("dev-{i}")),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let all = f
        .svc(
            Method::POST,
            "/enrollments/query?api-version=2021-10-01",
            &[],
            r#"{"query":"*"}"#,
        )
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.json.as_array().unwrap().len(), 5);
    assert_eq!(header(&all, "x-ms-item-type"), Some("enrollment"));
    assert!(all.headers.get("x-ms-continuation").is_none());

    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut h = vec![("x-ms-max-item-count", "2")];
        if let Some(c) = &continuation {
            h.push(("x-ms-continuation", c.as_str()));
        }
        // body optional, and keyword case does not matter
        let page = f
            .svc(Method::POST, "/Enrollments/Query", &h, Body::empty())
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.json);
        pages += 1;
        for e in page.json.as_array().unwrap() {
            seen.push(e["registrationId"].as_str().unwrap().to_string());
        }
        continuation = header(&page, "x-ms-continuation").map(str::to_string);
        match &continuation {
            Some(c) => assert!(!c.is_empty()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["dev-0", "dev-1", "dev-2", "dev-3", "dev-4"]);

    let unsupported = f
        .svc(
            Method::POST,
            "/enrollments/query",
            &[],
            r#"{"query":"SELECT * FROM enrollments WHERE x=1"}"#,
        )
        .await;
    assert_hub_error(&unsupported, 400, "ArgumentInvalid");
}

#[tokio::test]
async fn group_device_registers_over_https_and_group_delete_keeps_records() {
    let f = fixture();
    let group_key = keys::generate_key();
    let group = json!({
        "enrollmentGroupId": "grp-1",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": group_key, "secondaryKey": keys::generate_key()}},
    });
    let r = f
        .svc(
            Method::PUT,
            "/enrollmentGroups/grp-1?api-version=2018-09-01-preview",
            &[],
            group.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // Node spells it /enrollmentgroups/ for the attestation mechanism
    let att = f
        .svc(
            Method::POST,
            "/enrollmentgroups/grp-1/attestationmechanism?api-version=2021-10-01",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    assert_eq!(att.json["symmetricKey"]["primaryKey"], group_key.as_str());

    let device_key = keys::derive_device_key(&group_key, "sensor-7").unwrap();
    let token = device_token("sensor-7", &device_key);
    let auth = [
        ("authorization", token.as_str()),
        ("content-type", "application/json; charset=utf-8"),
    ];
    let reg = f
        .call(
            Method::PUT,
            &format!("/{SCOPE}/registrations/sensor-7/register?api-version=2021-06-01"),
            &auth,
            r#"{"registrationId":"sensor-7"}"#,
        )
        .await;
    assert_eq!(reg.status, StatusCode::ACCEPTED, "{}", reg.json);
    assert_eq!(
        header(&reg, "retry-after"),
        Some(RETRY_AFTER.to_string().as_str())
    );
    assert_eq!(reg.json["status"], "assigning");
    let op = reg.json["operationId"].as_str().unwrap().to_string();

    // Node sends "{}" on the poll GET
    let poll = f
        .call(
            Method::GET,
            &format!("/{SCOPE}/registrations/sensor-7/operations/{op}?api-version=2019-03-31"),
            &auth,
            "{}",
        )
        .await;
    assert_eq!(poll.status, StatusCode::OK, "{}", poll.json);
    assert_eq!(poll.json["status"], "assigned");
    assert_eq!(poll.json["operationId"], op.as_str());
    let state = &poll.json["registrationState"];
    assert_eq!(state["assignedHub"], HUB);
    assert_eq!(state["deviceId"], "sensor-7");
    assert_eq!(state["symmetricKey"]["enrollmentGroupId"], "grp-1");

    // device-side status lookup
    let lookup = f
        .call(
            Method::POST,
            &format!("/{SCOPE}/registrations/sensor-7"),
            &auth,
            Body::empty(),
        )
        .await;
    assert_eq!(lookup.status, StatusCode::OK, "{}", lookup.json);
    assert_eq!(lookup.json["assignedHub"], HUB);

    // registrations of the group, as provisioningserviceclient 1.2.0 asks (POST, no body)
    let token = f.owner();
    let q = f
        .call(
            Method::POST,
            "/registrations/grp-1/query?api-version=2018-09-01-preview",
            &[("authorization", &token)],
            Body::empty(),
        )
        .await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.json);
    assert_eq!(q.json.as_array().unwrap().len(), 1);
    assert_eq!(q.json[0]["registrationId"], "sensor-7");
    assert_eq!(header(&q, "x-ms-item-type"), Some("deviceRegistration"));
    assert!(q.headers.get("x-ms-continuation").is_none());

    let groups = f
        .svc(
            Method::POST,
            "/enrollmentGroups/query",
            &[],
            r#"{"query":"*"}"#,
        )
        .await;
    assert_eq!(groups.json.as_array().unwrap().len(), 1);
    assert_eq!(header(&groups, "x-ms-item-type"), Some("enrollmentGroup"));

    let del = f
        .svc(
            Method::DELETE,
            "/enrollmentGroups/grp-1",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let kept = f
        .svc(Method::GET, "/registrations/sensor-7", &[], Body::empty())
        .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.json);
    assert_eq!(kept.json["deviceId"], "sensor-7");
    let del_reg = f
        .svc(
            Method::DELETE,
            "/registrations/sensor-7",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(del_reg.status, StatusCode::NO_CONTENT);
    assert_hub_error(
        &f.svc(Method::GET, "/registrations/sensor-7", &[], Body::empty())
            .await,
        404,
        "NotFound",
    );
}

#[tokio::test]
async fn empty_register_body_is_accepted() {
    let f = fixture();
    let key = keys::generate_key();
    let e = json!({"registrationId": "edge-01", "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}});
    assert_eq!(
        f.svc(Method::PUT, "/enrollments/edge-01", &[], e.to_string())
            .await
            .status,
        StatusCode::OK
    );
    let token = device_token("edge-01", &key);
    let r = f
        .call(
            Method::PUT,
            &format!("/{SCOPE}/Registrations/edge-01/Register"),
            &[("authorization", &token)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    assert_eq!(r.json["registrationState"]["registrationId"], "edge-01");
}

#[tokio::test]
async fn wrong_device_key_is_401_and_visible_in_diagnostics() {
    let f = fixture();
    let e = enrollment("dev-09");
    assert_eq!(
        f.svc(Method::PUT, "/enrollments/dev-09", &[], e)
            .await
            .status,
        StatusCode::OK
    );
    let wrong = device_token("dev-09", &keys::generate_key());
    let r = f
        .call(
            Method::PUT,
            &format!("/{SCOPE}/registrations/dev-09/register?api-version=2021-06-01"),
            &[("authorization", &wrong)],
            "{}",
        )
        .await;
    assert_dps_error(&r, 401);
    assert_eq!(r.json["message"], "Unauthorized");
    assert_eq!(r.json["errorCode"], 401002);

    // no Authorization at all: 401 too, with a reason for the operator
    let r = f
        .call(
            Method::PUT,
            &format!("/{SCOPE}/registrations/dev-10/register"),
            &[],
            "{}",
        )
        .await;
    assert_dps_error(&r, 401);

    let diag = f
        .svc(
            Method::GET,
            "/diagnostics/authFailures?limit=2",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(diag.status, StatusCode::OK, "{}", diag.json);
    let entries = diag.json.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["identity"], "dev-10");
    assert!(
        entries[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no Authorization header")
    );
    assert_eq!(entries[1]["identity"], "dev-09");
    assert_eq!(entries[1]["transport"], "https");
    assert!(
        entries[1]["reason"]
            .as_str()
            .unwrap()
            .contains("signature mismatch"),
        "{}",
        entries[1]
    );

    // the hub policy with RegistryRead works too, a policy without it is refused
    let hub_owner = policy_token(&f.hub_auth, HUB, "iothubowner");
    let via_hub = f
        .call(
            Method::GET,
            "/diagnostics/authFailures",
            &[("authorization", &hub_owner)],
            Body::empty(),
        )
        .await;
    assert_eq!(via_hub.status, StatusCode::OK, "{}", via_hub.json);
    assert_eq!(via_hub.json.as_array().unwrap().len(), 2);
    let hub_service = policy_token(&f.hub_auth, HUB, "service");
    let forbidden = f
        .call(
            Method::GET,
            "/diagnostics/authFailures",
            &[("authorization", &hub_service)],
            Body::empty(),
        )
        .await;
    assert_hub_error(&forbidden, 403, "Forbidden");
    let read_only = policy_token(&f.dps_auth, DPS_HOST, "enrollmentread");
    let forbidden = f
        .call(
            Method::PUT,
            "/enrollments/x",
            &[("authorization", &read_only)],
            enrollment("x"),
        )
        .await;
    assert_hub_error(&forbidden, 403, "Forbidden");
}

#[tokio::test]
async fn malformed_registration_id_is_400() {
    let f = fixture();
    let token = device_token("bad~id", &keys::generate_key());
    let r = f
        .call(
            Method::PUT,
            &format!("/{SCOPE}/registrations/bad~id/register"),
            &[("authorization", &token)],
            "{}",
        )
        .await;
    assert_dps_error(&r, 400);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("registration ID"),
        "{}",
        r.json
    );
    let r = f
        .call(
            Method::PUT,
            &format!("/{SCOPE}/registrations/bad~id/register"),
            &[],
            "{}",
        )
        .await;
    assert_dps_error(&r, 400);
}

#[tokio::test]
async fn service_api_without_authorization_is_401_hub_style() {
    let f = fixture();
    let r = f
        .call(
            Method::GET,
            "/enrollments/dev-01?api-version=2021-10-01",
            &[],
            Body::empty(),
        )
        .await;
    assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");
    assert_eq!(
        r.json["Message"],
        "ErrorCode:IotHubUnauthorizedAccess;Unauthorized"
    );
    let r = f
        .call(Method::GET, "/diagnostics/authFailures", &[], Body::empty())
        .await;
    assert_hub_error(&r, 401, "IotHubUnauthorizedAccess");
}

#[tokio::test]
async fn oversize_bodies_are_413_json() {
    let f = fixture();
    let big = format!(
        r#"{{"registrationId":"dev-01","pad":"{}"}}"#,
        "x".repeat(MAX_BODY_BYTES)
    );
    let r = f
        .svc(Method::PUT, "/enrollments/dev-01", &[], big.clone())
        .await;
    assert_hub_error(&r, 413, "RequestEntityTooLarge");
    let r = f
        .call(
            Method::PUT,
            &format!("/{SCOPE}/registrations/dev-01/register"),
            &[],
            big,
        )
        .await;
    assert_dps_error(&r, 413);
}

#[tokio::test]
async fn malformed_json_is_400_with_position() {
    let f = fixture();
    let r = f
        .svc(
            Method::PUT,
            "/enrollments/dev-01",
            &[],
            "{\"registrationId\": \"dev-01\",\n ",
        )
        .await;
    assert_hub_error(&r, 400, "ArgumentInvalid");
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("line 2 column"),
        "{}",
        r.json
    );
    let r = f
        .svc(Method::PUT, "/enrollments/dev-01", &[], Body::empty())
        .await;
    assert_hub_error(&r, 400, "ArgumentInvalid");
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json() {
    let f = fixture();
    let r = f
        .call(
            Method::GET,
            "/no/such/thing?api-version=1",
            &[],
            Body::empty(),
        )
        .await;
    assert_hub_error(&r, 404, "NotFound");
    let r = f
        .call(
            Method::GET,
            &format!("/{SCOPE}/registrations/dev/unknown/x/y"),
            &[],
            Body::empty(),
        )
        .await;
    assert_dps_error(&r, 404);
    let r = f
        .svc(Method::PATCH, "/enrollments/dev-01", &[], Body::empty())
        .await;
    assert_hub_error(&r, 405, "MethodNotAllowed");
    let r = f
        .call(
            Method::DELETE,
            &format!("/{SCOPE}/registrations/dev-01/register"),
            &[],
            Body::empty(),
        )
        .await;
    assert_dps_error(&r, 405);
}

#[tokio::test]
async fn bulk_operations_including_nodes_trailing_slash() {
    let f = fixture();
    let ops = |mode: &str| {
        json!({"mode": mode, "enrollments": [
            {"registrationId": "b-1", "attestation": {"type": "symmetricKey"}},
            {"registrationId": "b-2", "attestation": {"type": "symmetricKey"}},
        ]})
        .to_string()
    };
    // Node posts to /enrollments/ (trailing slash), Python to /enrollments
    let created = f
        .svc(
            Method::POST,
            "/enrollments/?api-version=2021-10-01",
            &[],
            ops("create"),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    assert_eq!(created.json["isSuccessful"], true);
    let again = f
        .svc(Method::POST, "/enrollments", &[], ops("create"))
        .await;
    assert_eq!(again.json["isSuccessful"], false);
    assert_eq!(again.json["errors"].as_array().unwrap().len(), 2);
    let deleted = f
        .svc(Method::POST, "/enrollments", &[], ops("delete"))
        .await;
    assert_eq!(deleted.json["isSuccessful"], true, "{}", deleted.json);

    let groups = json!({"mode": "create", "enrollmentGroups": [
        {"enrollmentGroupId": "g-1", "attestation": {"type": "symmetricKey"}},
    ]});
    let r = f
        .svc(Method::POST, "/enrollmentGroups", &[], groups.to_string())
        .await;
    assert_eq!(r.json["isSuccessful"], true, "{}", r.json);
    assert_eq!(
        f.svc(Method::GET, "/enrollmentGroups/G-1", &[], Body::empty())
            .await
            .status,
        StatusCode::OK
    );
}

/// `query` is a valid registration / group ID: only POST on it is the query.
#[tokio::test]
async fn enrollment_and_group_named_query() {
    let f = fixture();
    let put = f
        .svc(Method::PUT, "/enrollments/query", &[], enrollment("query"))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    let got = f
        .svc(Method::GET, "/enrollments/query", &[], Body::empty())
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.json);
    assert_eq!(got.json["registrationId"], "query");
    let listed = f
        .svc(Method::POST, "/enrollments/Query", &[], r#"{"query":"*"}"#)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.json);
    assert_eq!(listed.json[0]["registrationId"], "query");
    let not_query = f
        .svc(Method::POST, "/enrollments/dev-1", &[], r#"{"query":"*"}"#)
        .await;
    assert_hub_error(&not_query, 405, "MethodNotAllowed");
    let deleted = f
        .svc(Method::DELETE, "/enrollments/query", &[], Body::empty())
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let group = json!({"enrollmentGroupId": "query", "attestation": {"type": "symmetricKey"}});
    let put = f
        .svc(
            Method::PUT,
            "/enrollmentGroups/query",
            &[],
            group.to_string(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    let got = f
        .svc(Method::GET, "/enrollmentgroups/query", &[], Body::empty())
        .await;
    assert_eq!(got.json["enrollmentGroupId"], "query");
    let listed = f
        .svc(Method::POST, "/enrollmentGroups/query", &[], Body::empty())
        .await;
    assert_eq!(listed.json[0]["enrollmentGroupId"], "query");
}

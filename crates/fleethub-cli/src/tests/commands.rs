//! The commands against the scripted transport: what goes on the wire, what comes out.

use super::fake::{self, body, client, empty, header, json, not_found, page, path};
use crate::diagnostics::{self, DiagnosticsCommand};
use crate::dps::{
    self, DpsCommand, EnrollmentCommand, EnrollmentFields, GroupCommand, RegistrationCommand,
};
use crate::output::Outcome;
use serde_json::{Value, json};

fn run(c: &crate::client::ServiceClient<fake::Fake>, cmd: DpsCommand) -> anyhow::Result<Outcome> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(dps::dispatch(cmd, c))
}

fn object(o: Outcome) -> Value {
    match o {
        Outcome::Object(v) => v,
        other => panic!("not an object: {other:?}"),
    }
}

fn list(o: Outcome) -> Vec<Value> {
    match o {
        Outcome::List(v, _) => v,
        other => panic!("not a list: {other:?}"),
    }
}

/// PUT echoes the body with an etag; GET answers 404.
fn echo_put(req: &crate::client::Request) -> anyhow::Result<crate::client::Response> {
    match req.method {
        "GET" => not_found("enrollment"),
        "PUT" => {
            let mut b = body(req);
            b["etag"] = json!("\"new\"");
            json(200, b)
        }
        m => panic!("unexpected {m}"),
    }
}

#[test]
fn compute_device_key_matches_the_vector() {
    assert_eq!(
        dps::compute_device_key(fake::KEY, "dev-01").unwrap(),
        "luaCqHSmg758Dy2PlrF3Vl83Pcf53G9Nc/vj86Xl0d4="
    );
    let e = dps::compute_device_key("not base64!", "dev-01")
        .unwrap_err()
        .to_string();
    assert!(e.contains("--key"), "{e}");
}

#[test]
fn enrollment_create_sends_a_valid_individual_enrollment() {
    let c = client(echo_put);
    let fields = EnrollmentFields {
        edge_enabled: Some(true),
        initial_twin_tags: Some(json!({"env": "prod"})),
        initial_twin_properties: Some(json!({"fw": "1.0"})),
        ..Default::default()
    };
    let out = object(
        run(
            &c,
            DpsCommand::Enrollment(EnrollmentCommand::Create {
                registration_id: "dev:01".into(),
                device_id: Some("device-1".into()),
                fields,
            }),
        )
        .unwrap(),
    );
    assert_eq!(out["etag"], "\"new\"");
    let reqs = c.transport().requests.lock().unwrap();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[0].method, path(&reqs[0])),
        ("GET", "/enrollments/dev%3A01")
    );
    let put = &reqs[1];
    assert_eq!(put.method, "PUT");
    assert_eq!(
        put.path_and_query,
        "/enrollments/dev%3A01?api-version=2021-10-01"
    );
    assert_eq!(header(put, "If-None-Match"), Some("*"));
    assert_eq!(
        header(put, "Content-Type"),
        Some("application/json; charset=utf-8")
    );
    let auth = header(put, "Authorization").unwrap();
    assert!(auth.starts_with("SharedAccessSignature "), "{auth}");
    assert!(
        auth.contains("sr=dps.fleethub.test") && auth.contains("skn=provisioningserviceowner"),
        "{auth}"
    );
    assert!(auth.contains("se=1700003600"), "{auth}");
    let sent: fleethub_api::IndividualEnrollment = serde_json::from_value(body(put)).unwrap();
    assert_eq!(sent.registration_id, "dev:01");
    assert_eq!(sent.device_id.as_deref(), Some("device-1"));
    assert_eq!(sent.attestation.kind, "symmetricKey");
    assert!(sent.capabilities.unwrap().iot_edge);
    let twin = sent.initial_twin.unwrap();
    assert_eq!(twin.tags, Some(json!({"env": "prod"})));
    assert_eq!(twin.properties.unwrap().desired, Some(json!({"fw": "1.0"})));
    assert_eq!(sent.provisioning_status, None);
}

#[test]
fn group_create_sends_a_valid_enrollment_group() {
    let c = client(echo_put);
    let fields = EnrollmentFields {
        primary_key: Some(fake::KEY.into()),
        provisioning_status: Some(dps::ProvisioningStatus::Disabled),
        ..Default::default()
    };
    run(
        &c,
        DpsCommand::EnrollmentGroup(GroupCommand::Create {
            group_id: "g1".into(),
            fields,
        }),
    )
    .unwrap();
    let reqs = c.transport().requests.lock().unwrap();
    assert_eq!(path(&reqs[1]), "/enrollmentGroups/g1");
    let sent: fleethub_api::EnrollmentGroup = serde_json::from_value(body(&reqs[1])).unwrap();
    assert_eq!(sent.enrollment_group_id, "g1");
    assert_eq!(sent.attestation.keys(), Some((fake::KEY, "")));
    assert_eq!(sent.provisioning_status.as_deref(), Some("disabled"));
}

#[test]
fn create_refuses_to_overwrite() {
    let c = client(|req| match req.method {
        "GET" => json(
            200,
            json!({"registrationId": "dev-01", "attestation": {"type": "symmetricKey"}}),
        ),
        m => panic!("unexpected {m}"),
    });
    let e = run(
        &c,
        DpsCommand::Enrollment(EnrollmentCommand::Create {
            registration_id: "dev-01".into(),
            device_id: None,
            fields: EnrollmentFields::default(),
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("already exists") && e.contains("enrollment update"),
        "{e}"
    );
}

fn stored_enrollment() -> Value {
    json!({
        "registrationId": "dev-01",
        "deviceId": "dev-01",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "p", "secondaryKey": "s"}},
        "capabilities": {"iotEdge": true},
        "initialTwin": {"tags": {"env": "prod"}},
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": "https://hook", "apiVersion": "2021-10-01"},
        "etag": "\"e1\"",
        "provisioningStatus": "enabled"
    })
}

#[test]
fn update_changes_only_the_given_fields_with_if_match() {
    let c = client(|req| match req.method {
        "GET" => json(200, stored_enrollment()),
        "PUT" => json(200, body(req)),
        m => panic!("unexpected {m}"),
    });
    let fields = EnrollmentFields {
        edge_enabled: Some(false),
        initial_twin_properties: Some(json!({"fw": "2.0"})),
        secondary_key: Some("s2".into()),
        ..Default::default()
    };
    let cmd = EnrollmentCommand::Update {
        registration_id: "dev-01".into(),
        device_id: Some("d2".into()),
        fields,
        etag: None,
    };
    let out = object(run(&c, DpsCommand::Enrollment(cmd)).unwrap());
    let mut want = stored_enrollment();
    want["capabilities"]["iotEdge"] = json!(false);
    want["initialTwin"]["properties"] = json!({"desired": {"fw": "2.0"}});
    want["attestation"]["symmetricKey"]["secondaryKey"] = json!("s2");
    want["deviceId"] = json!("d2");
    assert_eq!(out, want);
    let reqs = c.transport().requests.lock().unwrap();
    assert_eq!(header(&reqs[1], "If-Match"), Some("\"e1\""));
}

#[test]
fn update_with_etag_uses_it_and_reports_412() {
    let c = client(|req| match req.method {
        "GET" => json(200, stored_enrollment()),
        "PUT" => {
            assert_eq!(header(req, "If-Match"), Some("\"old\""));
            json(
                412,
                json!({"errorCode": 412001, "message": "etag mismatch", "trackingId": "t", "timestampUtc": "x"}),
            )
        }
        m => panic!("unexpected {m}"),
    });
    let fields = EnrollmentFields {
        provisioning_status: Some(dps::ProvisioningStatus::Disabled),
        ..Default::default()
    };
    let cmd = EnrollmentCommand::Update {
        registration_id: "dev-01".into(),
        device_id: None,
        fields,
        etag: Some("\"old\"".into()),
    };
    let e = run(&c, DpsCommand::Enrollment(cmd))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "PUT /enrollments/dev-01 failed: 412 Precondition Failed (412001): etag mismatch"
        ),
        "{e}"
    );
    assert!(e.contains("hint:"), "{e}");
}

#[test]
fn update_without_fields_is_refused_before_any_request() {
    let c = client(|_| panic!("no request expected"));
    let cmd = GroupCommand::Update {
        group_id: "g".into(),
        fields: EnrollmentFields::default(),
        etag: None,
    };
    let e = run(&c, DpsCommand::EnrollmentGroup(cmd))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("nothing to update"), "{e}");
}

#[test]
fn server_errors_show_status_code_and_message() {
    let c = client(|_| not_found("enrollment 'nope'"));
    let e = run(
        &c,
        DpsCommand::Enrollment(EnrollmentCommand::Show {
            registration_id: "nope".into(),
            show_keys: false,
        }),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "GET /enrollments/nope failed: 404 Not Found (DeviceNotFound): enrollment 'nope' not found"
    );
}

#[test]
fn list_follows_continuation_tokens() {
    let c = client(|req| {
        assert_eq!(req.method, "POST");
        assert_eq!(path(req), "/enrollments/query");
        assert_eq!(body(req), json!({"query": "*"}));
        assert_eq!(header(req, "x-ms-max-item-count"), Some("100"));
        match header(req, "x-ms-continuation") {
            None => page(
                json!([{"registrationId": "a"}, {"registrationId": "b"}]),
                Some("t1"),
            ),
            Some("t1") => page(json!([{"registrationId": "c"}]), Some("t2")),
            Some("t2") => page(json!([]), None),
            Some(other) => panic!("bad token {other}"),
        }
    });
    let items = list(
        run(
            &c,
            DpsCommand::Enrollment(EnrollmentCommand::List { show_keys: false }),
        )
        .unwrap(),
    );
    let ids: Vec<_> = items
        .iter()
        .map(|v| v["registrationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[test]
fn a_repeated_continuation_token_stops_the_loop() {
    let c = client(|_| page(json!([{"enrollmentGroupId": "g"}]), Some("same")));
    let e = run(
        &c,
        DpsCommand::EnrollmentGroup(GroupCommand::List { show_keys: false }),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("twice"), "{e}");
}

#[test]
fn delete_sends_if_match_and_prints_nothing() {
    let c = client(|req| {
        assert_eq!((req.method, path(req)), ("DELETE", "/registrations/dev-01"));
        assert_eq!(header(req, "If-Match"), Some("e9"));
        empty(204)
    });
    let out = run(
        &c,
        DpsCommand::Registration(RegistrationCommand::Delete {
            registration_id: "dev-01".into(),
            etag: Some("e9".into()),
        }),
    )
    .unwrap();
    assert_eq!(out.render(crate::OutputFormat::Json), "");
    assert_eq!(out.note(), Some("deleted registration record 'dev-01'"));
}

#[test]
fn registration_list_of_one_group() {
    let c = client(|req| {
        assert_eq!(
            (req.method, path(req)),
            ("POST", "/registrations/grp%3A1/query")
        );
        page(json!([{"registrationId": "x", "status": "assigned"}]), None)
    });
    let items = list(
        run(
            &c,
            DpsCommand::Registration(RegistrationCommand::List {
                group_id: Some("grp:1".into()),
            }),
        )
        .unwrap(),
    );
    assert_eq!(
        items,
        vec![json!({"registrationId": "x", "status": "assigned"})]
    );
}

#[test]
fn registration_list_all_walks_groups_and_enrollments() {
    let c = client(|req| match (req.method, path(req)) {
        ("POST", "/enrollmentGroups/query") => page(
            json!([{"enrollmentGroupId": "g1"}, {"enrollmentGroupId": "g2"}]),
            None,
        ),
        ("POST", "/registrations/g1/query") => page(
            json!([{"registrationId": "z"}, {"registrationId": "B"}]),
            None,
        ),
        ("POST", "/registrations/g2/query") => page(json!([{"registrationId": "c"}]), None),
        ("POST", "/enrollments/query") => page(
            json!([{"registrationId": "b"}, {"registrationId": "d"}, {"registrationId": "e"}]),
            None,
        ),
        ("GET", "/registrations/b") => json(200, json!({"registrationId": "b"})),
        ("GET", "/registrations/d") => json(200, json!({"registrationId": "d"})),
        ("GET", "/registrations/e") => not_found("registration 'e'"),
        other => panic!("unexpected {other:?}"),
    });
    let items = list(
        run(
            &c,
            DpsCommand::Registration(RegistrationCommand::List { group_id: None }),
        )
        .unwrap(),
    );
    let ids: Vec<_> = items
        .iter()
        .map(|v| v["registrationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["B", "c", "d", "z"]);
}

#[test]
fn registration_list_all_surfaces_non_404_errors() {
    let c = client(|req| match (req.method, path(req)) {
        ("POST", "/enrollmentGroups/query") => page(json!([]), None),
        ("POST", "/enrollments/query") => page(json!([{"registrationId": "b"}]), None),
        ("GET", "/registrations/b") => json(
            401,
            json!({"Message": "ErrorCode:IotHubUnauthorizedAccess;Unauthorized"}),
        ),
        other => panic!("unexpected {other:?}"),
    });
    let e = run(
        &c,
        DpsCommand::Registration(RegistrationCommand::List { group_id: None }),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "GET /registrations/b failed: 401 Unauthorized (IotHubUnauthorizedAccess): Unauthorized"
        ),
        "{e}"
    );
}

#[test]
fn auth_failures_query_and_table() {
    let c = client(|req| {
        assert_eq!(req.method, "GET");
        assert_eq!(
            req.path_and_query,
            "/diagnostics/authFailures?api-version=2021-10-01&limit=5"
        );
        json(
            200,
            json!([{
                "timeUtc": "2024-05-01T10:00:00Z", "endpoint": "dps", "transport": "mqtt",
                "identity": "dev-01", "peer": "10.0.0.7:5555", "reason": "signature mismatch"
            }, {
                "timeUtc": "2024-05-01T09:59:00Z", "endpoint": "hub", "transport": "https",
                "identity": "dev-02", "peer": null, "reason": "token expired"
            }]),
        )
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let out = rt
        .block_on(diagnostics::dispatch(
            DiagnosticsCommand::AuthFailures { limit: 5 },
            &c,
        ))
        .unwrap();
    let table = out.render(crate::OutputFormat::Table);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let cols: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "TIME",
            "ENDPOINT",
            "TRANSPORT",
            "IDENTITY",
            "PEER",
            "REASON"
        ]
    );
    assert!(
        lines[1].contains("10.0.0.7:5555") && lines[1].ends_with("signature mismatch"),
        "{table}"
    );
    assert!(
        lines[2].contains(" - ") && lines[2].ends_with("token expired"),
        "{table}"
    );
    let json_out: Value = serde_json::from_str(&out.render(crate::OutputFormat::Json)).unwrap();
    assert_eq!(json_out[1]["identity"], "dev-02");
}

//! Names and flags as `az iot` spells them: aliases, `--show-keys`, `compute-device-key
//! --group-id`, `-o yaml`, `monitor-events --module-id`.

use super::fake::{self, client, json, page, path};
use super::parse::{Top, parse};
use crate::dps::{self, DpsCommand, EnrollmentCommand, GroupCommand};
use crate::hub::monitor::module_matches;
use crate::output::{Outcome, OutputFormat};
use crate::{DeviceIdentityCommand, HubCommand, MonitorArgs};
use serde_json::{Value, json};

fn cmd(args: &[&str]) -> Top {
    parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).1
}

fn run(c: &crate::client::ServiceClient<fake::Fake>, cmd: DpsCommand) -> Outcome {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(dps::dispatch(cmd, c))
        .unwrap()
}

fn enrollment_with_keys() -> Value {
    json!({
        "registrationId": "dev-01",
        "attestation": {"type": "symmetricKey",
                        "symmetricKey": {"primaryKey": "PK==", "secondaryKey": "SK=="}},
        "registrationState": {"status": "assigned", "assignedHub": "hub.x"},
    })
}

#[test]
fn az_aliases_parse_like_the_long_names() {
    let long = cmd(&[
        "dps",
        "enrollment",
        "create",
        "--registration-id",
        "r1",
        "--device-id",
        "d1",
        "--edge-enabled",
    ]);
    for alias in [
        ["--enrollment-id", "--did", "--ee"],
        ["--eid", "--device-id", "--ee"],
    ] {
        let a = cmd(&[
            "dps",
            "enrollment",
            "create",
            alias[0],
            "r1",
            alias[1],
            "d1",
            alias[2],
        ]);
        assert_eq!(format!("{a:?}"), format!("{long:?}"));
    }
    let a = cmd(&["dps", "enrollment-group", "show", "--eid", "g1"]);
    let b = cmd(&["dps", "enrollment-group", "show", "--group-id", "g1"]);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));

    let short = cmd(&["hub", "device-identity", "create", "-d", "dev-01", "--ee"]);
    let Top::Hub {
        cmd: HubCommand::DeviceIdentity(DeviceIdentityCommand::Create { device_id, .. }),
        ..
    } = &short
    else {
        panic!("{short:?}")
    };
    assert_eq!(device_id, "dev-01");
    let long = cmd(&[
        "hub",
        "device-identity",
        "create",
        "--device-id",
        "dev-01",
        "--edge-enabled",
        "true",
    ]);
    assert_eq!(format!("{short:?}"), format!("{long:?}"));
    let a = cmd(&["hub", "device-twin", "show", "-d", "e1", "-m", "$edgeAgent"]);
    let b = cmd(&[
        "hub",
        "device-twin",
        "show",
        "--device-id",
        "e1",
        "--module-id",
        "$edgeAgent",
    ]);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

#[test]
fn show_and_list_hide_keys_unless_asked() {
    let c = client(|req| match (req.method, path(req)) {
        ("GET", "/enrollments/dev-01") => json(200, enrollment_with_keys()),
        ("POST", "/enrollments/query") => page(json!([enrollment_with_keys()]), None),
        other => panic!("unexpected {other:?}"),
    });
    let show = |show_keys| {
        let Outcome::Object(v) = run(
            &c,
            DpsCommand::Enrollment(EnrollmentCommand::Show {
                registration_id: "dev-01".into(),
                show_keys,
            }),
        ) else {
            panic!()
        };
        v
    };
    let hidden = show(false);
    assert_eq!(hidden["attestation"]["symmetricKey"], json!({}));
    assert_eq!(hidden["registrationState"]["status"], "assigned");
    let shown = show(true);
    assert_eq!(shown["attestation"]["symmetricKey"]["primaryKey"], "PK==");

    let Outcome::List(items, _) = run(
        &c,
        DpsCommand::Enrollment(EnrollmentCommand::List { show_keys: false }),
    ) else {
        panic!()
    };
    assert!(!items[0].to_string().contains("PK=="));
    let Outcome::List(items, cols) = run(
        &c,
        DpsCommand::Enrollment(EnrollmentCommand::List { show_keys: true }),
    ) else {
        panic!()
    };
    assert!(items[0].to_string().contains("SK=="));
    // The table's registration columns come from registrationState.
    let table = Outcome::List(items, cols).render(OutputFormat::Table);
    assert!(
        table.contains("assigned") && table.contains("hub.x"),
        "{table}"
    );

    let p = cmd(&["dps", "enrollment-group", "list", "--show-keys"]);
    assert!(format!("{p:?}").contains("show_keys: true"), "{p:?}");
}

#[test]
fn compute_device_key_reads_the_group_key() {
    let c = client(|req| {
        assert_eq!((req.method, path(req)), ("GET", "/enrollmentGroups/line-3"));
        json(
            200,
            json!({"enrollmentGroupId": "line-3",
                   "attestation": {"type": "symmetricKey",
                                   "symmetricKey": {"primaryKey": fake::KEY, "secondaryKey": "x"}}}),
        )
    });
    let out = run(
        &c,
        DpsCommand::EnrollmentGroup(GroupCommand::ComputeDeviceKey {
            key: None,
            group_id: Some("line-3".into()),
            registration_id: "dev-01".into(),
        }),
    );
    assert_eq!(
        out,
        Outcome::Text("luaCqHSmg758Dy2PlrF3Vl83Pcf53G9Nc/vj86Xl0d4=".into())
    );
    let parsed = cmd(&[
        "dps",
        "enrollment-group",
        "compute-device-key",
        "--group-id",
        "line-3",
        "--registration-id",
        "dev-01",
    ]);
    assert!(format!("{parsed:?}").contains("group_id: Some(\"line-3\")"));
    // One of --key and --group-id, not both, not neither.
    for bad in [
        &["--registration-id", "r"][..],
        &["--key", "K", "--group-id", "g", "--registration-id", "r"][..],
    ] {
        let mut v = vec!["dps", "enrollment-group", "compute-device-key"];
        v.extend_from_slice(bad);
        assert!(parse(&v).is_err(), "{v:?}");
    }
}

#[test]
fn x509_groups_have_no_key_to_derive_from() {
    let c = client(|_| {
        json(
            200,
            json!({"enrollmentGroupId": "g", "attestation": {"type": "x509"}}),
        )
    });
    let e = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(dps::dispatch(
            DpsCommand::EnrollmentGroup(GroupCommand::ComputeDeviceKey {
                key: None,
                group_id: Some("g".into()),
                registration_id: "r".into(),
            }),
            &c,
        ))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no symmetric primary key") && e.contains("x509"),
        "{e}"
    );
}

#[test]
fn yaml_output_for_objects_lists_and_fields() {
    let (client, _) = parse(&["dps", "enrollment", "list", "-o", "yaml"]).unwrap();
    assert_eq!(client.output, OutputFormat::Yaml);
    let obj = Outcome::Object(json!({"deviceId": "d1", "tags": {"env": "x"}}));
    assert_eq!(
        obj.render(OutputFormat::Yaml),
        "deviceId: d1\ntags:\n  env: x\n"
    );
    let list = Outcome::List(vec![json!({"a": 1}), json!({"a": 2})], &[]);
    assert_eq!(list.render(OutputFormat::Yaml), "- a: 1\n- a: 2\n");
    let field = Outcome::Field("connectionString", "HostName=h;DeviceId=d".into());
    assert_eq!(
        field.render(OutputFormat::Yaml),
        "connectionString: HostName=h;DeviceId=d\n"
    );
}

#[test]
fn monitor_events_filters_by_module() {
    let Top::Hub {
        cmd: HubCommand::MonitorEvents(a),
        ..
    } = cmd(&["hub", "monitor-events", "-d", "e1", "-m", "sensor"])
    else {
        panic!()
    };
    assert_eq!(
        (a.device_id.as_deref(), a.module_id.as_deref()),
        (Some("e1"), Some("sensor"))
    );
    let _: &MonitorArgs = &a;
    let from_module = json!({"deviceId": "e1", "moduleId": "sensor", "sequenceNumber": 1});
    let other_module = json!({"deviceId": "e1", "moduleId": "filter", "sequenceNumber": 2});
    let device_own = json!({"deviceId": "e1", "sequenceNumber": 3});
    assert!(module_matches(&from_module, Some("sensor")));
    assert!(!module_matches(&other_module, Some("sensor")));
    assert!(!module_matches(&device_own, Some("sensor")));
    assert!(module_matches(&device_own, None));
}

#[test]
fn hub_query_pages_stops_at_top_and_tables_any_row_shape() {
    use super::fake::hub_client;
    let c = hub_client(|req| {
        assert_eq!((req.method, path(req)), ("POST", "/devices/query"));
        assert_eq!(
            super::fake::body(req)["query"],
            "SELECT tags.fw AS fw, COUNT() AS n FROM devices GROUP BY tags.fw"
        );
        match super::fake::header(req, "x-ms-continuation") {
            None => page(json!([{"fw": "1.0", "n": 2}]), Some("t1")),
            Some("t1") => page(json!([{"n": 1}]), Some("t2")),
            other => panic!("read past --top: {other:?}"),
        }
    });
    let Top::Hub {
        cmd: HubCommand::Query(args),
        ..
    } = cmd(&[
        "hub",
        "query",
        "-q",
        "SELECT tags.fw AS fw, COUNT() AS n FROM devices GROUP BY tags.fw",
        "--top",
        "2",
    ])
    else {
        panic!()
    };
    let out = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(crate::hub::dispatch(HubCommand::Query(args), &c))
        .unwrap();
    assert_eq!(
        out,
        Outcome::Rows(vec![json!({"fw": "1.0", "n": 2}), json!({"n": 1})])
    );
    assert_eq!(out.render(OutputFormat::Table), "fw   n\n1.0  2\n-    1\n");
}

#[test]
fn dps_simulate_posts_the_key_in_the_body() {
    let c = client(|req| {
        assert_eq!(
            (req.method, path(req)),
            ("POST", "/registrations/sensor%2F7/simulate")
        );
        assert!(
            !req.path_and_query.contains("K3y"),
            "the key stays out of the URL"
        );
        assert_eq!(super::fake::body(req), json!({"key": "K3y=="}));
        json(
            200,
            json!({"registrationId": "sensor/7", "result": "assigned"}),
        )
    });
    let Top::Dps { cmd: parsed, .. } = cmd(&[
        "dps",
        "simulate",
        "--registration-id",
        "sensor/7",
        "--key",
        " K3y== ",
    ]) else {
        panic!()
    };
    let Outcome::Object(v) = run(&c, parsed) else {
        panic!()
    };
    assert_eq!(v["result"], "assigned");
    let c = client(|req| {
        assert_eq!(super::fake::body(req), json!({}));
        json(200, json!({"result": "keyNeeded"}))
    });
    let out = run(
        &c,
        DpsCommand::Simulate(crate::SimulateArgs {
            registration_id: "r".into(),
            key: None,
        }),
    );
    assert_eq!(out, Outcome::Object(json!({"result": "keyNeeded"})));
}

#[test]
fn dps_linked_hub_create_list_delete_as_az_spells_them() {
    const CS: &str =
        "HostName=hub2.fleethub.test;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5";
    let c = client(|req| {
        assert_eq!(
            (req.method, path(req)),
            ("PUT", "/linkedHubs/hub2.fleethub.test")
        );
        assert_eq!(
            super::fake::body(req),
            json!({"connectionString": CS, "allocationWeight": 2, "applyAllocationPolicy": true})
        );
        json(
            200,
            json!({"name": "hub2.fleethub.test", "allocationWeight": 2}),
        )
    });
    let Top::Dps { cmd: parsed, .. } = cmd(&[
        "dps",
        "linked-hub",
        "create",
        "--connection-string",
        CS,
        "--allocation-weight",
        "2",
        "--apply-allocation-policy",
        "true",
    ]) else {
        panic!()
    };
    let Outcome::Object(v) = run(&c, parsed) else {
        panic!()
    };
    assert_eq!(v["name"], "hub2.fleethub.test");

    let c = client(|req| {
        assert_eq!((req.method, path(req)), ("GET", "/linkedHubs"));
        json(
            200,
            json!([{"name": "hub.fleethub.test", "allocationWeight": 1},
                   {"name": "hub2.fleethub.test", "allocationWeight": 2}]),
        )
    });
    let Top::Dps { cmd: parsed, .. } = cmd(&["dps", "linked-hub", "list"]) else {
        panic!()
    };
    let out = run(&c, parsed);
    assert!(
        out.render(OutputFormat::Table)
            .contains("hub2.fleethub.test"),
        "{out:?}"
    );

    let c = client(|req| {
        assert_eq!(
            (req.method, path(req)),
            ("DELETE", "/linkedHubs/hub2.fleethub.test")
        );
        fake::empty(204)
    });
    let Top::Dps { cmd: parsed, .. } = cmd(&[
        "dps",
        "linked-hub",
        "delete",
        "--linked-hub",
        "hub2.fleethub.test",
    ]) else {
        panic!()
    };
    assert!(matches!(run(&c, parsed), Outcome::Done(_)));

    // A negative weight is refused before anything is sent.
    let c = client(|_| panic!("nothing must be sent"));
    let Top::Dps { cmd: parsed, .. } = cmd(&[
        "dps",
        "linked-hub",
        "create",
        "--connection-string",
        CS,
        "--allocation-weight=-1",
    ]) else {
        panic!()
    };
    assert!(
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(dps::dispatch(parsed, &c))
            .is_err()
    );
}

#[test]
fn enrollment_create_sends_allocation_policy_and_iot_hubs() {
    let c = client(|req| {
        if req.method == "GET" {
            return fake::not_found("enrollment group");
        }
        assert_eq!((req.method, path(req)), ("PUT", "/enrollmentGroups/line-3"));
        let body = super::fake::body(req);
        assert_eq!(body["allocationPolicy"], "geoLatency");
        assert_eq!(
            body["iotHubs"],
            json!([
                "hub.fleethub.test",
                "hub2.fleethub.test",
                "hub3.fleethub.test"
            ])
        );
        json(200, body)
    });
    let Top::Dps { cmd: parsed, .. } = cmd(&[
        "dps",
        "enrollment-group",
        "create",
        "--group-id",
        "line-3",
        "--allocation-policy",
        "geoLatency",
        "--iot-hubs",
        "hub.fleethub.test",
        "hub2.fleethub.test,hub3.fleethub.test",
    ]) else {
        panic!()
    };
    let Outcome::Object(v) = run(&c, parsed) else {
        panic!()
    };
    assert_eq!(v["allocationPolicy"], "geoLatency");
    assert!(
        parse(&[
            "dps",
            "enrollment",
            "create",
            "--registration-id",
            "r",
            "--allocation-policy",
            "roundRobin"
        ])
        .is_err()
    );
}

#[test]
fn enrollment_create_sends_the_webhook_and_the_reprovision_policy() {
    let c = client(|req| {
        if req.method == "GET" {
            return fake::not_found("enrollment");
        }
        assert_eq!((req.method, path(req)), ("PUT", "/enrollments/wh-1"));
        let body = super::fake::body(req);
        assert_eq!(body["allocationPolicy"], "custom");
        assert_eq!(
            body["customAllocationDefinition"],
            json!({"webhookUrl": "https://alloc.example.com/api/x?code=k", "apiVersion": "2021-10-01"})
        );
        assert_eq!(
            body["reprovisionPolicy"],
            json!({"updateHubAssignment": true, "migrateDeviceData": false})
        );
        json(200, body)
    });
    let Top::Dps { cmd: parsed, .. } = cmd(&[
        "dps",
        "enrollment",
        "create",
        "--registration-id",
        "wh-1",
        "--allocation-policy",
        "custom",
        "--webhook-url",
        "https://alloc.example.com/api/x?code=k",
        "--api-version",
        "2021-10-01",
        "--reprovision-policy",
        "reprovisionandresetdata",
    ]) else {
        panic!()
    };
    let Outcome::Object(v) = run(&c, parsed) else {
        panic!()
    };
    assert_eq!(v["allocationPolicy"], "custom");
    for rp in ["reprovisionandmigratedata", "never"] {
        assert!(
            parse(&[
                "dps",
                "enrollment",
                "create",
                "--registration-id",
                "r",
                "--rp",
                rp
            ])
            .is_ok()
        );
    }
    assert!(
        parse(&[
            "dps",
            "enrollment",
            "create",
            "--registration-id",
            "r",
            "--rp",
            "sometimes"
        ])
        .is_err()
    );
}

#[test]
fn dps_settings_update_sends_the_instance_policy() {
    let c = client(|req| {
        assert_eq!((req.method, path(req)), ("PUT", "/settings"));
        let body = super::fake::body(req);
        assert_eq!(body, json!({"allocationPolicy": "static"}));
        json(200, body)
    });
    let Top::Dps { cmd: parsed, .. } =
        cmd(&["dps", "settings", "update", "--allocation-policy", "static"])
    else {
        panic!()
    };
    let Outcome::Object(v) = run(&c, parsed) else {
        panic!()
    };
    assert_eq!(v["allocationPolicy"], "static");
    assert!(parse(&["dps", "settings", "update", "--allocation-policy", "custom"]).is_err());
}

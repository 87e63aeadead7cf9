//! `fleethub hub ...` against the scripted transport: what goes on the wire, what comes out.

use super::fake::{self, Fake, body, empty, header, hub_client, json, not_found, path};
use crate::client::{Request, Response, ServiceClient};
use crate::hub::{self, Ack, KeyType};
use crate::output::Outcome;
use crate::{
    C2dCommand, ConnectionStringCommand, DeviceIdentityCommand, DeviceStatus, DeviceTwinCommand,
    HubCommand, MethodArgs, ModuleIdentityCommand, SasArgs,
};
use serde_json::{Value, json};

fn run(c: &ServiceClient<Fake>, cmd: HubCommand) -> anyhow::Result<Outcome> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(hub::dispatch(cmd, c))
}

fn object(o: Outcome) -> Value {
    match o {
        Outcome::Object(v) => v,
        other => panic!("not an object: {other:?}"),
    }
}

fn requests(c: &ServiceClient<Fake>) -> Vec<Request> {
    c.transport().requests.lock().unwrap().clone()
}

fn stored_device() -> Value {
    json!({
        "deviceId": "dev-01",
        "generationId": "g1",
        "etag": "e1",
        "status": "enabled",
        "statusReason": null,
        "authentication": {
            "type": "sas",
            "symmetricKey": {"primaryKey": fake::KEY, "secondaryKey": "c2Vjb25kYXJ5LWtleS0xMjM0NTY3OA=="},
            "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null}
        },
        "capabilities": {"iotEdge": false},
        "cloudToDeviceMessageCount": 0,
        "someFutureField": {"kept": true}
    })
}

fn echo(req: &Request) -> anyhow::Result<Response> {
    match req.method {
        "GET" => json(200, stored_device()),
        "PUT" | "PATCH" | "POST" => json(200, body(req)),
        "DELETE" => empty(204),
        m => panic!("unexpected {m}"),
    }
}

#[test]
fn create_puts_a_sas_device_without_if_match() {
    let c = hub_client(echo);
    let cmd = HubCommand::DeviceIdentity(DeviceIdentityCommand::Create {
        device_id: "dev:01".into(),
        edge_enabled: Some(true),
        primary_key: None,
        secondary_key: None,
        status: Some(DeviceStatus::Disabled),
        status_reason: Some("maintenance".into()),
    });
    run(&c, cmd).unwrap();
    let reqs = requests(&c);
    assert_eq!(reqs.len(), 1);
    let put = &reqs[0];
    assert_eq!(
        (put.method, put.path_and_query.as_str()),
        ("PUT", "/devices/dev%3A01?api-version=2021-04-12")
    );
    assert_eq!(header(put, "If-Match"), None);
    let auth = header(put, "Authorization").unwrap();
    assert!(
        auth.contains("sr=hub.fleethub.test") && auth.contains("skn=iothubowner"),
        "{auth}"
    );
    let sent: fleethub_api::Device = serde_json::from_value(body(put)).unwrap();
    assert_eq!(sent.device_id, "dev:01");
    assert_eq!(sent.status.as_deref(), Some("disabled"));
    assert_eq!(sent.status_reason.as_deref(), Some("maintenance"));
    assert!(sent.is_edge());
    let auth = sent.authentication.unwrap();
    assert_eq!(auth.kind.as_deref(), Some("sas"));
    assert!(auth.keys().is_empty(), "empty keys: the hub generates them");
}

#[test]
fn create_with_keys_and_an_existing_device() {
    let c = hub_client(|req| {
        assert_eq!(
            body(req)["authentication"]["symmetricKey"],
            json!({"primaryKey": "pk", "secondaryKey": "sk"})
        );
        json(
            409,
            json!({"Message": "ErrorCode:DeviceAlreadyExists;device exists", "errorCode": 409001}),
        )
    });
    let cmd = HubCommand::DeviceIdentity(DeviceIdentityCommand::Create {
        device_id: "dev-01".into(),
        edge_enabled: None,
        primary_key: Some(" pk ".into()),
        secondary_key: Some("sk".into()),
        status: None,
        status_reason: None,
    });
    let e = format!("{:#}", run(&c, cmd).unwrap_err());
    assert!(
        e.starts_with("device 'dev-01' already exists; use `fleethub hub device-identity update`"),
        "{e}"
    );
    assert!(e.contains("409 Conflict (DeviceAlreadyExists)"), "{e}");
}

#[test]
fn list_passes_top_and_shows_columns() {
    let c = hub_client(|req| {
        assert_eq!(path(req), "/devices");
        assert!(
            req.path_and_query.ends_with("&top=5"),
            "{}",
            req.path_and_query
        );
        json(200, json!([stored_device()]))
    });
    let out = run(
        &c,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::List { top: Some(5) }),
    )
    .unwrap();
    let table = out.render(crate::OutputFormat::Table);
    assert!(
        table.starts_with("DEVICE ID  STATUS   CONNECTION  EDGE   AUTH"),
        "{table}"
    );
    assert!(
        table.contains("dev-01     enabled  -           false  sas"),
        "{table}"
    );
}

#[test]
fn update_changes_the_given_fields_with_the_etag_read() {
    let c = hub_client(echo);
    let cmd = HubCommand::DeviceIdentity(DeviceIdentityCommand::Update {
        device_id: "dev-01".into(),
        status: Some(DeviceStatus::Disabled),
        status_reason: Some("stolen".into()),
        primary_key: Some("newkey".into()),
        secondary_key: None,
        edge_enabled: Some(true),
        etag: None,
    });
    let out = object(run(&c, cmd).unwrap());
    let mut want = stored_device();
    want["status"] = json!("disabled");
    want["statusReason"] = json!("stolen");
    want["authentication"]["symmetricKey"]["primaryKey"] = json!("newkey");
    want["capabilities"]["iotEdge"] = json!(true);
    assert_eq!(out, want);
    let reqs = requests(&c);
    assert_eq!(
        reqs.iter().map(|r| r.method).collect::<Vec<_>>(),
        ["GET", "PUT"]
    );
    assert_eq!(header(&reqs[1], "If-Match"), Some("e1"));
}

#[test]
fn update_refuses_keys_for_x509_devices_and_empty_updates() {
    let c = hub_client(|_| {
        let mut d = stored_device();
        d["authentication"] = json!({"type": "selfSigned"});
        json(200, d)
    });
    let keys = DeviceIdentityCommand::Update {
        device_id: "dev-01".into(),
        status: None,
        status_reason: None,
        primary_key: Some("k".into()),
        secondary_key: None,
        edge_enabled: None,
        etag: Some("e0".into()),
    };
    let e = run(&c, HubCommand::DeviceIdentity(keys))
        .unwrap_err()
        .to_string();
    assert!(e.contains("selfSigned"), "{e}");
    let nothing = DeviceIdentityCommand::Update {
        device_id: "dev-01".into(),
        status: None,
        status_reason: None,
        primary_key: None,
        secondary_key: None,
        edge_enabled: None,
        etag: None,
    };
    let e = run(&c, HubCommand::DeviceIdentity(nothing))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("nothing to update"), "{e}");
}

#[test]
fn delete_sends_if_match() {
    let c = hub_client(echo);
    let out = run(
        &c,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::Delete {
            device_id: "dev-01".into(),
            etag: None,
        }),
    )
    .unwrap();
    assert_eq!(out.note(), Some("deleted device 'dev-01'"));
    let reqs = requests(&c);
    assert_eq!(
        (reqs[0].method, path(&reqs[0])),
        ("DELETE", "/devices/dev-01")
    );
    assert_eq!(header(&reqs[0], "If-Match"), Some("*"));
    run(
        &c,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::Delete {
            device_id: "dev-01".into(),
            etag: Some("e7".into()),
        }),
    )
    .unwrap();
    assert_eq!(header(&requests(&c)[1], "If-Match"), Some("e7"));
}

#[test]
fn connection_string_formats() {
    let d = stored_device();
    let cs = |module: Option<&str>, kt, identity: &Value| {
        hub::device_identity_connection_string("hub.local", "dev-01", module, identity, kt)
    };
    assert_eq!(
        cs(None, KeyType::Primary, &d).unwrap(),
        format!(
            "HostName=hub.local;DeviceId=dev-01;SharedAccessKey={}",
            fake::KEY
        )
    );
    assert_eq!(
        cs(Some("m1"), KeyType::Secondary, &d).unwrap(),
        "HostName=hub.local;DeviceId=dev-01;ModuleId=m1;SharedAccessKey=c2Vjb25kYXJ5LWtleS0xMjM0NTY3OA=="
    );
    let x509 = json!({"authentication": {"type": "certificateAuthority"}});
    assert_eq!(
        cs(None, KeyType::Primary, &x509).unwrap(),
        "HostName=hub.local;DeviceId=dev-01;x509=true"
    );
    let no_key = json!({"authentication": {"type": "sas", "symmetricKey": {"primaryKey": ""}}});
    let e = cs(None, KeyType::Primary, &no_key).unwrap_err().to_string();
    assert_eq!(e, "device 'dev-01' has no primary key");
}

#[test]
fn connection_string_show_reads_the_identity() {
    let c = hub_client(|req| {
        assert_eq!(path(req), "/devices/dev-01/modules/m%2F1");
        json(
            200,
            json!({"moduleId": "m/1", "deviceId": "dev-01", "authentication": {"type": "sas", "symmetricKey": {"primaryKey": "pk", "secondaryKey": "sk"}}}),
        )
    });
    let out = run(
        &c,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::ConnectionString(
            ConnectionStringCommand::Show {
                device_id: "dev-01".into(),
                key_type: KeyType::Secondary,
                module_id: Some("m/1".into()),
            },
        )),
    )
    .unwrap();
    let want = "HostName=hub.fleethub.test;DeviceId=dev-01;ModuleId=m/1;SharedAccessKey=sk";
    assert_eq!(out.render(crate::OutputFormat::Table), format!("{want}\n"));
    let v: Value = serde_json::from_str(&out.render(crate::OutputFormat::Json)).unwrap();
    assert_eq!(v, json!({"connectionString": want}));
}

#[test]
fn module_identity_paths() {
    let c = hub_client(|req| match req.method {
        "GET" if path(req).ends_with("/modules") => json(200, json!([{"moduleId": "m1"}])),
        "GET" => not_found("module"),
        "PUT" => json(200, body(req)),
        "DELETE" => empty(204),
        m => panic!("unexpected {m}"),
    });
    let created = object(
        run(
            &c,
            HubCommand::ModuleIdentity(ModuleIdentityCommand::Create {
                device_id: "d1".into(),
                module_id: "m1".into(),
                primary_key: None,
                secondary_key: None,
            }),
        )
        .unwrap(),
    );
    let module: fleethub_api::Module = serde_json::from_value(created).unwrap();
    assert_eq!(
        (module.device_id.as_str(), module.module_id.as_str()),
        ("d1", "m1")
    );
    let list = run(
        &c,
        HubCommand::ModuleIdentity(ModuleIdentityCommand::List {
            device_id: "d1".into(),
        }),
    )
    .unwrap();
    assert!(matches!(list, Outcome::List(ref v, _) if v.len() == 1));
    let e = run(
        &c,
        HubCommand::ModuleIdentity(ModuleIdentityCommand::Show {
            device_id: "d1".into(),
            module_id: "m1".into(),
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("GET /devices/d1/modules/m1 failed: 404"),
        "{e}"
    );
    run(
        &c,
        HubCommand::ModuleIdentity(ModuleIdentityCommand::Delete {
            device_id: "d1".into(),
            module_id: "m1".into(),
            etag: None,
        }),
    )
    .unwrap();
    let reqs = requests(&c);
    let seen: Vec<_> = reqs
        .iter()
        .map(|r| (r.method, path(r).to_string()))
        .collect();
    assert_eq!(
        seen,
        [
            ("PUT", "/devices/d1/modules/m1".to_string()),
            ("GET", "/devices/d1/modules".to_string()),
            ("GET", "/devices/d1/modules/m1".to_string()),
            ("DELETE", "/devices/d1/modules/m1".to_string()),
        ]
    );
    assert_eq!(header(&reqs[0], "If-Match"), None);
    assert_eq!(header(&reqs[3], "If-Match"), Some("*"));
}

#[test]
fn missing_server_routes_get_a_hint() {
    let c = hub_client(|req| {
        json(
            404,
            json!({"Message": format!("ErrorCode:NotFound;no such resource: GET {}", path(req))}),
        )
    });
    let e = run(
        &c,
        HubCommand::ModuleIdentity(ModuleIdentityCommand::List {
            device_id: "d1".into(),
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("hint: the server does not offer this API"),
        "{e}"
    );
}

#[test]
fn twin_show_and_update() {
    let c = hub_client(echo);
    run(
        &c,
        HubCommand::DeviceTwin(DeviceTwinCommand::Show {
            device_id: "d1".into(),
            module_id: Some("m1".into()),
        }),
    )
    .unwrap();
    let patched = object(
        run(
            &c,
            HubCommand::DeviceTwin(DeviceTwinCommand::Update {
                device_id: "d1".into(),
                module_id: None,
                tags: Some(json!({"env": "prod"})),
                desired: Some(json!({"fw": "2.0", "old": null})),
                etag: None,
            }),
        )
        .unwrap(),
    );
    assert_eq!(
        patched,
        json!({"tags": {"env": "prod"}, "properties": {"desired": {"fw": "2.0", "old": null}}})
    );
    run(
        &c,
        HubCommand::DeviceTwin(DeviceTwinCommand::Update {
            device_id: "d1".into(),
            module_id: None,
            tags: None,
            desired: Some(json!({"a": 1})),
            etag: Some("AAAAAAAAAAI=".into()),
        }),
    )
    .unwrap();
    let reqs = requests(&c);
    assert_eq!(
        (reqs[0].method, path(&reqs[0])),
        ("GET", "/twins/d1/modules/m1")
    );
    assert_eq!((reqs[1].method, path(&reqs[1])), ("PATCH", "/twins/d1"));
    assert_eq!(header(&reqs[1], "If-Match"), Some("*"));
    assert_eq!(body(&reqs[2]), json!({"properties": {"desired": {"a": 1}}}));
    assert_eq!(header(&reqs[2], "If-Match"), Some("AAAAAAAAAAI="));
    let e = run(
        &c,
        HubCommand::DeviceTwin(DeviceTwinCommand::Update {
            device_id: "d1".into(),
            module_id: None,
            tags: None,
            desired: None,
            etag: None,
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--tags") && e.contains("--desired"), "{e}");
}

fn method(module: Option<&str>) -> MethodArgs {
    MethodArgs {
        device_id: "d1".into(),
        module_id: module.map(String::from),
        method_name: "reboot".into(),
        method_payload: json!({"delay": 1}),
        timeout: 30,
        connect_timeout: 0,
    }
}

#[test]
fn invoke_posts_the_method_and_prints_the_answer() {
    let c = hub_client(|req| {
        assert_eq!(req.method, "POST");
        assert_eq!(
            body(req),
            json!({"methodName": "reboot", "payload": {"delay": 1}, "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0})
        );
        json(200, json!({"status": 200, "payload": {"ok": true}}))
    });
    let out = object(run(&c, HubCommand::InvokeDeviceMethod(method(None))).unwrap());
    assert_eq!(out, json!({"status": 200, "payload": {"ok": true}}));
    run(&c, HubCommand::InvokeDeviceMethod(method(Some("m1")))).unwrap();
    let reqs = requests(&c);
    assert_eq!(path(&reqs[0]), "/twins/d1/methods");
    assert_eq!(path(&reqs[1]), "/twins/d1/modules/m1/methods");
}

#[test]
fn invoke_explains_offline_devices_and_timeouts() {
    let offline = hub_client(|_| {
        json(
            404,
            json!({"Message": "ErrorCode:DeviceNotOnline;device 'd1' is not connected", "errorCode": 404103}),
        )
    });
    let e = format!(
        "{:#}",
        run(&offline, HubCommand::InvokeDeviceMethod(method(None))).unwrap_err()
    );
    assert!(
        e.starts_with("device 'd1' is not connected, or has not subscribed to direct methods"),
        "{e}"
    );
    assert!(e.contains("--connect-timeout"), "{e}");
    let slow = hub_client(|_| {
        json(
            504,
            json!({"Message": "ErrorCode:GatewayTimeout;no answer", "errorCode": 504101}),
        )
    });
    let e = format!(
        "{:#}",
        run(&slow, HubCommand::InvokeDeviceMethod(method(Some("m1")))).unwrap_err()
    );
    assert!(
        e.starts_with("module 'm1' of device 'd1' did not answer method 'reboot' within 30 s"),
        "{e}"
    );
}

#[test]
fn c2d_send_and_purge() {
    let c = hub_client(|req| match req.method {
        "POST" => json(
            200,
            json!({"deviceId": "d1", "messageId": "m1", "sequenceNumber": 3}),
        ),
        "DELETE" => json(200, json!({"deviceId": "d1", "totalMessagesPurged": 2})),
        m => panic!("unexpected {m}"),
    });
    let props = crate::hub::parse_props("a=1;b=x=y;").unwrap();
    run(
        &c,
        HubCommand::C2dMessage(C2dCommand::Send {
            device_id: "d1".into(),
            data: "hello".into(),
            message_id: Some("m1".into()),
            correlation_id: Some("c1".into()),
            content_type: Some("text/plain".into()),
            props: Some(props),
            ttl: Some(60),
            ack: Some(Ack::Negative),
        }),
    )
    .unwrap();
    run(
        &c,
        HubCommand::C2dMessage(C2dCommand::Send {
            device_id: "d1".into(),
            data: String::new(),
            message_id: None,
            correlation_id: None,
            content_type: None,
            props: None,
            ttl: None,
            ack: None,
        }),
    )
    .unwrap();
    let purged = object(
        run(
            &c,
            HubCommand::C2dMessage(C2dCommand::Purge {
                device_id: "d1".into(),
            }),
        )
        .unwrap(),
    );
    assert_eq!(purged["totalMessagesPurged"], 2);
    let reqs = requests(&c);
    assert_eq!(path(&reqs[0]), "/devices/d1/messages/deviceBound");
    assert_eq!(
        body(&reqs[0]),
        json!({
            "body": "hello", "messageId": "m1", "correlationId": "c1", "contentType": "text/plain",
            "ttlSeconds": 60, "ack": "negative", "properties": {"a": "1", "b": "x=y"}
        })
    );
    assert_eq!(body(&reqs[1]), json!({"body": ""}));
    assert_eq!(
        (reqs[2].method, path(&reqs[2])),
        ("DELETE", "/devices/d1/commands")
    );
}

#[test]
fn props_parsing() {
    let p = |s| crate::hub::parse_props(s).map(Value::Object);
    assert_eq!(p("k=v").unwrap(), json!({"k": "v"}));
    assert_eq!(
        p(" a = 1 ;b=;;c=x=y").unwrap(),
        json!({"a": " 1 ", "b": "", "c": "x=y"})
    );
    assert!(p("novalue").unwrap_err().contains("key=value"));
    assert!(p("=v").unwrap_err().contains("empty key"));
    assert!(p("a=1;a=2").unwrap_err().contains("twice"));
    assert!(p(";").unwrap_err().contains("no properties"));
}

fn sas(args: SasArgs) -> anyhow::Result<String> {
    let c = hub_client(echo);
    match run(&c, HubCommand::GenerateSasToken(args))? {
        Outcome::Field("sas", t) => Ok(t),
        other => panic!("{other:?}"),
    }
}

#[test]
fn device_sas_token_is_signed_with_the_device_key() {
    let t = sas(SasArgs {
        device_id: Some("dev-01".into()),
        module_id: None,
        policy_name: None,
        duration: 600,
        key_type: None,
    })
    .unwrap();
    let tok = fleethub_core::sas::SasToken::parse(&t).unwrap();
    assert_eq!(tok.resource(), "hub.fleethub.test/devices/dev-01");
    assert_eq!(tok.expiry, 1_700_000_600);
    assert_eq!(tok.skn, None);
    assert!(tok.verify_signature(fake::KEY).unwrap());
    let t = sas(SasArgs {
        device_id: Some("dev-01".into()),
        module_id: Some("m1".into()),
        policy_name: None,
        duration: 60,
        key_type: Some(KeyType::Secondary),
    })
    .unwrap();
    let tok = fleethub_core::sas::SasToken::parse(&t).unwrap();
    assert_eq!(
        tok.resource(),
        "hub.fleethub.test/devices/dev-01/modules/m1"
    );
    assert!(
        tok.verify_signature("c2Vjb25kYXJ5LWtleS0xMjM0NTY3OA==")
            .unwrap()
    );
}

#[test]
fn policy_sas_token_uses_the_connection_string_key() {
    let t = sas(SasArgs {
        device_id: None,
        module_id: None,
        policy_name: Some("iothubowner".into()),
        duration: 3600,
        key_type: None,
    })
    .unwrap();
    let tok = fleethub_core::sas::SasToken::parse(&t).unwrap();
    assert_eq!(tok.resource(), "hub.fleethub.test");
    assert_eq!(tok.skn.as_deref(), Some("iothubowner"));
    assert!(tok.verify_signature(fake::KEY).unwrap());
    let e = sas(SasArgs {
        device_id: None,
        module_id: None,
        policy_name: Some("service".into()),
        duration: 3600,
        key_type: None,
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("for policy 'iothubowner', not 'service'")
            && e.contains("--hub-connection-string"),
        "{e}"
    );
}

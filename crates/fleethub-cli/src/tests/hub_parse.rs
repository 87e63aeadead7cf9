//! `fleethub hub ...` parsing, mounted the way the binary mounts it (see `parse.rs`).

use super::parse::{Top, parse};
use crate::hub::{Ack, KeyType};
use crate::{
    C2dCommand, ClientArgs, ConnectionStringCommand, DeviceIdentityCommand, DeviceStatus,
    DeviceTwinCommand, HubCommand, MethodArgs, ModuleIdentityCommand, MonitorArgs, OutputFormat,
    SasArgs,
};
use serde_json::json;

fn hub(args: &[&str]) -> (ClientArgs, HubCommand) {
    let mut v = vec!["hub"];
    v.extend_from_slice(args);
    match parse(&v).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
        (c, Top::Hub { cmd, .. }) => (c, cmd),
        (_, other) => panic!("not hub: {other:?}"),
    }
}

fn hub_err(args: &[&str]) -> String {
    let mut v = vec!["hub"];
    v.extend_from_slice(args);
    parse(&v).expect_err("should not parse").to_string()
}

#[test]
fn device_identity_create_with_every_option() {
    let (client, cmd) = hub(&[
        "device-identity",
        "create",
        "--device-id",
        "dev-01",
        "--edge-enabled",
        "--primary-key",
        "pk",
        "--secondary-key",
        "sk",
        "--status",
        "disabled",
        "--status-reason",
        "broken",
        "--hub-connection-string",
        "HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=k",
        "-o",
        "table",
    ]);
    assert_eq!(
        cmd,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::Create {
            device_id: "dev-01".into(),
            edge_enabled: Some(true),
            primary_key: Some("pk".into()),
            secondary_key: Some("sk".into()),
            status: Some(DeviceStatus::Disabled),
            status_reason: Some("broken".into()),
        })
    );
    assert_eq!(client.output, OutputFormat::Table);
    assert!(
        client
            .hub_connection_string
            .unwrap()
            .contains("iothubowner")
    );
}

#[test]
fn create_needs_both_keys_or_none() {
    let e = hub_err(&[
        "device-identity",
        "create",
        "--device-id",
        "d",
        "--primary-key",
        "pk",
    ]);
    assert!(e.contains("--secondary-key"), "{e}");
    let (_, cmd) = hub(&["device-identity", "create", "--device-id", "d"]);
    let HubCommand::DeviceIdentity(DeviceIdentityCommand::Create {
        edge_enabled,
        status,
        ..
    }) = cmd
    else {
        panic!("{cmd:?}")
    };
    assert_eq!((edge_enabled, status), (None, None));
}

#[test]
fn device_identity_list_show_update_delete() {
    let (_, cmd) = hub(&["device-identity", "list", "--top", "5"]);
    assert_eq!(
        cmd,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::List { top: Some(5) })
    );
    assert!(hub_err(&["device-identity", "list", "--top", "0"]).contains("--top"));
    // More than one server page: the list follows x-ms-continuation.
    let (_, cmd) = hub(&["device-identity", "list", "--top", "1001"]);
    assert_eq!(
        cmd,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::List { top: Some(1001) })
    );
    let (_, cmd) = hub(&["device-identity", "show", "--device-id", "d"]);
    assert_eq!(
        cmd,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::Show {
            device_id: "d".into()
        })
    );
    let (_, cmd) = hub(&[
        "device-identity",
        "update",
        "--device-id",
        "d",
        "--edge-enabled",
        "false",
        "--status",
        "enabled",
        "--secondary-key",
        "sk",
        "--etag",
        "\"e1\"",
    ]);
    assert_eq!(
        cmd,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::Update {
            device_id: "d".into(),
            status: Some(DeviceStatus::Enabled),
            status_reason: None,
            primary_key: None,
            secondary_key: Some("sk".into()),
            edge_enabled: Some(false),
            etag: Some("\"e1\"".into()),
        })
    );
    let (_, cmd) = hub(&["device-identity", "delete", "--device-id", "d"]);
    assert_eq!(
        cmd,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::Delete {
            device_id: "d".into(),
            etag: None
        })
    );
    assert!(hub_err(&["device-identity", "show"]).contains("--device-id"));
    assert!(
        hub_err(&[
            "device-identity",
            "create",
            "--device-id",
            "d",
            "--status",
            "off"
        ])
        .contains("enabled, disabled")
    );
}

#[test]
fn connection_string_show() {
    let (_, cmd) = hub(&[
        "device-identity",
        "connection-string",
        "show",
        "--device-id",
        "d",
    ]);
    assert_eq!(
        cmd,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::ConnectionString(
            ConnectionStringCommand::Show {
                device_id: "d".into(),
                key_type: KeyType::Primary,
                module_id: None
            }
        ))
    );
    let (_, cmd) = hub(&[
        "device-identity",
        "connection-string",
        "show",
        "--device-id",
        "d",
        "--key-type",
        "secondary",
        "--module-id",
        "m",
    ]);
    assert_eq!(
        cmd,
        HubCommand::DeviceIdentity(DeviceIdentityCommand::ConnectionString(
            ConnectionStringCommand::Show {
                device_id: "d".into(),
                key_type: KeyType::Secondary,
                module_id: Some("m".into())
            }
        ))
    );
}

#[test]
fn module_identity_commands() {
    let (_, cmd) = hub(&[
        "module-identity",
        "create",
        "--device-id",
        "d",
        "--module-id",
        "m",
    ]);
    assert_eq!(
        cmd,
        HubCommand::ModuleIdentity(ModuleIdentityCommand::Create {
            device_id: "d".into(),
            module_id: "m".into(),
            primary_key: None,
            secondary_key: None
        })
    );
    let (_, cmd) = hub(&["module-identity", "list", "--device-id", "d"]);
    assert_eq!(
        cmd,
        HubCommand::ModuleIdentity(ModuleIdentityCommand::List {
            device_id: "d".into()
        })
    );
    assert!(hub_err(&["module-identity", "show", "--device-id", "d"]).contains("--module-id"));
    let (_, cmd) = hub(&[
        "module-identity",
        "delete",
        "--device-id",
        "d",
        "--module-id",
        "m",
        "--etag",
        "e",
    ]);
    assert_eq!(
        cmd,
        HubCommand::ModuleIdentity(ModuleIdentityCommand::Delete {
            device_id: "d".into(),
            module_id: "m".into(),
            etag: Some("e".into())
        })
    );
}

#[test]
fn device_twin_commands() {
    let (_, cmd) = hub(&[
        "device-twin",
        "show",
        "--device-id",
        "d",
        "--module-id",
        "m",
    ]);
    assert_eq!(
        cmd,
        HubCommand::DeviceTwin(DeviceTwinCommand::Show {
            device_id: "d".into(),
            module_id: Some("m".into())
        })
    );
    let (_, cmd) = hub(&[
        "device-twin",
        "update",
        "--device-id",
        "d",
        "--tags",
        r#"{"env":"prod"}"#,
        "--desired",
        r#"{"fw":null}"#,
    ]);
    assert_eq!(
        cmd,
        HubCommand::DeviceTwin(DeviceTwinCommand::Update {
            device_id: "d".into(),
            module_id: None,
            tags: Some(json!({"env": "prod"})),
            desired: Some(json!({"fw": null})),
            etag: None
        })
    );
    let e = hub_err(&["device-twin", "update", "--device-id", "d", "--tags", "[1]"]);
    assert!(e.contains("--tags") && e.contains("JSON object"), "{e}");
}

#[test]
fn invoke_device_method_defaults_and_payloads() {
    let (_, cmd) = hub(&[
        "invoke-device-method",
        "--device-id",
        "d",
        "--method-name",
        "reboot",
    ]);
    let want = MethodArgs {
        device_id: "d".into(),
        module_id: None,
        method_name: "reboot".into(),
        method_payload: json!({}),
        timeout: 30,
        connect_timeout: 0,
    };
    assert_eq!(cmd, HubCommand::InvokeDeviceMethod(want.clone()));
    assert_eq!(want.request_timeout().as_secs(), 45);
    let (_, cmd) = hub(&[
        "invoke-device-method",
        "--device-id",
        "d",
        "--module-id",
        "m",
        "--method-name",
        "set",
        "--method-payload",
        "\"on\"",
        "--timeout",
        "120",
        "--connect-timeout",
        "10",
    ]);
    let HubCommand::InvokeDeviceMethod(a) = cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!(a.method_payload, json!("on"));
    assert_eq!((a.timeout, a.connect_timeout), (120, 10));
    assert_eq!(a.module_id.as_deref(), Some("m"));
    let e = hub_err(&[
        "invoke-device-method",
        "--device-id",
        "d",
        "--method-name",
        "n",
        "--method-payload",
        "on",
    ]);
    assert!(
        e.contains("--method-payload") && e.contains("JSON quotes"),
        "{e}"
    );
    assert!(
        hub_err(&[
            "invoke-device-method",
            "--device-id",
            "d",
            "--method-name",
            "n",
            "--timeout",
            "1"
        ])
        .contains("--timeout")
    );
}

#[test]
fn c2d_message_send_and_purge() {
    let (_, cmd) = hub(&[
        "c2d-message",
        "send",
        "--device-id",
        "d",
        "--data",
        "hello",
        "--message-id",
        "m1",
        "--correlation-id",
        "c1",
        "--content-type",
        "text/plain",
        "--props",
        "a=1;b=two",
        "--ttl",
        "60",
        "--ack",
        "full",
    ]);
    let HubCommand::C2dMessage(C2dCommand::Send {
        props, ttl, ack, ..
    }) = cmd
    else {
        panic!("{cmd:?}")
    };
    assert_eq!(
        serde_json::Value::Object(props.unwrap()),
        json!({"a": "1", "b": "two"})
    );
    assert_eq!((ttl, ack), (Some(60), Some(Ack::Full)));
    let e = hub_err(&[
        "c2d-message",
        "send",
        "--device-id",
        "d",
        "--data",
        "x",
        "--props",
        "nokey",
    ]);
    assert!(e.contains("--props") && e.contains("key=value"), "{e}");
    assert!(hub_err(&["c2d-message", "send", "--device-id", "d"]).contains("--data"));
    let (_, cmd) = hub(&["c2d-message", "purge", "--device-id", "d"]);
    assert_eq!(
        cmd,
        HubCommand::C2dMessage(C2dCommand::Purge {
            device_id: "d".into()
        })
    );
}

#[test]
fn monitor_events_options() {
    let (_, cmd) = hub(&["monitor-events"]);
    let HubCommand::MonitorEvents(a) = cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!(
        a,
        MonitorArgs {
            device_id: None,
            module_id: None,
            consumer_group: "$Default".into(),
            from_start: false,
            from: None,
            timeout: None,
            properties: false
        }
    );
    assert_eq!((a.start(), a.live()), (None, true));
    let (_, cmd) = hub(&[
        "monitor-events",
        "--device-id",
        "d",
        "--consumer-group",
        "g1",
        "--from",
        "41",
        "--timeout",
        "0",
        "--properties",
    ]);
    let HubCommand::MonitorEvents(a) = cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!((a.start(), a.live()), (Some(41), false));
    assert!(a.properties);
    let (_, cmd) = hub(&["monitor-events", "--from-start", "--timeout", "5"]);
    let HubCommand::MonitorEvents(a) = cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!((a.start(), a.live()), (Some(0), true));
    let e = hub_err(&["monitor-events", "--from-start", "--from", "3"]);
    assert!(e.contains("cannot be used with"), "{e}");
}

#[test]
fn generate_sas_token_needs_a_device_or_a_policy() {
    let (_, cmd) = hub(&[
        "generate-sas-token",
        "--device-id",
        "d",
        "--module-id",
        "m",
        "--duration",
        "60",
        "--key-type",
        "secondary",
    ]);
    assert_eq!(
        cmd,
        HubCommand::GenerateSasToken(SasArgs {
            device_id: Some("d".into()),
            module_id: Some("m".into()),
            policy_name: None,
            duration: 60,
            key_type: Some(KeyType::Secondary),
        })
    );
    let (_, cmd) = hub(&["generate-sas-token", "--policy-name", "iothubowner"]);
    let HubCommand::GenerateSasToken(a) = cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!(
        (a.policy_name.as_deref(), a.duration),
        (Some("iothubowner"), 3600)
    );
    assert!(hub_err(&["generate-sas-token"]).contains("--device-id"));
    assert!(
        hub_err(&[
            "generate-sas-token",
            "--device-id",
            "d",
            "--policy-name",
            "p"
        ])
        .contains("cannot be used with")
    );
    assert!(
        hub_err(&[
            "generate-sas-token",
            "--policy-name",
            "p",
            "--module-id",
            "m"
        ])
        .contains("cannot be used with")
    );
    assert!(
        hub_err(&[
            "generate-sas-token",
            "--policy-name",
            "p",
            "--key-type",
            "primary"
        ])
        .contains("cannot be used with")
    );
}

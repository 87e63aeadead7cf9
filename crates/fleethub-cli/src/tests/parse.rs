//! Parsing through a wrapper that mounts the commands the way the `fleethub` binary does.

use crate::dps::{EnrollmentFields, ProvisioningStatus};
use crate::{
    ClientArgs, DiagnosticsCommand, DpsCommand, EnrollmentCommand, GroupCommand, HubCommand,
    OutputFormat, RegistrationCommand,
};
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "fleethub")]
struct TestCli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
pub(super) enum Top {
    Dps {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: DpsCommand,
    },
    Diagnostics {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: DiagnosticsCommand,
    },
    Hub {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: HubCommand,
    },
}

pub(super) fn parse(args: &[&str]) -> Result<(ClientArgs, Top), clap::Error> {
    let mut v = vec!["fleethub"];
    v.extend_from_slice(args);
    let cli = TestCli::try_parse_from(v)?;
    let client = match &cli.command {
        Top::Dps { client, .. } | Top::Diagnostics { client, .. } | Top::Hub { client, .. } => {
            client.clone()
        }
    };
    Ok((client, cli.command))
}

fn dps(args: &[&str]) -> (ClientArgs, DpsCommand) {
    match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
        (c, Top::Dps { cmd, .. }) => (c, cmd),
        (_, other) => panic!("not dps: {other:?}"),
    }
}

fn parse_err(args: &[&str]) -> String {
    parse(args).expect_err("should not parse").to_string()
}

#[test]
fn command_tree_is_consistent() {
    TestCli::command().debug_assert();
}

#[test]
fn enrollment_create_with_every_option() {
    let (client, cmd) = dps(&[
        "dps",
        "enrollment",
        "create",
        "--registration-id",
        "dev-01",
        "--device-id",
        "device-1",
        "--edge-enabled",
        "--initial-twin-tags",
        r#"{"env":"prod"}"#,
        "--initial-twin-properties",
        r#"{"fw":"1.0"}"#,
        "--primary-key",
        "pk",
        "--secondary-key",
        "sk",
        "--provisioning-status",
        "disabled",
        "--output",
        "table",
    ]);
    assert_eq!(client.output, OutputFormat::Table);
    assert_eq!(
        cmd,
        DpsCommand::Enrollment(EnrollmentCommand::Create {
            registration_id: "dev-01".into(),
            device_id: Some("device-1".into()),
            fields: EnrollmentFields {
                edge_enabled: Some(true),
                initial_twin_tags: Some(json!({"env": "prod"})),
                initial_twin_properties: Some(json!({"fw": "1.0"})),
                primary_key: Some("pk".into()),
                secondary_key: Some("sk".into()),
                provisioning_status: Some(ProvisioningStatus::Disabled),
                allocation_policy: None,
                iot_hubs: None,
                webhook_url: None,
                api_version: None,
                reprovision_policy: None,
            },
        })
    );
}

#[test]
fn edge_enabled_takes_an_optional_bool() {
    for (args, want) in [
        (vec!["--edge-enabled"], Some(true)),
        (vec!["--edge-enabled", "true"], Some(true)),
        (vec!["--edge-enabled", "false"], Some(false)),
        (vec!["--edge-enabled=false"], Some(false)),
        (vec![], None),
    ] {
        let mut full = vec!["dps", "enrollment", "update", "--registration-id", "d"];
        full.extend(args.iter().copied());
        let (_, cmd) = dps(&full);
        let DpsCommand::Enrollment(EnrollmentCommand::Update { fields, .. }) = cmd else {
            panic!()
        };
        assert_eq!(fields.edge_enabled, want, "{args:?}");
    }
    // A flag right after it is not taken as its value.
    let (_, cmd) = dps(&[
        "dps",
        "enrollment",
        "update",
        "--edge-enabled",
        "--registration-id",
        "d",
    ]);
    assert!(
        matches!(cmd, DpsCommand::Enrollment(EnrollmentCommand::Update { ref registration_id, .. }) if registration_id == "d")
    );
    assert!(
        parse_err(&[
            "dps",
            "enrollment",
            "update",
            "--registration-id",
            "d",
            "--edge-enabled",
            "yes"
        ])
        .contains("--edge-enabled")
    );
}

#[test]
fn invalid_json_names_the_flag_and_the_parse_error() {
    let e = parse_err(&[
        "dps",
        "enrollment",
        "create",
        "--registration-id",
        "d",
        "--initial-twin-tags",
        "{env:prod}",
    ]);
    assert!(e.contains("--initial-twin-tags"), "{e}");
    assert!(
        e.contains("invalid JSON") && e.contains("line 1 column 2"),
        "{e}"
    );

    let e = parse_err(&[
        "dps",
        "enrollment-group",
        "create",
        "--group-id",
        "g",
        "--initial-twin-properties",
        "[1,2]",
    ]);
    assert!(
        e.contains("--initial-twin-properties") && e.contains("expected a JSON object"),
        "{e}"
    );
}

#[test]
fn update_and_delete_take_an_etag() {
    let (_, cmd) = dps(&[
        "dps",
        "enrollment",
        "delete",
        "--registration-id",
        "d",
        "--etag",
        "\"e1\"",
    ]);
    assert_eq!(
        cmd,
        DpsCommand::Enrollment(EnrollmentCommand::Delete {
            registration_id: "d".into(),
            etag: Some("\"e1\"".into())
        })
    );
    let (_, cmd) = dps(&[
        "dps",
        "enrollment-group",
        "update",
        "--group-id",
        "g",
        "--etag",
        "e2",
        "--provisioning-status",
        "enabled",
    ]);
    let DpsCommand::EnrollmentGroup(GroupCommand::Update { etag, fields, .. }) = cmd else {
        panic!()
    };
    assert_eq!(etag.as_deref(), Some("e2"));
    assert_eq!(
        fields.provisioning_status,
        Some(ProvisioningStatus::Enabled)
    );
}

#[test]
fn group_id_has_the_enrollment_id_alias() {
    let (_, a) = dps(&["dps", "enrollment-group", "show", "--group-id", "g1"]);
    let (_, b) = dps(&["dps", "enrollment-group", "show", "--enrollment-id", "g1"]);
    assert_eq!(a, b);
    assert_eq!(
        a,
        DpsCommand::EnrollmentGroup(GroupCommand::Show {
            group_id: "g1".into(),
            show_keys: false,
        })
    );
}

#[test]
fn group_has_no_device_id() {
    let e = parse_err(&[
        "dps",
        "enrollment-group",
        "create",
        "--group-id",
        "g",
        "--device-id",
        "x",
    ]);
    assert!(e.contains("--device-id"), "{e}");
}

#[test]
fn compute_device_key_and_registration_commands() {
    let (_, cmd) = dps(&[
        "dps",
        "enrollment-group",
        "compute-device-key",
        "--key",
        "K",
        "--registration-id",
        "R",
    ]);
    assert_eq!(
        cmd,
        DpsCommand::EnrollmentGroup(GroupCommand::ComputeDeviceKey {
            key: Some("K".into()),
            group_id: None,
            registration_id: "R".into()
        })
    );
    let (_, cmd) = dps(&["dps", "registration", "list"]);
    assert_eq!(
        cmd,
        DpsCommand::Registration(RegistrationCommand::List { group_id: None })
    );
    let (_, cmd) = dps(&["dps", "registration", "list", "--group-id", "g"]);
    assert_eq!(
        cmd,
        DpsCommand::Registration(RegistrationCommand::List {
            group_id: Some("g".into())
        })
    );
    let (_, cmd) = dps(&["dps", "registration", "show", "--registration-id", "r"]);
    assert_eq!(
        cmd,
        DpsCommand::Registration(RegistrationCommand::Show {
            registration_id: "r".into()
        })
    );
    let (_, cmd) = dps(&["dps", "registration", "delete", "--registration-id", "r"]);
    assert_eq!(
        cmd,
        DpsCommand::Registration(RegistrationCommand::Delete {
            registration_id: "r".into(),
            etag: None
        })
    );
    assert!(parse_err(&["dps", "registration", "show"]).contains("--registration-id"));
}

#[test]
fn connection_options_are_global() {
    let (client, _) = dps(&[
        "dps",
        "--server",
        "127.0.0.1:8443",
        "enrollment",
        "list",
        "--ca-cert",
        "/tmp/ca.pem",
        "--dps-connection-string",
        "HostName=h;SharedAccessKeyName=p;SharedAccessKey=k",
        "--data-dir",
        "/d",
        "-o",
        "table",
    ]);
    assert_eq!(client.server.as_deref(), Some("127.0.0.1:8443"));
    assert_eq!(
        client.ca_cert.as_deref(),
        Some(std::path::Path::new("/tmp/ca.pem"))
    );
    assert_eq!(client.data_dir, Some(std::path::PathBuf::from("/d")));
    assert_eq!(client.output, OutputFormat::Table);
    assert!(
        client
            .dps_connection_string
            .as_deref()
            .unwrap()
            .starts_with("HostName=h;")
    );
    assert!(parse_err(&["dps", "enrollment", "list", "--output", "xml"]).contains("--output"));
}

#[test]
fn diagnostics_auth_failures_limit() {
    let (client, top) = parse(&[
        "diagnostics",
        "auth-failures",
        "--limit",
        "5",
        "--output",
        "table",
    ])
    .unwrap();
    assert_eq!(client.output, OutputFormat::Table);
    let Top::Diagnostics { cmd, .. } = top else {
        panic!()
    };
    assert_eq!(cmd, DiagnosticsCommand::AuthFailures { limit: 5 });
    let Top::Diagnostics { cmd, .. } = parse(&["diagnostics", "auth-failures"]).unwrap().1 else {
        panic!()
    };
    assert_eq!(cmd, DiagnosticsCommand::AuthFailures { limit: 50 });
    assert!(parse_err(&["diagnostics", "auth-failures", "--limit", "0"]).contains("--limit"));
}

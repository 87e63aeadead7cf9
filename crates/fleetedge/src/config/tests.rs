use super::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

fn key() -> String {
    STANDARD.encode([42u8; 32])
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/fleetedge/config.toml"), text)
}

#[test]
fn manual_connection_string() {
    let c = parse(&format!(
        "hostname = \"gw.local\"\n[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=hub.example;DeviceId=edge-1;SharedAccessKey={}\"\n",
        key()
    ))
    .unwrap();
    assert_eq!(
        c.provisioning,
        Provisioning::Manual {
            iothub_hostname: "hub.example".into(),
            device_id: "edge-1".into(),
            key: KeySource::Value(key()),
        }
    );
    assert_eq!(c.hostname, "gw.local");
    assert_eq!(c.reprovisioning, ReprovisioningMode::Dynamic);
    assert_eq!(c.homedir, PathBuf::from("/var/lib/fleetedge"));
    assert_eq!((c.hub.mqtt_port, c.hub.https_port), (8883, 443));
    assert_eq!(c.edge_hub.listen, vec!["0.0.0.0:8883".parse().unwrap()]);
}

#[test]
fn manual_split_fields_with_value_and_uri() {
    let text = format!(
        r#"
[provisioning]
source = "manual"
iothub_hostname = "hub.example"
device_id = "edge-2"

[provisioning.authentication]
method = "sas"
device_id_pk = {{ value = "{}" }}
"#,
        key()
    );
    let c = parse(&text).unwrap();
    assert!(
        matches!(c.provisioning, Provisioning::Manual { ref device_id, key: KeySource::Value(_), .. } if device_id == "edge-2")
    );

    let text = text.replace(
        &format!("{{ value = \"{}\" }}", key()),
        "{ uri = \"file:///var/secrets/device-id.key\" }",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        *c.provisioning.key(),
        KeySource::File(PathBuf::from("/var/secrets/device-id.key"))
    );
}

#[test]
fn dps_symmetric_key_with_and_without_padding() {
    let padded = key();
    let unpadded = padded.trim_end_matches('=').to_string();
    assert_ne!(padded, unpadded);
    for k in [&padded, &unpadded] {
        let c = parse(&format!(
            r#"
trust_bundle_cert = "file:///etc/fleetedge/ca.pem"
auto_reprovisioning_mode = "AlwaysOnStartup"

[provisioning]
source = "dps"
global_endpoint = "https://localhost:48443"
id_scope = "0ne00000A0A"

[provisioning.attestation]
method = "symmetric_key"
registration_id = "edge-3"
symmetric_key = {{ value = "{k}" }}
"#
        ))
        .unwrap();
        match &c.provisioning {
            Provisioning::Dps {
                endpoint,
                id_scope,
                registration_id,
                key,
                ..
            } => {
                assert_eq!(
                    (endpoint.host.as_str(), endpoint.port),
                    ("localhost", 48443)
                );
                assert_eq!(id_scope, "0ne00000A0A");
                assert_eq!(registration_id, "edge-3");
                assert_eq!(*key, KeySource::Value(padded.clone()));
            }
            other @ Provisioning::Manual { .. } => panic!("{other:?}"),
        }
        assert_eq!(
            c.trust_bundle_cert,
            Some(PathBuf::from("/etc/fleetedge/ca.pem"))
        );
        assert_eq!(c.reprovisioning, ReprovisioningMode::AlwaysOnStartup);
    }
}

#[test]
fn dps_key_from_file_and_default_endpoint() {
    let c = parse(
        r#"
[provisioning]
source = "dps"
id_scope = "scope"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "r"
symmetric_key = { uri = "file:///etc/fleetedge/dps.key" }
"#,
    )
    .unwrap();
    match c.provisioning {
        Provisioning::Dps { endpoint, key, .. } => {
            assert_eq!(endpoint.host, "global.azure-devices-provisioning.net");
            assert_eq!(key, KeySource::File("/etc/fleetedge/dps.key".into()));
        }
        other @ Provisioning::Manual { .. } => panic!("{other:?}"),
    }
}

#[test]
fn fleetedge_sections_and_reprovisioning_alias() {
    let c = parse(&format!(
        r#"
dynamic_reprovisioning = false
homedir = "/tmp/fe"
[provisioning]
source = "manual"
connection_string = "HostName=h;DeviceId=d;SharedAccessKey={}"
[hub]
mqtt_port = 48883
https_port = 48443
[edge_hub]
listen = ["127.0.0.4:18883", "[::1]:18883"]
queue_max_bytes = 2097152
default_ttl_secs = 60
[agent]
status_report_interval_secs = 2
restart_backoff_initial_secs = 0.5
restart_backoff_max_secs = 4
stable_after_secs = 30
log_max_bytes = 65536
name = "edgeAgent"
type = "docker"
[agent.config]
image = "mcr.microsoft.com/azureiotedge-agent:1.5"
[moby_runtime]
uri = "unix:///var/run/docker.sock"
"#,
        key()
    ))
    .unwrap();
    assert_eq!(c.reprovisioning, ReprovisioningMode::OnErrorOnly);
    assert_eq!(c.homedir, PathBuf::from("/tmp/fe"));
    assert_eq!((c.hub.mqtt_port, c.hub.https_port), (48883, 48443));
    assert_eq!(c.edge_hub.listen.len(), 2);
    assert_eq!(c.edge_hub.default_ttl, Duration::from_mins(1));
    assert_eq!(c.agent.restart_backoff_initial, Duration::from_millis(500));
    assert_eq!(c.agent.restart_backoff_max, Duration::from_secs(4));
    assert!(c.ignored.is_empty(), "{:?}", c.ignored);
    assert_eq!(c.moby.socket, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(c.moby.network, "azure-iot-edge");
    assert!(!c.moby.allow_privileged);
}

/// (config text, expected line, expected key or message fragment)
#[test]
fn errors_name_the_line_the_key_and_the_fix() {
    let k = key();
    let cases: Vec<(String, usize, &str)> = vec![
        (
            "[provisioning]\nsource = \"cloud\"\n".into(),
            2,
            "provisioning.source",
        ),
        (
            "[provisioning]\nsource = \"dps\"\nid_scope = \"s\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\nsymmetric_key = { value = \"abc*\" }\n".to_string(),
            7,
            "provisioning.attestation.symmetric_key",
        ),
        (
            format!(
                "[provisioning]\nsource = \"dps\"\n\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\nsymmetric_key = {{ value = \"{k}\" }}\n"
            ),
            1,
            "provisioning.id_scope",
        ),
        (
            format!(
                "[provisioning]\nsource = \"dps\"\nid_scope = \"s\"\nglobal_endpoint = \"http://dps\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\nsymmetric_key = {{ value = \"{k}\" }}\n"
            ),
            4,
            "provisioning.global_endpoint",
        ),
        (
            format!(
                "[provisioning]\nsource = \"dps\"\nid_scope = \"s\"\n[provisioning.attestation]\nmethod = \"x509\"\nregistration_id = \"r\"\nsymmetric_key = {{ value = \"{k}\" }}\n"
            ),
            5,
            "provisioning.attestation.method",
        ),
        (
            "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=abcd\"\n".into(),
            3,
            "provisioning.connection_string",
        ),
        (
            format!(
                "auto_reprovisioning_mode = \"Sometimes\"\n[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey={k}\"\n"
            ),
            1,
            "auto_reprovisioning_mode",
        ),
        (
            format!(
                "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey={k}\"\n[edge_hub]\nlisten = [\"0.0.0.0\"]\n"
            ),
            5,
            "edge_hub.listen",
        ),
        (
            format!(
                "hostname = \"bad_host!\"\n[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey={k}\"\n"
            ),
            1,
            "hostname",
        ),
        (
            format!(
                "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey={k}\"\n[agent]\nrestart_backoff_initial_secs = 10\nrestart_backoff_max_secs = 1\n"
            ),
            6,
            "agent.restart_backoff_max_secs",
        ),
    ];
    for (text, line, key) in cases {
        let e = parse(&text).expect_err(&text);
        assert_eq!(e.line(), Some(line), "{e}\n---\n{text}");
        assert_eq!(e.key(), Some(key), "{e}");
        assert!(e.to_string().contains("fix: "), "{e}");
    }
}

#[test]
fn toml_errors_keep_their_position() {
    // unknown key inside [provisioning]
    let e = parse("[provisioning]\nsource = \"manual\"\nconection_string = \"x\"\n").unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(
        e.to_string().contains(
            "unknown key `conection_string` at line 3; did you mean `connection_string`?"
        ),
        "{e}"
    );
    assert!(e.to_string().contains("fix: rename"), "{e}");
    // an unknown key with nothing close: the valid keys are listed
    let e = parse("[provisioning]\nsource = \"manual\"\n[hub]\nwebsocket = true\n").unwrap_err();
    assert_eq!(e.line(), Some(4), "{e}");
    assert!(
        e.to_string()
            .contains("fix: remove or rename the key; valid keys here: mqtt_port, https_port"),
        "{e}"
    );
    // syntax error
    let e = parse("hostname = \"a\"\n[provisioning\n").unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    // wrong type
    let e = parse("[provisioning]\nsource = \"manual\"\n[hub]\nmqtt_port = \"x\"\n").unwrap_err();
    assert_eq!(e.line(), Some(4), "{e}");
    // no provisioning at all
    let e = parse("hostname = \"a\"\n").unwrap_err();
    assert!(e.to_string().contains("[provisioning]"), "{e}");
}

#[test]
fn init_renders_valid_configs() {
    let dps = init::render(&init::InitOptions {
        scope_id: Some("0ne0001".into()),
        registration_id: Some("edge-9".into()),
        symmetric_key: Some(key()),
        global_endpoint: Some("https://localhost:48443".into()),
        hub_https_port: Some(48443),
        ..Default::default()
    })
    .unwrap();
    let c = parse(&dps).unwrap();
    assert_eq!(c.provisioning.source(), "dps");
    assert_eq!(c.hub.https_port, 48443);
    let manual = init::render(&init::InitOptions {
        connection_string: Some(format!("HostName=h;DeviceId=d;SharedAccessKey={}", key())),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(parse(&manual).unwrap().provisioning.source(), "manual");
    assert!(init::render(&init::InitOptions::default()).is_err());
    assert!(
        init::render(&init::InitOptions {
            scope_id: Some("s".into()),
            ..Default::default()
        })
        .unwrap_err()
        .contains("--registration-id")
    );
}

#[test]
fn apply_stores_the_key_privately_and_reports_changes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("state");
    let text = |port: u16| {
        format!(
            "homedir = \"{}\"\n[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey={}\"\n[hub]\nmqtt_port = {port}\n",
            home.display(),
            key()
        )
    };
    let c = parse(&text(1883)).unwrap();
    let r = apply::apply(&c).unwrap();
    assert!(r.first_apply && r.provisioning_changed);
    let stored = std::fs::read_to_string(&r.key_file).unwrap();
    assert_eq!(stored, key());
    let mode = std::fs::metadata(&r.key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!r.changes.iter().any(|l| l.contains(&key())));

    let again = apply::apply(&c).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert!(!again.provisioning_changed);

    let c2 = parse(&text(2883)).unwrap();
    let changed = apply::apply(&c2).unwrap();
    assert_eq!(
        changed.changes,
        vec!["hub.mqtt_port: 1883 -> 2883".to_string()]
    );
    assert!(!changed.provisioning_changed);
}

fn manual(extra_top: &str) -> String {
    format!(
        "{extra_top}\n[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey={}\"\n",
        key()
    )
}

#[test]
fn typos_are_rejected_with_a_suggestion() {
    for (text, line, message) in [
        (
            manual("home_dir = \"/srv/fe\""),
            1,
            "unknown key `home_dir` at line 1; did you mean `homedir`?",
        ),
        (
            manual("hostname = \"gw\"\ntrust_bundle_crt = \"file:///etc/fleetedge/ca.pem\""),
            2,
            "unknown key `trust_bundle_crt` at line 2; did you mean `trust_bundle_cert`?",
        ),
        (
            manual("[edge_hub]\nlisten = [\"0.0.0.0:8883\"]\nqueue_max_byte = 2097152"),
            3,
            "unknown key `queue_max_byte` at line 3; did you mean `queue_max_bytes`?",
        ),
        (
            format!(
                "[provisioning]\nsource = \"dps\"\nid_scope = \"s\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\nsymetric_key = {{ value = \"{}\" }}\n",
                key()
            ),
            7,
            "unknown key `symetric_key` at line 7; did you mean `symmetric_key`?",
        ),
    ] {
        let e = parse(&text).expect_err(&text);
        assert_eq!(e.line(), Some(line), "{e}");
        assert!(e.to_string().contains(message), "{e}");
        assert!(e.to_string().contains("\n  fix: rename `"), "{e}");
    }
}

#[test]
fn azure_template_keys_are_accepted_and_reported_as_ignored() {
    // Every top-level key of Azure's config.toml template (and the super-config's
    // undocumented ones) parses; fleetedge reports the ones it does not use.
    let text = manual(
        r#"hostname = "gw"
parent_hostname = "parent"
trust_bundle_cert = "file:///etc/fleetedge/ca.pem"
auto_reprovisioning_mode = "Dynamic"
allow_elevated_docker_permissions = false
imported_master_encryption_key = "/var/lib/aziot/edged/master.key"
prefer_module_identity_cache = true
homedir = "/var/lib/fleetedge"
[agent]
name = "edgeAgent"
type = "docker"
imagePullPolicy = "on-create"
[agent.config]
image = "mcr.microsoft.com/azureiotedge-agent:1.5"
[agent.env]
RuntimeLogLevel = "debug"
[connect]
workload_uri = "unix:///var/run/iotedge/workload.sock"
management_uri = "unix:///var/run/iotedge/mgmt.sock"
[listen]
workload_uri = "fd://aziot-edged.workload.socket"
management_uri = "fd://aziot-edged.mgmt.socket"
[watchdog]
max_retries = "infinite"
[moby_runtime]
uri = "unix:///var/run/docker.sock"
network = "azure-iot-edge"
[edge_ca]
auto_generated_edge_ca_expiry_days = 90
[cert_issuance.local_ca]
cert = "file:///var/secrets/local-ca.pem"
pk = "file:///var/secrets/local-ca.key.pem"
[aziot_keys]
pkcs11_lib_path = "/usr/lib/libmypkcs11.so"
[preloaded_keys]
k = "file:///var/secrets/k.key"
[[principal]]
uid = 1000
name = "x"
[image_garbage_collection]
enabled = true
"#,
    );
    let c = parse(&text).unwrap();
    let mut ignored = c.ignored.clone();
    ignored.sort();
    assert_eq!(
        ignored,
        [
            "allow_elevated_docker_permissions",
            "aziot_keys",
            "cert_issuance",
            "connect",
            "edge_ca",
            "image_garbage_collection",
            "imported_master_encryption_key",
            "listen",
            "parent_hostname",
            "prefer_module_identity_cache",
            "preloaded_keys",
            "principal",
            "watchdog",
        ]
    );
}

#[test]
fn apply_fails_when_a_named_file_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("state");
    let missing = dir.path().join("nope.pem");
    let text = format!(
        "homedir = \"{}\"\ntrust_bundle_cert = \"file://{}\"\n[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey={}\"\n",
        home.display(),
        missing.display(),
        key()
    );
    let e = apply::apply(&parse(&text).unwrap()).unwrap_err();
    assert!(
        e.contains("trust_bundle_cert") && e.contains("nope.pem"),
        "{e}"
    );
    assert!(
        !home.join("keys").join("device-id").exists(),
        "nothing applied"
    );
    // a file that is not PEM
    std::fs::write(&missing, "hello").unwrap();
    let e = apply::apply(&parse(&text).unwrap()).unwrap_err();
    assert!(e.contains("trust_bundle_cert"), "{e}");

    // a key file that does not exist
    let text = format!(
        "homedir = \"{}\"\n[provisioning]\nsource = \"manual\"\niothub_hostname = \"h\"\ndevice_id = \"d\"\n[provisioning.authentication]\nmethod = \"sas\"\ndevice_id_pk = {{ uri = \"file://{}/device.key\" }}\n",
        home.display(),
        dir.path().display()
    );
    let e = apply::apply(&parse(&text).unwrap()).unwrap_err();
    assert!(e.contains("device.key"), "{e}");
}

/// Found by `tests/fuzz_config.rs`: `1e301` seconds panicked converting to a `Duration`;
/// a value that rounds to zero would make a zero-period timer.
#[test]
fn durations_out_of_range_are_errors() {
    for bad in ["1e301", "1e-300", "0", "-1", "nan", "inf", "40000000"] {
        let text = format!(
            "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey={}\"\n[agent]\nrestart_backoff_initial_secs = {bad}\n",
            key()
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("restart_backoff_initial_secs"), "{bad}: {e}");
    }
    let text = format!(
        "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey={}\"\n[agent]\nrestart_backoff_initial_secs = 0.001\nrestart_backoff_max_secs = 31536000\n",
        key()
    );
    parse(&text).unwrap();
}

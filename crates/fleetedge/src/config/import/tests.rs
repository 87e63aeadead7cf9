use super::*;
use crate::config::{KeySource, Provisioning, ReprovisioningMode};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/iotedge-1.1/", $name))
    };
}

fn keys(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.key.as_str()).collect()
}

#[test]
fn manual_connection_string_with_the_rest_reported() {
    let i = convert(fixture!("manual.yaml")).unwrap();
    let c = Config::parse(Path::new("config.toml"), &i.toml).unwrap();
    assert_eq!(
        c.provisioning,
        Provisioning::Manual {
            iothub_hostname: "hub.example.com".into(),
            device_id: "gateway-01".into(),
            key: KeySource::Value("KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=".into()),
        }
    );
    assert_eq!(c.reprovisioning, ReprovisioningMode::OnErrorOnly);
    assert_eq!(c.hostname, "gateway-01.local");
    assert_eq!(
        c.trust_bundle_cert.as_deref(),
        Some(Path::new("/etc/fleetedge/fleethub-ca.pem"))
    );
    assert_eq!(c.homedir, Path::new(crate::config::DEFAULT_HOMEDIR));
    assert_eq!(
        keys(&i.carried),
        [
            "provisioning.device_connection_string",
            "provisioning.dynamic_reprovisioning",
            "certificates.trusted_ca_certs",
            "hostname",
        ]
    );
    assert_eq!(
        keys(&i.dropped),
        [
            "certificates.device_ca_cert",
            "certificates.device_ca_pk",
            "certificates.auto_generated_ca_lifetime_days",
            "agent",
            "connect",
            "listen",
            "homedir",
            "moby_runtime",
        ]
    );
    // lines of the old file
    let line = |items: &[Item], k: &str| items.iter().find(|i| i.key == k).unwrap().line;
    assert_eq!(
        line(&i.carried, "provisioning.device_connection_string"),
        17
    );
    assert_eq!(line(&i.dropped, "agent"), 32);
    assert_eq!(line(&i.dropped, "homedir"), 65);
    assert!(i.dropped.iter().all(|d| !d.note.is_empty()));
}

#[test]
fn dps_symmetric_key() {
    let i = convert(fixture!("dps-symmetric-key.yaml")).unwrap();
    let c = Config::parse(Path::new("config.toml"), &i.toml).unwrap();
    match &c.provisioning {
        Provisioning::Dps {
            endpoint,
            id_scope,
            registration_id,
            key,
            payload: None,
        } => {
            assert_eq!(
                (endpoint.host.as_str(), endpoint.port),
                ("dps.example.com", 8443)
            );
            assert_eq!(id_scope, "0ne00012345");
            assert_eq!(registration_id, "gateway-02");
            // the unpadded key is stored padded
            assert_eq!(
                *key,
                KeySource::Value("KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=".into())
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.reprovisioning, ReprovisioningMode::Dynamic);
    assert_eq!(
        c.trust_bundle_cert.as_deref(),
        Some(Path::new("/etc/fleetedge/fleethub-ca.pem"))
    );
    let hostname = i.dropped.iter().find(|d| d.key == "hostname").unwrap();
    assert!(hostname.note.contains("placeholder"), "{hostname:?}");
    assert_eq!(keys(&i.dropped), ["hostname", "agent", "homedir"]);
}

#[test]
fn bad_files_name_the_line() {
    for (text, line, fragment) in [
        (
            fixture!("dps-x509.yaml"),
            6,
            "attestation method 'x509' is not supported",
        ),
        (fixture!("placeholder.yaml"), 3, "template placeholder"),
        (fixture!("bad-key.yaml"), 7, "not valid base64"),
        (
            "provisioning:\n  source: \"external\"\n",
            2,
            "source 'external'",
        ),
        ("hostname: x\n", 1, "no provisioning section"),
        (
            "provisioning:\n  source: manual\n  device_connection_string: \"HostName=h;SharedAccessKeyName=owner;SharedAccessKey=KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=\"\n",
            3,
            "not a device connection string",
        ),
    ] {
        let e = convert(text).unwrap_err();
        assert_eq!(e.line(), line, "{e}\n---\n{text}");
        assert!(e.to_string().contains(fragment), "{e}");
        assert!(e.to_string().contains(&format!("line {line}")), "{e}");
    }
    let e = convert(fixture!("syntax-error.yaml")).unwrap_err();
    assert!(matches!(e, ImportError::Yaml(_)), "{e}");
    assert!(e.line() >= 3, "{e}");
    assert!(e.to_string().contains(&format!("line {}", e.line())), "{e}");
}

#[test]
fn import_writes_a_private_file_and_leaves_the_old_one_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("config.yaml");
    let out = dir.path().join("fleetedge").join("config.toml");
    std::fs::write(&from, fixture!("manual.yaml")).unwrap();
    std::fs::set_permissions(&from, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::metadata(&from).unwrap();
    let i = import(&from, &out, false).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), i.toml);
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_to_string(&from).unwrap(),
        fixture!("manual.yaml")
    );
    let after = std::fs::metadata(&from).unwrap();
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    assert_eq!(after.permissions().mode() & 0o777, 0o644);
    // no overwrite without --force
    let e = import(&from, &out, false).unwrap_err();
    assert!(e.contains("--force"), "{e}");
    import(&from, &out, true).unwrap();
    let e = import(&dir.path().join("missing.yaml"), &out, true).unwrap_err();
    assert!(e.contains("cannot read"), "{e}");
}

//! Where the CLI connects: flags, then server-info.json.

use crate::settings::{ServerInfo, Service, dial_address, resolve_with};
use crate::{ClientArgs, Endpoint};
use std::path::PathBuf;

const DPS_CS: &str = "HostName=localhost;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const HUB_CS: &str = "HostName=hub.local;SharedAccessKeyName=iothubowner;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn info() -> ServerInfo {
    serde_json::from_value(serde_json::json!({
        "idScope": "0ne0000ABCD",
        "dpsHost": "localhost",
        "hubHost": "hub.local",
        "caCertPath": "/data/certs/ca.pem",
        "mqttPort": 8883,
        "httpsPort": 8443,
        "dpsServiceConnectionString": DPS_CS,
        "hubServiceConnectionString": HUB_CS,
        "someFutureField": true
    }))
    .unwrap()
}

fn args() -> ClientArgs {
    ClientArgs {
        data_dir: Some(PathBuf::from("/srv/fh")),
        ..ClientArgs::default()
    }
}

#[test]
fn zero_flags_use_server_info() {
    let ep = resolve_with(&args(), Service::Dps, Some(&info())).unwrap();
    assert_eq!(ep.host_name, "localhost");
    assert_eq!(ep.key_name, "provisioningserviceowner");
    assert_eq!(ep.dial, "localhost:8443");
    assert_eq!(ep.ca_cert, Some(PathBuf::from("/data/certs/ca.pem")));
    assert!(ep.origin.contains("server-info.json"));
    assert!(
        !format!("{ep:?}").contains("AAECAwQF"),
        "Debug must not show the key"
    );

    let hub = resolve_with(&args(), Service::Hub, Some(&info())).unwrap();
    assert_eq!(
        (
            hub.host_name.as_str(),
            hub.key_name.as_str(),
            hub.dial.as_str()
        ),
        ("hub.local", "iothubowner", "hub.local:8443")
    );
    let diag = resolve_with(&args(), Service::DpsOrHub, Some(&info())).unwrap();
    assert_eq!(diag.key_name, "provisioningserviceowner");
}

#[test]
fn flags_win_over_server_info() {
    let a = ClientArgs {
        server: Some("127.0.0.1:9443".into()),
        ca_cert: Some(PathBuf::from("/etc/my-ca.pem")),
        ..args()
    };
    let ep = resolve_with(&a, Service::Dps, Some(&info())).unwrap();
    assert_eq!(
        ep.host_name, "localhost",
        "TLS name and token keep the HostName"
    );
    assert_eq!(ep.dial, "127.0.0.1:9443");
    assert_eq!(ep.ca_cert, Some(PathBuf::from("/etc/my-ca.pem")));

    let a = ClientArgs {
        hub_connection_string: Some(HUB_CS.into()),
        ..args()
    };
    let diag = resolve_with(&a, Service::DpsOrHub, Some(&info())).unwrap();
    assert_eq!(
        diag.key_name, "iothubowner",
        "an explicit hub string beats the file's DPS one"
    );
}

#[test]
fn server_info_only_speaks_for_its_own_host() {
    let remote = "HostName=dps.example.com;SharedAccessKeyName=p;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let a = ClientArgs {
        dps_connection_string: Some(remote.into()),
        ..args()
    };
    let ep = resolve_with(&a, Service::Dps, Some(&info())).unwrap();
    assert_eq!(ep.dial, "dps.example.com:443");
    assert_eq!(ep.ca_cert, None);
    assert_eq!(ep.origin, "--dps-connection-string");

    // Same host as the file (any case): its port and CA apply.
    let local = DPS_CS.replace("localhost", "LOCALHOST");
    let a = ClientArgs {
        dps_connection_string: Some(local),
        ..args()
    };
    let ep = resolve_with(&a, Service::Dps, Some(&info())).unwrap();
    assert_eq!(ep.dial, "LOCALHOST:8443");
    assert_eq!(ep.ca_cert, Some(PathBuf::from("/data/certs/ca.pem")));
}

#[test]
fn no_connection_string_says_what_to_do() {
    let e = resolve_with(&args(), Service::Dps, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("no DPS connection string: pass --dps-connection-string or run `fleethub serve` with --data-dir /srv/fh first"),
        "{e}"
    );
    assert!(e.contains("server-info.json does not exist"), "{e}");
    let e = resolve_with(&args(), Service::Hub, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("no hub connection string: pass --hub-connection-string"),
        "{e}"
    );
    let mut i = info();
    i.dps_service_connection_string = Some(String::new());
    let e = resolve_with(&args(), Service::Dps, Some(&i))
        .unwrap_err()
        .to_string();
    assert!(e.contains("has none"), "{e}");
}

#[test]
fn bad_connection_strings_are_explained() {
    for (cs, want) in [
        (
            "HostName=h;DeviceId=d;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "device connection string",
        ),
        (
            "HostName=h;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "no SharedAccessKeyName",
        ),
        (
            "SharedAccessKeyName=p;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "HostName",
        ),
    ] {
        let a = ClientArgs {
            dps_connection_string: Some(cs.into()),
            ..args()
        };
        let e = resolve_with(&a, Service::Dps, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--dps-connection-string") && e.contains(want),
            "{cs}: {e}"
        );
    }
}

#[test]
fn server_info_file_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let a = ClientArgs {
        data_dir: Some(dir.path().to_path_buf()),
        ..ClientArgs::default()
    };
    let e = Endpoint::resolve(&a, Service::Dps).unwrap_err().to_string();
    assert!(e.starts_with("no DPS connection string"), "{e}");

    let file = dir.path().join(crate::SERVER_INFO_FILE);
    std::fs::write(
        &file,
        serde_json::to_vec(&serde_json::json!({
            "idScope": "0ne0000ABCD", "dpsHost": "localhost", "hubHost": "hub.local",
            "caCertPath": "certs/ca.pem", "mqttPort": 8883, "httpsPort": 8443,
            "dpsServiceConnectionString": DPS_CS, "hubServiceConnectionString": HUB_CS
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/ca.pem"), "pem").unwrap();
    let ep = Endpoint::resolve(&a, Service::Dps).unwrap();
    assert_eq!(ep.dial, "localhost:8443");
    assert_eq!(
        ep.ca_cert,
        Some(dir.path().join("certs/ca.pem")),
        "relative CA path is found in the data dir"
    );

    std::fs::write(&file, "{not json").unwrap();
    let e = format!("{:#}", Endpoint::resolve(&a, Service::Dps).unwrap_err());
    assert!(
        e.contains("server-info.json is not valid server info"),
        "{e}"
    );
}

#[test]
fn server_addresses() {
    assert_eq!(
        dial_address("127.0.0.1:8443", 443).unwrap(),
        "127.0.0.1:8443"
    );
    assert_eq!(dial_address("myhost", 8443).unwrap(), "myhost:8443");
    assert_eq!(dial_address("[::1]:8443", 443).unwrap(), "[::1]:8443");
    assert_eq!(dial_address("[::1]", 443).unwrap(), "[::1]:443");
    for bad in [
        "::1",
        "host:",
        "host:x",
        ":443",
        "host:0",
        "[::1]x",
        "h:1:2",
        "host:70000",
    ] {
        assert!(dial_address(bad, 443).is_err(), "{bad}");
    }
}

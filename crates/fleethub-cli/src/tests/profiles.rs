//! `fleethub login` / `logout` and where the admin commands connect when profiles exist.

use crate::login::{LoginArgs, LogoutArgs, login, logout};
use crate::output::OutputFormat;
use crate::profiles::{ProfileStore, mask_key};
use crate::settings::{Defaults, Service, resolve_profile};
use crate::{ClientArgs, Endpoint};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn hub_cs(host: &str) -> String {
    format!("HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}")
}

fn dps_cs(host: &str) -> String {
    format!("HostName={host};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={KEY}")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn login_args(profile: &str) -> LoginArgs {
    LoginArgs {
        profile: profile.into(),
        output: OutputFormat::Table,
        ..LoginArgs::default()
    }
}

fn ca_file(dir: &Path) -> PathBuf {
    let p = dir.join("my-ca.pem");
    std::fs::write(&p, include_str!("test-root-ca.pem")).unwrap();
    p
}

#[test]
fn login_saves_owner_only_and_lists_without_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ProfileStore::at(tmp.path().join("cfg/fleethub"));
    let a = LoginArgs {
        hub_connection_string: Some(hub_cs("hub.example.com")),
        dps_connection_string: Some(dps_cs("dps.example.com")),
        ca_cert: Some(ca_file(tmp.path())),
        ..login_args("default")
    };
    let note = login(&store, &a).unwrap();
    assert!(
        note.note().unwrap().starts_with("saved profile 'default'"),
        "{note:?}"
    );
    assert_eq!(mode(&store.file()), 0o600);
    assert_eq!(mode(&tmp.path().join("cfg/fleethub")), 0o700);
    let saved = store.load().unwrap();
    let p = &saved.by_name["default"];
    let ca = p.ca_cert.clone().unwrap();
    assert!(
        ca.starts_with(tmp.path().join("cfg/fleethub/ca")),
        "the CA is copied next to the profiles: {}",
        ca.display()
    );
    assert_eq!(
        std::fs::read_to_string(&ca).unwrap(),
        include_str!("test-root-ca.pem")
    );

    let listed = login(
        &store,
        &LoginArgs {
            list: true,
            ..login_args("default")
        },
    )
    .unwrap();
    for format in [OutputFormat::Table, OutputFormat::Json, OutputFormat::Yaml] {
        let text = listed.render(format);
        assert!(text.contains("hub.example.com"), "{text}");
        assert!(text.contains("dps.example.com"), "{text}");
        assert!(
            !text.contains("AAECAwQF"),
            "keys must never be printed: {text}"
        );
    }
    assert!(
        listed
            .render(OutputFormat::Json)
            .contains("SharedAccessKey=****")
    );
}

#[test]
fn login_updates_field_by_field_and_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ProfileStore::at(tmp.path());
    login(
        &store,
        &LoginArgs {
            hub_connection_string: Some(hub_cs("hub.lab")),
            ..login_args("lab")
        },
    )
    .unwrap();
    let n = login(
        &store,
        &LoginArgs {
            server: Some("10.0.0.5:8443".into()),
            ..login_args("lab")
        },
    )
    .unwrap();
    assert!(n.note().unwrap().starts_with("updated profile 'lab'"));
    let p = &store.load().unwrap().by_name["lab"];
    assert_eq!(
        p.hub_connection_string.as_deref(),
        Some(hub_cs("hub.lab").as_str())
    );
    assert_eq!(p.server.as_deref(), Some("10.0.0.5:8443"));

    let device_cs = format!("HostName=h;DeviceId=d;SharedAccessKey={KEY}");
    let cases: [(LoginArgs, &str); 5] = [
        (login_args("lab"), "nothing to save"),
        (
            LoginArgs {
                hub_connection_string: Some(device_cs),
                ..login_args("lab")
            },
            "device connection string",
        ),
        (
            LoginArgs {
                server: Some("host:x".into()),
                ..login_args("lab")
            },
            "--server",
        ),
        (
            LoginArgs {
                hub_connection_string: Some(hub_cs("h")),
                ..login_args("../evil")
            },
            "not a profile name",
        ),
        (
            LoginArgs {
                ca_cert: Some(store.file()),
                ..login_args("lab")
            },
            "no PEM certificate",
        ),
    ];
    for (args, want) in cases {
        let e = format!("{:#}", login(&store, &args).unwrap_err());
        assert!(e.contains(want), "{want}: {e}");
    }
    assert_eq!(
        store.load().unwrap().by_name["lab"].server.as_deref(),
        Some("10.0.0.5:8443"),
        "a refused login changes nothing"
    );
}

#[test]
fn others_may_not_read_the_profiles() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ProfileStore::at(tmp.path());
    login(
        &store,
        &LoginArgs {
            hub_connection_string: Some(hub_cs("h")),
            ..login_args("default")
        },
    )
    .unwrap();
    std::fs::set_permissions(store.file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = store.load().unwrap_err().to_string();
    assert!(e.contains("chmod 600"), "{e}");
}

#[test]
fn logout_deletes_profiles_and_their_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ProfileStore::at(tmp.path().join("fh"));
    for name in ["default", "lab"] {
        login(
            &store,
            &LoginArgs {
                hub_connection_string: Some(hub_cs("h")),
                ca_cert: Some(ca_file(tmp.path())),
                ..login_args(name)
            },
        )
        .unwrap();
    }
    let lab_ca = store.load().unwrap().by_name["lab"]
        .ca_cert
        .clone()
        .unwrap();
    let note = logout(
        &store,
        &LogoutArgs {
            profile: "lab".into(),
            all: false,
        },
    )
    .unwrap();
    assert!(note.starts_with("deleted profile lab"), "{note}");
    assert!(!lab_ca.exists());
    let left: Vec<String> = store.load().unwrap().by_name.into_keys().collect();
    assert_eq!(left, ["default"]);
    let e = logout(
        &store,
        &LogoutArgs {
            profile: "lab".into(),
            all: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no profile 'lab'"), "{e}");
    logout(
        &store,
        &LogoutArgs {
            profile: "default".into(),
            all: true,
        },
    )
    .unwrap();
    assert!(store.load().unwrap().by_name.is_empty());
}

#[test]
fn config_directory_follows_xdg() {
    let env = |xdg: Option<&'static str>, home: Option<&'static str>| {
        ProfileStore::locate(move |k| match k {
            "XDG_CONFIG_HOME" => xdg.map(String::from),
            "HOME" => home.map(String::from),
            _ => None,
        })
    };
    assert_eq!(
        env(Some("/x/cfg"), Some("/home/u")).unwrap().file(),
        PathBuf::from("/x/cfg/fleethub/profiles.toml")
    );
    assert_eq!(
        env(Some("relative"), Some("/home/u")).unwrap().file(),
        PathBuf::from("/home/u/.config/fleethub/profiles.toml"),
        "a relative XDG_CONFIG_HOME is ignored (XDG base directory spec)"
    );
    assert!(env(None, None).is_err());
}

/// A store with profiles `default` (hub.default) and `lab` (hub.lab), and a data directory
/// with a server-info.json for hub.local.
fn setup() -> (tempfile::TempDir, ProfileStore, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let store = ProfileStore::at(tmp.path().join("cfg"));
    for (name, host) in [("default", "hub.default"), ("lab", "hub.lab")] {
        login(
            &store,
            &LoginArgs {
                hub_connection_string: Some(hub_cs(host)),
                ..login_args(name)
            },
        )
        .unwrap();
    }
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join(crate::SERVER_INFO_FILE),
        serde_json::json!({
            "hubHost": "hub.local", "httpsPort": 8443,
            "hubServiceConnectionString": hub_cs("hub.local")
        })
        .to_string(),
    )
    .unwrap();
    (tmp, store, data)
}

fn hub_host(args: &ClientArgs, store: &ProfileStore) -> String {
    match Defaults::select(args, Some(store)).unwrap() {
        Defaults::Profile {
            name,
            profile,
            file,
        } => {
            resolve_profile(args, Service::Hub, &name, &profile, &file)
                .unwrap()
                .host_name
        }
        Defaults::DataDir { info, .. } => {
            crate::settings::resolve_with(args, Service::Hub, info.as_ref())
                .unwrap()
                .host_name
        }
    }
}

#[test]
fn precedence_flags_profile_data_dir_default() {
    let (_tmp, store, data) = setup();
    let none = ClientArgs::default();
    assert_eq!(
        hub_host(&none, &store),
        "hub.default",
        "the default profile"
    );

    let with_dir = ClientArgs {
        data_dir: Some(data.clone()),
        ..ClientArgs::default()
    };
    assert_eq!(
        hub_host(&with_dir, &store),
        "hub.local",
        "an explicit --data-dir beats the default profile"
    );

    let lab = ClientArgs {
        profile: Some("lab".into()),
        data_dir: Some(data),
        ..ClientArgs::default()
    };
    assert_eq!(
        hub_host(&lab, &store),
        "hub.lab",
        "--profile beats --data-dir"
    );

    let flag = ClientArgs {
        hub_connection_string: Some(hub_cs("hub.flag")),
        ..lab.clone()
    };
    assert_eq!(hub_host(&flag, &store), "hub.flag", "flags beat everything");

    let missing = ClientArgs {
        profile: Some("prod".into()),
        ..ClientArgs::default()
    };
    let e = Defaults::select(&missing, Some(&store))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no profile 'prod'") && e.contains("default, lab"),
        "{e}"
    );

    let empty = ProfileStore::at(store.file().with_file_name("none"));
    match Defaults::select(&ClientArgs::default(), Some(&empty)).unwrap() {
        Defaults::DataDir { dir, .. } => assert_eq!(dir, PathBuf::from("./fleethub-data")),
        other @ Defaults::Profile { .. } => panic!("{other:?}"),
    }
}

#[test]
fn a_profile_endpoint() {
    let (tmp, store, _data) = setup();
    login(
        &store,
        &LoginArgs {
            server: Some("127.0.0.1:8443".into()),
            ca_cert: Some(ca_file(tmp.path())),
            ..login_args("lab")
        },
    )
    .unwrap();
    let args = ClientArgs {
        profile: Some("lab".into()),
        ..ClientArgs::default()
    };
    let Defaults::Profile {
        name,
        profile,
        file,
    } = Defaults::select(&args, Some(&store)).unwrap()
    else {
        panic!("a profile");
    };
    let ep: Endpoint = resolve_profile(&args, Service::Hub, &name, &profile, &file).unwrap();
    assert_eq!(ep.host_name, "hub.lab");
    assert_eq!(ep.dial, "127.0.0.1:8443");
    assert_eq!(ep.ca_cert, profile.ca_cert);
    assert!(ep.origin.contains("profile 'lab'"), "{}", ep.origin);

    let e = resolve_profile(&args, Service::Dps, &name, &profile, &file)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("profile 'lab'")
            && e.contains("fleethub login --profile lab --dps-connection-string"),
        "{e}"
    );

    let explicit = ClientArgs {
        server: Some("10.1.1.1:9443".into()),
        ca_cert: Some(PathBuf::from("/etc/other.pem")),
        ..args
    };
    let ep = resolve_profile(&explicit, Service::Hub, &name, &profile, &file).unwrap();
    assert_eq!(ep.dial, "10.1.1.1:9443");
    assert_eq!(ep.ca_cert, Some(PathBuf::from("/etc/other.pem")));
}

#[test]
fn masking() {
    assert_eq!(
        mask_key(&hub_cs("h")),
        "HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=****"
    );
    assert_eq!(mask_key("HostName=h"), "HostName=h");
}

//! `fleethub login` as an operator uses it: connection strings saved once in the user's
//! configuration directory, then admin commands run from another directory with no data
//! directory at hand.

mod common;

use common::{ServerProcess, bin};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Runs `fleethub ARGS` in `cwd` with `XDG_CONFIG_HOME=config` and none of the fleethub
/// variables of the caller's environment.
fn fleethub(cwd: &Path, config: &Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEETHUB_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(args)
        .current_dir(cwd)
        .env("XDG_CONFIG_HOME", config)
        .output()
        .expect("run fleethub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn login_then_admin_commands_from_anywhere() {
    let s = ServerProcess::start();
    let elsewhere = tempfile::tempdir().unwrap();
    let cwd = elsewhere.path();
    let config = cwd.join("config");

    // Without a profile or a data directory the CLI says what to do.
    let (ok, _, err) = fleethub(cwd, &config, &["hub", "device-identity", "list"]);
    assert!(!ok);
    assert!(
        err.contains("fleethub login --hub-connection-string"),
        "{err}"
    );

    let server = format!("127.0.0.1:{}", s.https_port);
    let ca = s.ca_pem();
    let (ok, out, err) = fleethub(
        cwd,
        &config,
        &[
            "login",
            "--hub-connection-string",
            &s.info.hub_service_connection_string,
            "--dps-connection-string",
            &s.info.dps_service_connection_string,
            "--ca-cert",
            ca.to_str().unwrap(),
            "--server",
            &server,
        ],
    );
    assert!(ok, "{err}");
    assert!(out.is_empty(), "login prints nothing to stdout: {out}");
    assert!(err.contains("saved profile 'default'"), "{err}");
    let file = config.join("fleethub/profiles.toml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The default profile serves every admin command.
    let (ok, _, err) = fleethub(
        cwd,
        &config,
        &["hub", "device-identity", "create", "-d", "via-login"],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = fleethub(
        cwd,
        &config,
        &["hub", "device-identity", "list", "-o", "table"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("via-login"), "{out}");
    let (ok, _, err) = fleethub(
        cwd,
        &config,
        &[
            "dps",
            "enrollment",
            "create",
            "--registration-id",
            "r-login",
        ],
    );
    assert!(ok, "{err}");

    // Listing never shows a key.
    let key = s
        .info
        .hub_service_connection_string
        .split("SharedAccessKey=")
        .nth(1)
        .unwrap()
        .to_string();
    let (ok, out, err) = fleethub(cwd, &config, &["login", "--list", "-o", "json"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"default\"") && !out.contains(&key), "{out}");

    // A named profile pointing at a wrong address, chosen by env, fails against that address.
    let (ok, _, err) = fleethub(
        cwd,
        &config,
        &[
            "login",
            "--profile",
            "nowhere",
            "--hub-connection-string",
            &s.info.hub_service_connection_string,
            "--server",
            "127.0.0.1:1",
        ],
    );
    assert!(ok, "{err}");
    let mut cmd = Command::new(bin());
    let out = cmd
        .args(["hub", "device-identity", "list"])
        .current_dir(cwd)
        .env("XDG_CONFIG_HOME", &config)
        .env("FLEETHUB_PROFILE", "nowhere")
        .env_remove("FLEETHUB_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // logout: the default profile is gone, the commands are back to needing a server.
    let (ok, _, err) = fleethub(cwd, &config, &["logout"]);
    assert!(ok, "{err}");
    let (ok, _, _) = fleethub(cwd, &config, &["hub", "device-identity", "list"]);
    assert!(!ok);
}

//! End-to-end: what `fleethub serve` writes to stdout and stderr when they are files (as under
//! systemd/journald): no service keys in the banner unless asked for.

mod common;

use common::{ServerProcess, free_port};
use std::time::{Duration, Instant};

fn stdout_when_ready(server: &ServerProcess) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = server.stdout();
        if out.contains("fleethub is ready") {
            return out;
        }
        assert!(Instant::now() < deadline, "no banner: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn key_of(connection_string: &str) -> &str {
    connection_string
        .split(';')
        .find_map(|p| p.strip_prefix("SharedAccessKey="))
        .expect("a key")
}

#[test]
fn banner_keeps_service_keys_out_of_logs_unless_asked() {
    let server = ServerProcess::start();
    let out = stdout_when_ready(&server);
    for cs in [
        &server.info.dps_service_connection_string,
        &server.info.hub_service_connection_string,
        &server.info.event_hub_compatible_connection_string,
    ] {
        assert!(!out.contains(key_of(cs)), "key in the banner: {out}");
    }
    // the Event Hub-compatible endpoint, its name and the readers' connection string
    let host = &server.info.hub_host;
    let name = host.split('.').next().unwrap();
    assert_eq!(
        server.info.event_hub_compatible_endpoint,
        format!("sb://{host}/")
    );
    assert_eq!(server.info.event_hub_compatible_name, name);
    assert!(
        server
            .info
            .event_hub_compatible_connection_string
            .starts_with(&format!(
                "Endpoint=sb://{host}/;SharedAccessKeyName=service;SharedAccessKey="
            ))
            && server
                .info
                .event_hub_compatible_connection_string
                .ends_with(&format!(";EntityPath={name}")),
        "{}",
        server.info.event_hub_compatible_connection_string
    );
    assert!(
        out.contains(&format!(
            "SharedAccessKeyName=service;SharedAccessKey=<not shown>;EntityPath={name}"
        )),
        "{out}"
    );
    assert!(
        out.contains("SharedAccessKeyName=iothubowner;SharedAccessKey=<not shown>"),
        "{out}"
    );
    assert!(out.contains("fleethub info --data-dir"), "{out}");
    assert!(out.contains("--show-keys"), "{out}");
    assert!(
        !server
            .log()
            .contains(key_of(&server.info.hub_service_connection_string)),
        "key in the log"
    );
    // The operator's way to the keys.
    let (ok, info, err) = server.cli(&["info"]);
    assert!(ok, "{err}");
    assert!(info.contains(&server.info.hub_service_connection_string));
    assert!(info.contains(&server.info.event_hub_compatible_connection_string));

    let tmp = tempfile::tempdir().unwrap();
    let shown = ServerProcess::start_with(
        &tmp.path().join("data"),
        free_port(),
        free_port(),
        &["--show-keys"],
    );
    let out = stdout_when_ready(&shown);
    assert!(
        out.contains(&shown.info.hub_service_connection_string)
            && out.contains(&shown.info.dps_service_connection_string),
        "{out}"
    );
}

#[test]
fn log_to_a_file_has_no_colour_codes() {
    let server = ServerProcess::start();
    let log = server.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\x1b'), "escape codes in the log: {log:?}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        &tmp.path().join("data"),
        free_port(),
        free_port(),
        &["--log-format", "json"],
    );
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string() && v["target"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"message\":\"host names stored")),
        "{log}"
    );
}

//! End-to-end: what the data directory keeps between starts and who may use it.

mod common;

use common::ServerProcess;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `fleethub serve ARGS` that is expected to exit by itself within 30 s.
fn serve_expecting_exit(data_dir: &std::path::Path, args: &[&str]) -> Output {
    let mut child = Command::new(common::bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind", "127.0.0.1"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fleethub serve {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn second_server_on_the_same_data_directory_refuses_to_start() {
    let mut server = ServerProcess::start();
    let info_before = std::fs::read(server.data_dir.join("server-info.json")).unwrap();
    let (mqtt, https) = (free_port(), free_port());
    let out = serve_expecting_exit(
        &server.data_dir,
        &[
            "--mqtt-port",
            &mqtt.to_string(),
            "--https-port",
            &https.to_string(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second server started: {stderr}");
    assert!(
        stderr.contains("is in use by another `fleethub serve`")
            && stderr.contains(&format!("process {}", server.child.as_ref().unwrap().id())),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(server.data_dir.join("server-info.json")).unwrap(),
        info_before,
        "server-info.json of the running server left alone"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", mqtt)).is_err(),
        "the refused server never listened"
    );

    // kill -9 leaves the lock file behind; the lock itself went with the process.
    server.kill9();
    assert!(server.data_dir.join("fleethub.lock").exists());
    server.restart();
    let (ok, out, err) = server.cli(&["info", "--output", "json"]);
    assert!(ok, "{err}");
    assert!(out.contains(&server.info.id_scope));
}

use super::*;
use crate::identity::ModuleIdentity;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn id(module: &str) -> ModuleIdentity {
    ModuleIdentity {
        module_id: module.into(),
        generation_id: format!("gen-{module}"),
        primary_key: fleethub_core::keys::generate_key(),
        secondary_key: fleethub_core::keys::generate_key(),
    }
}

fn manager(state: &StateDir, ids: Vec<ModuleIdentity>) -> WorkloadSockets {
    WorkloadSockets::new(
        state.clone(),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        Arc::new(move |m| ids.iter().find(|i| i.module_id == m).cloned()),
    )
    .unwrap()
}

async fn sign(sock: &Path, module: &ModuleIdentity, data: &str) -> (StatusCode, Value) {
    let path = format!(
        "/modules/{}/genid/{}/sign?api-version=2020-07-07",
        percent_encoding::utf8_percent_encode(
            &module.module_id,
            percent_encoding::NON_ALPHANUMERIC
        ),
        module.generation_id
    );
    let body = json!({"keyId": "primary", "algo": "HMACSHA256", "data": STANDARD.encode(data)});
    let (s, b) = uds::request(
        sock,
        Method::POST,
        &path,
        Some(body),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    (s, serde_json::from_slice(&b).unwrap())
}

async fn trust_bundle_status(sock: &Path) -> StatusCode {
    uds::request(
        sock,
        Method::GET,
        "/trust-bundle?api-version=2020-07-07",
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap()
    .0
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn each_module_socket_signs_only_for_its_module() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("home"));
    state.create().unwrap();
    let (a, hub) = (id("sensor"), id("$edgeHub"));
    let sockets = manager(&state, vec![a.clone(), hub.clone()]);
    let sock_a = sockets.ensure("sensor").unwrap();
    let sock_hub = sockets.ensure("$edgeHub").unwrap();
    assert_eq!(sock_a, state.workload_dir().join("sensor.sock"));
    assert_eq!(sock_hub, state.workload_dir().join("%24edgeHub.sock"));
    assert_eq!(mode(&state.workload_dir()), 0o700);
    assert_eq!(mode(&sock_a), SOCKET_MODE);

    // (a) a module's socket signs for that module with that module's key
    let sr = "hub%2Fdevices%2Fd%2Fmodules%2Fsensor";
    let (s, b) = sign(&sock_a, &a, &format!("{sr}\n1900000000")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let expected = fleethub_core::sas::sign(&a.primary_key, sr, 1900000000).unwrap();
    assert_eq!(b["digest"], expected);
    let sr_hub = "hub%2Fdevices%2Fd%2Fmodules%2F%24edgeHub";
    let (s, b) = sign(&sock_hub, &hub, &format!("{sr_hub}\n1900000000")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let expected = fleethub_core::sas::sign(&hub.primary_key, sr_hub, 1900000000).unwrap();
    assert_eq!(b["digest"], expected);

    // (b) ... and refuses every other module, in both directions
    let (s, b) = sign(&sock_a, &hub, "x").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let msg = b["message"].as_str().unwrap();
    assert!(
        msg.contains("belongs to module 'sensor'") && msg.contains("'$edgeHub'"),
        "{msg}"
    );
    assert!(b.get("digest").is_none());
    let (s, _) = sign(&sock_hub, &a, "x").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // the trust bundle is on every socket
    assert_eq!(trust_bundle_status(&sock_a).await, StatusCode::OK);
    assert_eq!(trust_bundle_status(&sock_hub).await, StatusCode::OK);
}

#[tokio::test]
async fn sockets_appear_and_disappear_with_modules() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("home"));
    state.create().unwrap();
    // a socket left behind by a crashed daemon is cleaned up
    create_private_dir(&state.workload_dir()).unwrap();
    let stale = state.module_workload_socket("old");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());

    let (a, b) = (id("a"), id("b"));
    let sockets = manager(&state, vec![a.clone(), b.clone()]);
    assert!(!stale.exists(), "stale socket removed");
    let sock_a = sockets.ensure("a").unwrap();
    let sock_b = sockets.ensure("b").unwrap();
    assert_eq!(sockets.modules(), vec!["a", "b"]);
    // ensure is idempotent: the same socket keeps serving
    assert_eq!(sockets.ensure("a").unwrap(), sock_a);
    assert_eq!(sign(&sock_a, &a, "x").await.0, StatusCode::OK);

    sockets.remove("a");
    assert!(!sock_a.exists());
    assert!(
        uds::request(
            &sock_a,
            Method::GET,
            "/trust-bundle?api-version=1",
            None,
            Duration::from_secs(5)
        )
        .await
        .is_err()
    );
    assert_eq!(sign(&sock_b, &b, "x").await.0, StatusCode::OK);

    // a socket file deleted behind the daemon's back is bound again
    std::fs::remove_file(&sock_b).unwrap();
    assert_eq!(sockets.ensure("b").unwrap(), sock_b);
    assert_eq!(sign(&sock_b, &b, "x").await.0, StatusCode::OK);

    let sock_a = sockets.ensure("a").unwrap();
    sockets.retain(&["b".to_string()].into_iter().collect());
    assert!(!sock_a.exists());
    assert!(sock_b.exists());
    assert_eq!(sockets.modules(), vec!["b"]);

    drop(sockets);
    assert!(!sock_b.exists(), "teardown removes every socket");
    assert_eq!(
        std::fs::read_dir(state.workload_dir()).unwrap().count(),
        0,
        "nothing left in mnt/"
    );
}

#[tokio::test]
async fn unusable_socket_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("home"));
    state.create().unwrap();
    let sockets = manager(&state, vec![]);
    // longer than a unix socket address allows (108 bytes)
    let long = "m".repeat(200);
    let err = sockets.ensure(&long).unwrap_err().to_string();
    assert!(
        err.contains("cannot listen on the workload socket"),
        "{err}"
    );
    assert!(err.contains(&long), "{err}");
}

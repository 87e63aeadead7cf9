//! The official Python device SDK's edge HSM client (`azure.iot.device.iothub.edge_hsm.IoTEdgeHsm`,
//! what `create_from_edge_environment()` uses) against a module's own workload socket.
//! Needs the CI virtualenv (/work/main/.ci-work/venv or $FLEETHUB_PYTHON); skipped with a
//! message when it is absent.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use fleetedge::identity::ModuleIdentity;
use fleetedge::workload::sockets::WorkloadSockets;

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("FLEETHUB_PYTHON").map_or_else(
        || PathBuf::from("/work/main/.ci-work/venv/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&p)
        .args([
            "-c",
            "import azure.iot.device.iothub.edge_hsm, requests_unixsocket",
        ])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(p)
}

const SCRIPT: &str = r#"
import sys
from azure.iot.device.iothub.edge_hsm import IoTEdgeHsm, IoTEdgeError
uri, module, genid, data, other, other_genid = sys.argv[1:7]
h = IoTEdgeHsm(module_id=module, generation_id=genid, workload_uri=uri, api_version="2019-01-30")
print(h.get_certificate().splitlines()[0])
print(h.sign(data))
try:
    IoTEdgeHsm(module_id=module, generation_id="stale", workload_uri=uri, api_version="2019-01-30").sign(data)
    print("stale generation accepted")
except IoTEdgeError as e:
    print("refused:", e)
try:
    IoTEdgeHsm(module_id=other, generation_id=other_genid, workload_uri=uri, api_version="2019-01-30").sign(data)
    print("another module's signature handed out")
except IoTEdgeError as e:
    print("refused:", e, "|", e.__cause__)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_edge_hsm_gets_trust_bundle_and_signatures() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: the Python SDK virtualenv is not available");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = fleetedge::state::StateDir::new(dir.path().join("state"));
    state.create().unwrap();
    let pki = fleetedge::certs::ensure(&state, "edge-py", "localhost").unwrap();
    let module = |m: &str, g: &str| ModuleIdentity {
        module_id: m.into(),
        generation_id: g.into(),
        primary_key: fleethub_core::keys::generate_key(),
        secondary_key: fleethub_core::keys::generate_key(),
    };
    let id = module("$edgeHub", "637000000000000000");
    let other = module("other", "637000000000000001");
    let ids = [id.clone(), other.clone()];
    let sockets = WorkloadSockets::new(
        state.clone(),
        pki.ca_pem.clone(),
        Arc::new(move |m| ids.iter().find(|i| i.module_id == m).cloned()),
    )
    .unwrap();
    let sock = sockets.ensure("$edgeHub").unwrap();

    let sr = "localhost%2Fdevices%2Fedge-py%2Fmodules%2F%24edgeHub";
    let data = format!("{sr}\n1900000000");
    let uri = format!("unix://{}", sock.display());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .args([
                "-c",
                SCRIPT,
                &uri,
                "$edgeHub",
                "637000000000000000",
                &data,
                "other",
                "637000000000000001",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
    let expected = fleethub_core::sas::sign(&id.primary_key, sr, 1900000000).unwrap();
    assert_eq!(lines[1], expected);
    assert!(lines[2].starts_with("refused:"), "{stdout}");
    assert!(
        lines[3].starts_with("refused:") && lines[3].contains("403"),
        "{stdout}"
    );
}

//! The container runtime against a real engine: a private Podman (`podman system service`,
//! tests/podman) and an image imported from host binaries (no registry). One module runs with
//! the IoT Edge environment, its workload socket, the edge CA and the module network; its logs
//! come from the engine; a changed spec replaces the container; a crash loop backs off; a
//! container fleetedge did not create is never touched; and the bad inputs (engine
//! unreachable, `imagePullPolicy: never` with a missing image, `Privileged` without
//! `allow_privileged`) fail with the reason while the other modules keep running.
//!
//! Needs `podman` and `runc` (installed by .ci/run); without `podman` the test says so and
//! passes without running.

mod podman;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::InspectContainerOptions;
use fleetedge::config::MobySettings;
use fleetedge::runtime::backoff::Backoff;
use fleetedge::runtime::container::engine::{LABEL_MODULE, LABEL_OWNER};
use fleetedge::runtime::container::{
    ContainerRuntime, ContainerSettings, ContainerSpec, PullPolicy,
};
use fleetedge::runtime::{
    DesiredStatus, ModuleRuntime, ModuleSpec, ModuleState, RestartPolicy, RuntimeStatus,
};
use serde_json::json;

const IMAGE: &str = "localhost/fleetedge-test-shell:1";

fn settings(socket: &Path, network: &str, owner: &str, edge_ca: PathBuf) -> ContainerSettings {
    ContainerSettings {
        moby: MobySettings {
            uri: format!("unix://{}", socket.display()),
            socket: socket.to_path_buf(),
            network: network.into(),
            allow_privileged: false,
        },
        owner: owner.into(),
        gateway_hostname: "edge-gw.test".into(),
        edge_ca: Some(edge_ca),
        edge_hub_on_loopback: false,
        backoff: Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(2),
            stable_after: Duration::from_mins(1),
        },
        stop_timeout: Duration::from_secs(2),
        poll_interval: Duration::from_millis(300),
    }
}

fn module(
    name: &str,
    script: &str,
    policy: RestartPolicy,
    env: &[(&str, &str)],
    extra: &serde_json::Value,
) -> ModuleSpec {
    let mut opts = json!({"Cmd": ["/bin/sh", "-c", script]});
    if let (Some(o), Some(e)) = (opts.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    ModuleSpec {
        name: name.into(),
        command: IMAGE.into(),
        args: vec![],
        working_dir: None,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect::<BTreeMap<_, _>>(),
        restart_policy: policy,
        desired_status: DesiredStatus::Running,
        version: Some("1".into()),
        container: Some(ContainerSpec {
            image: IMAGE.into(),
            create_options: opts.as_object().unwrap().clone(),
            pull_policy: PullPolicy::Never,
            credentials: None,
        }),
    }
}

fn state(rt: &dyn ModuleRuntime, name: &str) -> Option<ModuleState> {
    rt.list().into_iter().find(|s| s.name == name)
}

async fn wait_state(
    rt: &dyn ModuleRuntime,
    name: &str,
    what: &str,
    f: impl Fn(&ModuleState) -> bool,
) -> ModuleState {
    for _ in 0..300 {
        if let Some(s) = state(rt, name)
            && f(&s)
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out waiting for {name}: {what}; state {:?}",
        state(rt, name)
    );
}

async fn container_id(docker: &Docker, name: &str) -> Option<String> {
    docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|c| c.id)
}

#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_modules_on_a_real_engine() {
    if !podman::available() {
        eprintln!(
            "podman is not installed: skipping the container runtime test (.ci/run installs it)"
        );
        return;
    }
    let pm = podman::Podman::start();
    let home = tempfile::tempdir().unwrap();
    // what the agent gives a module: a workload socket path and the edge CA file
    let sock = home.path().join("mnt/ticker.sock");
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let ca = home.path().join("edge-ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    pm.import_image(IMAGE, &["/bin/sh", "/bin/sleep", "/bin/cat"], &[]);

    let network = format!("fe-test-{}", std::process::id());
    let owner = home.path().display().to_string();
    let rt = ContainerRuntime::new(settings(&pm.socket, &network, &owner, ca.clone()));
    let docker = Docker::connect_with_socket(
        &pm.socket.to_string_lossy(),
        60,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();

    // a container fleetedge did not create, under a module's name: refused, left alone
    pm.cli(&["create", "--name", "foreign", IMAGE, "/bin/sleep", "300"]);

    // 1. a module with the IoT Edge environment, its workload socket and the edge CA
    let workload_uri = format!("unix://{}", sock.display());
    let ticker = module(
        "ticker",
        "echo tick-$GREETING; cat $EdgeModuleCACertificateFile; test -S ${IOTEDGE_WORKLOADURI#unix://} && echo socket-ok; sleep 300",
        RestartPolicy::Always,
        &[
            ("GREETING", "hello"),
            ("IOTEDGE_MODULEID", "ticker"),
            ("IOTEDGE_WORKLOADURI", &workload_uri),
        ],
        &json!({"Env": ["FROM_CREATE_OPTIONS=yes"], "HostConfig": {"RestartPolicy": {"Name": "always"}}}),
    );
    rt.apply(ticker.clone()).await.unwrap();
    let st = wait_state(&rt, "ticker", "running", |s| {
        s.runtime_status == RuntimeStatus::Running
    })
    .await;
    assert!(st.pid.is_some(), "{st:?}");
    assert_eq!(st.image.as_deref(), Some(IMAGE));
    assert!(
        st.image_hash.as_deref().is_some_and(|h| h.len() >= 12),
        "{st:?}"
    );
    let first_id = container_id(&docker, "ticker")
        .await
        .expect("container named after the module");
    let info = docker
        .inspect_container("ticker", None::<InspectContainerOptions>)
        .await
        .unwrap();
    let labels = info.config.clone().unwrap().labels.unwrap();
    assert_eq!(labels[LABEL_OWNER], owner);
    assert_eq!(labels[LABEL_MODULE], "ticker");
    let env = info.config.clone().unwrap().env.unwrap();
    for want in [
        "GREETING=hello",
        "IOTEDGE_MODULEID=ticker",
        "FROM_CREATE_OPTIONS=yes",
    ] {
        assert!(env.iter().any(|e| e == want), "{want} missing in {env:?}");
    }
    // on the module network (Podman reports NetworkMode "bridge" for a named bridge network)
    let networks = info
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert!(networks.contains_key(&network), "{:?}", networks.keys());
    let hc = info.host_config.unwrap();
    assert!(
        hc.extra_hosts
            .unwrap_or_default()
            .iter()
            .any(|h| h.starts_with("edge-gw.test:")),
        "the gateway host name maps to the host's address on the module network"
    );
    // the manifest's restartPolicy rules, not createOptions' RestartPolicy
    assert_ne!(
        hc.restart_policy
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .as_deref(),
        Some("always")
    );
    // logs from the engine: the environment, the CA file and the socket are there
    let mut logs = Vec::new();
    for _ in 0..50 {
        logs.clear();
        let found = fleetedge::runtime::container::logs::write_logs(
            &settings(&pm.socket, &network, &owner, ca.clone()).moby,
            &owner,
            "ticker",
            Some(50),
            None,
            false,
            &mut logs,
        )
        .await
        .unwrap();
        assert!(found, "the logs of the ticker container");
        if String::from_utf8_lossy(&logs).contains("socket-ok") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = String::from_utf8_lossy(&logs);
    assert!(text.contains("tick-hello"), "{text}");
    // --since in the future: nothing yet
    let mut later = Vec::new();
    let future = chrono::Utc::now().timestamp() + 3600;
    fleetedge::runtime::container::logs::write_logs(
        &settings(&pm.socket, &network, &owner, ca.clone()).moby,
        &owner,
        "ticker",
        None,
        Some(future),
        false,
        &mut later,
    )
    .await
    .unwrap();
    assert!(!String::from_utf8_lossy(&later).contains("tick-hello"));
    assert!(text.contains("BEGIN CERTIFICATE"), "{text}");
    assert!(text.contains("socket-ok"), "{text}");

    // 2. a crash loop backs off, the other module keeps running (imagePullPolicy on-create: the
    //    pull fails, there is no registry, and the local image runs)
    let mut crasher = module(
        "crasher",
        "echo crashing; exit 3",
        RestartPolicy::Always,
        &[],
        &json!({}),
    );
    crasher.container.as_mut().unwrap().pull_policy = PullPolicy::OnCreate;
    rt.apply(crasher).await.unwrap();
    let st = wait_state(&rt, "crasher", "backoff after restarts", |s| {
        s.runtime_status == RuntimeStatus::Backoff && s.restart_count >= 2
    })
    .await;
    assert_eq!(st.exit_code, Some(3));
    assert!(
        st.status_description
            .as_deref()
            .unwrap_or_default()
            .contains("exited with code 3"),
        "{st:?}"
    );
    assert_eq!(
        state(&rt, "ticker").unwrap().runtime_status,
        RuntimeStatus::Running
    );

    // 3. bad input: missing image with imagePullPolicy never; Privileged refused
    let mut missing = module("missing", "true", RestartPolicy::Always, &[], &json!({}));
    missing.container.as_mut().unwrap().image = "localhost/not-there:1".into();
    rt.apply(missing).await.unwrap();
    let st = wait_state(&rt, "missing", "failed", |s| {
        s.runtime_status == RuntimeStatus::Failed
    })
    .await;
    let d = st.status_description.unwrap();
    assert!(
        d.contains("localhost/not-there:1") && d.contains("imagePullPolicy is never"),
        "{d}"
    );
    rt.apply(module(
        "privileged",
        "true",
        RestartPolicy::Always,
        &[],
        &json!({"HostConfig": {"Privileged": true}}),
    ))
    .await
    .unwrap();
    let st = wait_state(&rt, "privileged", "refused", |s| {
        s.runtime_status == RuntimeStatus::Failed
    })
    .await;
    let d = st.status_description.unwrap();
    assert!(
        d.contains("Privileged") && d.contains("allow_privileged"),
        "{d}"
    );
    assert!(
        container_id(&docker, "privileged").await.is_none(),
        "no container was created"
    );

    // 4. the module name of a container fleetedge does not manage
    let foreign_id = container_id(&docker, "foreign").await.unwrap();
    rt.apply(module(
        "foreign",
        "sleep 300",
        RestartPolicy::Always,
        &[],
        &json!({}),
    ))
    .await
    .unwrap();
    let st = wait_state(&rt, "foreign", "refused", |s| {
        s.runtime_status == RuntimeStatus::Failed
    })
    .await;
    let d = st.status_description.unwrap();
    assert!(
        d.contains("does not manage"),
        "a name clash is reported: {d}"
    );
    rt.remove("foreign").await.unwrap();
    assert_eq!(
        container_id(&docker, "foreign").await,
        Some(foreign_id.clone()),
        "left alone"
    );

    // 5. an update replaces the container
    let mut v2 = ticker.clone();
    v2.version = Some("2".into());
    rt.apply(v2).await.unwrap();
    wait_state(&rt, "ticker", "running again", |s| {
        s.runtime_status == RuntimeStatus::Running && s.version.as_deref() == Some("2")
    })
    .await;
    let second_id = container_id(&docker, "ticker").await.unwrap();
    assert_ne!(first_id, second_id, "a new container");
    assert!(
        container_id(&docker, &first_id).await.is_none(),
        "the old one is removed"
    );

    // 6. restart keeps the container, restarts its process
    let before = state(&rt, "ticker").unwrap().last_start_time_utc;
    rt.restart("ticker").await.unwrap();
    wait_state(&rt, "ticker", "restarted", |s| {
        s.runtime_status == RuntimeStatus::Running && s.last_start_time_utc > before
    })
    .await;

    // 7. removal removes our containers, never the foreign one
    for m in ["ticker", "crasher", "missing", "privileged"] {
        rt.remove(m).await.unwrap();
    }
    assert!(rt.list().is_empty());
    assert!(container_id(&docker, "ticker").await.is_none());
    assert!(container_id(&docker, "crasher").await.is_none());
    assert_eq!(container_id(&docker, "foreign").await, Some(foreign_id));

    // 8. a leftover of ours is swept at start; the foreign container stays
    rt.apply(ticker.clone()).await.unwrap();
    wait_state(&rt, "ticker", "running", |s| {
        s.runtime_status == RuntimeStatus::Running
    })
    .await;
    let rt2 = ContainerRuntime::new(settings(&pm.socket, &network, &owner, ca.clone()));
    assert_eq!(rt2.sweep().await, 1);
    assert!(container_id(&docker, "ticker").await.is_none());
    assert!(container_id(&docker, "foreign").await.is_some());
    rt.shutdown().await;

    // 9. engine unreachable: failed with the reason, retried
    let gone = home.path().join("no-engine.sock");
    let rt3 = ContainerRuntime::new(settings(&gone, &network, &owner, ca.clone()));
    rt3.apply(ticker.clone()).await.unwrap();
    let st = wait_state(&rt3, "ticker", "failed", |s| {
        s.runtime_status == RuntimeStatus::Failed
    })
    .await;
    let d = st.status_description.unwrap();
    assert!(d.contains("unreachable") && d.contains("retrying"), "{d}");
    rt3.shutdown().await;

    pm.cli(&["rm", "--force", "--time", "0", "foreign"]);
    let _ = pm.cli(&["network", "rm", "--force", &network]);
}

/// Without a reachable engine: the container module is `failed` with the reason and retried;
/// the process module next to it runs; a module whose `type` changes moves between runtimes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_unreachable_leaves_process_modules_alone() {
    use fleetedge::runtime::dispatch::Runtimes;
    use fleetedge::runtime::process::{ProcessRuntime, ProcessSettings};
    use std::sync::Arc;

    let home = tempfile::tempdir().unwrap();
    let s = settings(
        &home.path().join("no-engine.sock"),
        "azure-iot-edge",
        &home.path().display().to_string(),
        home.path().join("edge-ca.pem"),
    );
    let rt = Runtimes {
        process: Arc::new(ProcessRuntime::new(ProcessSettings {
            logs_dir: home.path().join("logs"),
            log_max_bytes: 65536,
            backoff: s.backoff,
            stop_timeout: Duration::from_secs(2),
        })),
        container: Arc::new(ContainerRuntime::new(s)),
    };
    let process = |name: &str| ModuleSpec {
        name: name.into(),
        command: "/bin/sh".into(),
        args: vec!["-c".into(), "sleep 30".into()],
        working_dir: None,
        env: BTreeMap::new(),
        restart_policy: RestartPolicy::Always,
        desired_status: DesiredStatus::Running,
        version: None,
        container: None,
    };
    rt.apply(process("sensor")).await.unwrap();
    rt.apply(module(
        "filter",
        "true",
        RestartPolicy::Always,
        &[],
        &json!({}),
    ))
    .await
    .unwrap();
    let st = wait_state(&rt, "filter", "failed", |s| {
        s.runtime_status == RuntimeStatus::Failed
    })
    .await;
    let d = st.status_description.unwrap();
    assert!(d.contains("unreachable") && d.contains("retrying"), "{d}");
    assert_eq!(st.image.as_deref(), Some(IMAGE));
    let sensor = wait_state(&rt, "sensor", "running", |s| {
        s.runtime_status == RuntimeStatus::Running
    })
    .await;
    assert!(sensor.pid.is_some());
    // the container module becomes a process module: it leaves the container runtime
    rt.apply(process("filter")).await.unwrap();
    let st = wait_state(&rt, "filter", "running as a process", |s| {
        s.runtime_status == RuntimeStatus::Running
    })
    .await;
    assert!(st.image.is_none());
    assert_eq!(rt.list().len(), 2);
    assert!(rt.container.list().is_empty());
    rt.shutdown().await;
}

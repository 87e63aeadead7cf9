use super::*;
use crate::runtime::RestartPolicy;

fn runtime(dir: &std::path::Path) -> ProcessRuntime {
    ProcessRuntime::new(ProcessSettings {
        logs_dir: dir.to_path_buf(),
        log_max_bytes: 64 * 1024,
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            stable_after: Duration::from_mins(1),
        },
        stop_timeout: Duration::from_secs(2),
    })
}

fn sh(name: &str, script: &str, policy: RestartPolicy) -> ModuleSpec {
    ModuleSpec {
        name: name.into(),
        command: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        working_dir: None,
        env: [("GREETING".to_string(), "hello".to_string())].into(),
        restart_policy: policy,
        desired_status: DesiredStatus::Running,
        version: None,
        container: None,
    }
}

async fn wait_for(
    rt: &ProcessRuntime,
    name: &str,
    what: &str,
    f: impl Fn(&ModuleState) -> bool,
) -> ModuleState {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = rt.list().into_iter().find(|s| s.name == name)
            && f(&s)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {what}; now {:?}",
            rt.list()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn crash_loop_backs_off_while_others_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    rt.apply(sh(
        "good",
        "echo $GREETING; exec sleep 30",
        RestartPolicy::Always,
    ))
    .await
    .unwrap();
    rt.apply(sh("crash", "echo boom >&2; exit 3", RestartPolicy::Always))
        .await
        .unwrap();
    let good = wait_for(&rt, "good", "running", |s| {
        s.runtime_status == RuntimeStatus::Running
    })
    .await;
    let crash = wait_for(&rt, "crash", "restarted 3 times", |s| s.restart_count >= 3).await;
    assert_eq!(crash.exit_code, Some(3));
    wait_for(&rt, "crash", "backoff", |s| {
        s.runtime_status == RuntimeStatus::Backoff
    })
    .await;
    let good2 = wait_for(&rt, "good", "still running", |s| {
        s.runtime_status == RuntimeStatus::Running
    })
    .await;
    assert_eq!(good.pid, good2.pid, "the healthy module was not restarted");
    assert_eq!(good2.restart_count, 0);
    // logs
    let log = std::fs::read_to_string(dir.path().join("good.log")).unwrap();
    assert_eq!(log, "hello\n");
    let log = std::fs::read_to_string(dir.path().join("crash.log")).unwrap();
    assert!(log.starts_with("boom\nboom\n"), "{log}");
    // remove stops the process
    let pid = good2.pid.unwrap();
    rt.remove("good").await.unwrap();
    assert!(rt.list().iter().all(|s| s.name != "good"));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process gone"
    );
    rt.shutdown().await;
    assert!(rt.list().is_empty());
}

#[tokio::test]
async fn policies_stop_status_updates_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    rt.apply(sh("once", "exit 0", RestartPolicy::OnFailure))
        .await
        .unwrap();
    rt.apply(sh("fails", "exit 7", RestartPolicy::Never))
        .await
        .unwrap();
    let mut stopped = sh("off", "sleep 30", RestartPolicy::Always);
    stopped.desired_status = DesiredStatus::Stopped;
    rt.apply(stopped).await.unwrap();
    let missing = ModuleSpec {
        command: "/nonexistent/binary".into(),
        args: vec![],
        ..sh("missing", "", RestartPolicy::Never)
    };
    rt.apply(missing).await.unwrap();

    wait_for(&rt, "once", "stopped", |s| {
        s.runtime_status == RuntimeStatus::Stopped
    })
    .await;
    let f = wait_for(&rt, "fails", "failed", |s| {
        s.runtime_status == RuntimeStatus::Failed
    })
    .await;
    assert_eq!(f.exit_code, Some(7));
    assert_eq!(f.status_description.as_deref(), Some("exited with code 7"));
    wait_for(&rt, "off", "stopped", |s| {
        s.runtime_status == RuntimeStatus::Stopped
    })
    .await;
    let m = wait_for(&rt, "missing", "failed", |s| {
        s.runtime_status == RuntimeStatus::Failed
    })
    .await;
    assert!(m.status_description.unwrap().contains("cannot start"));

    // an updated spec replaces the process; the same spec is a no-op
    rt.apply(sh("svc", "exec sleep 30", RestartPolicy::Always))
        .await
        .unwrap();
    let a = wait_for(&rt, "svc", "running", |s| s.pid.is_some()).await;
    rt.apply(sh("svc", "exec sleep 30", RestartPolicy::Always))
        .await
        .unwrap();
    let same = wait_for(&rt, "svc", "running", |s| s.pid.is_some()).await;
    assert_eq!(a.pid, same.pid);
    rt.apply(sh("svc", "exec sleep 31", RestartPolicy::Always))
        .await
        .unwrap();
    let b = wait_for(&rt, "svc", "new process", |s| {
        s.pid.is_some() && s.pid != a.pid
    })
    .await;
    assert_eq!(b.config, "/bin/sh -c exec sleep 31");
    // explicit restart
    rt.restart("svc").await.unwrap();
    wait_for(&rt, "svc", "restarted", |s| {
        s.pid.is_some() && s.pid != b.pid
    })
    .await;
    assert!(matches!(
        rt.restart("nope").await,
        Err(RuntimeError::NotFound(_))
    ));
    rt.shutdown().await;
}

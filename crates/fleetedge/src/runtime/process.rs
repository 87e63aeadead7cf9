//! Modules as OS processes (deployment module `type: "process"`): one supervisor task per
//! module starts the command in its own process group, captures stdout/stderr to the module's
//! log file, restarts it per `restartPolicy` with exponential back-off (status `backoff`
//! while waiting) and stops it with SIGTERM, then SIGKILL after a grace period.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::backoff::{Backoff, should_restart};
use super::logs::LogFile;
use super::supervisors::{Ctl, Supervisors, lock};
use super::{DesiredStatus, ModuleRuntime, ModuleSpec, ModuleState, RuntimeError, RuntimeStatus};
use crate::state::safe_name;

/// Variables passed through from the daemon's own environment.
const INHERITED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TZ", "LC_ALL"];

/// Settings of [`ProcessRuntime`].
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    pub logs_dir: PathBuf,
    pub log_max_bytes: u64,
    pub backoff: Backoff,
    /// Grace period between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
}

/// The OS-process [`ModuleRuntime`].
pub struct ProcessRuntime {
    settings: ProcessSettings,
    supervisors: Supervisors,
}

impl ProcessRuntime {
    pub fn new(settings: ProcessSettings) -> ProcessRuntime {
        // A supervisor stops its process within the grace period; a little more for the rest.
        let stop_bound = settings.stop_timeout + Duration::from_secs(5);
        ProcessRuntime {
            settings,
            supervisors: Supervisors::new(stop_bound),
        }
    }
}

#[async_trait::async_trait]
impl ModuleRuntime for ProcessRuntime {
    async fn apply(&self, spec: ModuleSpec) -> Result<(), RuntimeError> {
        if spec.command.trim().is_empty() {
            return Err(RuntimeError::Failed {
                module: spec.name.clone(),
                reason: "settings.command is empty".into(),
            });
        }
        let settings = self.settings.clone();
        self.supervisors
            .apply(spec, "module changed; restarting it", |spec, state, ctl| {
                let log = LogFile::new(
                    settings
                        .logs_dir
                        .join(format!("{}.log", safe_name(&spec.name))),
                    settings.log_max_bytes,
                );
                tokio::spawn(supervise(
                    spec,
                    state,
                    ctl,
                    settings,
                    Arc::new(Mutex::new(log)),
                ))
            })
            .await;
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.supervisors.remove(name).await
    }

    async fn restart(&self, name: &str) -> Result<(), RuntimeError> {
        self.supervisors.restart(name).await
    }

    fn list(&self) -> Vec<ModuleState> {
        self.supervisors.list()
    }

    fn spec(&self, name: &str) -> Option<ModuleSpec> {
        self.supervisors.spec(name)
    }

    async fn shutdown(&self) {
        self.supervisors.shutdown().await;
    }
}

fn spawn(spec: &ModuleSpec, log: &Arc<Mutex<LogFile>>) -> std::io::Result<Child> {
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for k in INHERITED_ENV {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(&spec.env);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, log.clone()));
    }
    Ok(child)
}

async fn pump(mut r: impl tokio::io::AsyncRead + Unpin, log: Arc<Mutex<LogFile>>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let _ = lock(&log).write(&buf[..n]);
            }
        }
    }
}

/// SIGTERM to the process group, SIGKILL after `grace`.
async fn terminate(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let _ = child.kill().await;
}

fn describe_exit(status: std::process::ExitStatus) -> (Option<i32>, String) {
    match (status.code(), status.signal()) {
        (Some(c), _) => (Some(c), format!("exited with code {c}")),
        (None, Some(s)) => (None, format!("killed by signal {s}")),
        (None, None) => (None, "exited".to_string()),
    }
}

async fn supervise(
    spec: ModuleSpec,
    state: Arc<Mutex<ModuleState>>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    settings: ProcessSettings,
    log: Arc<Mutex<LogFile>>,
) {
    let set = |f: &dyn Fn(&mut ModuleState)| f(&mut lock(&state));
    if spec.desired_status == DesiredStatus::Stopped {
        set(&|s| {
            s.runtime_status = RuntimeStatus::Stopped;
            s.status_description = Some("stopped by the deployment (status: stopped)".into());
        });
        // Nothing to run; wait until removed or replaced.
        while let Some(c) = ctl.recv().await {
            if matches!(c, Ctl::Stop) {
                break;
            }
        }
        return;
    }
    let backoff = settings.backoff;
    let mut restart_count: u32 = 0;
    loop {
        let t0 = Instant::now();
        let (exit_code, description) = match spawn(&spec, &log) {
            Ok(mut child) => {
                let pid = child.id();
                set(&|s| {
                    s.runtime_status = RuntimeStatus::Running;
                    s.pid = pid;
                    s.last_start_time_utc = Some(Utc::now());
                    s.status_description = None;
                });
                tracing::info!(module = spec.name, pid, "module started");
                tokio::select! {
                    st = child.wait() => match st {
                        Ok(st) => describe_exit(st),
                        Err(e) => (None, format!("cannot wait for the process: {e}")),
                    },
                    c = ctl.recv() => {
                        terminate(&mut child, settings.stop_timeout).await;
                        match c {
                            Some(Ctl::Restart) => {
                                restart_count = 0;
                                set(&|s| {
                                    s.restart_count = 0;
                                    s.last_restart_time_utc = Some(Utc::now());
                                    s.last_exit_time_utc = Some(Utc::now());
                                    s.pid = None;
                                });
                                continue;
                            }
                            Some(Ctl::Stop) | None => {
                                set(&|s| {
                                    s.runtime_status = RuntimeStatus::Stopped;
                                    s.pid = None;
                                    s.last_exit_time_utc = Some(Utc::now());
                                    s.status_description = Some("stopped".into());
                                });
                                return;
                            }
                        }
                    }
                }
            }
            Err(e) => (None, format!("cannot start '{}': {e}", spec.command)),
        };
        let ran_for = t0.elapsed();
        tracing::info!(module = spec.name, exit_code, %description, "module exited");
        set(&|s| {
            s.exit_code = exit_code;
            s.pid = None;
            s.last_exit_time_utc = Some(Utc::now());
        });
        if !should_restart(spec.restart_policy, exit_code) {
            set(&|s| {
                s.runtime_status = if exit_code == Some(0) {
                    RuntimeStatus::Stopped
                } else {
                    RuntimeStatus::Failed
                };
                s.status_description = Some(description.clone());
            });
            match ctl.recv().await {
                Some(Ctl::Restart) => restart_count = 0,
                Some(Ctl::Stop) | None => return,
            }
            continue;
        }
        restart_count = backoff.count_after_run(restart_count, ran_for);
        let delay = backoff.delay(restart_count);
        set(&|s| {
            s.runtime_status = RuntimeStatus::Backoff;
            s.status_description = Some(format!(
                "{description}; restarting in {:.1} s (restart {} of a crash loop)",
                delay.as_secs_f64(),
                restart_count + 1
            ));
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            c = ctl.recv() => match c {
                Some(Ctl::Restart) => restart_count = 0,
                Some(Ctl::Stop) | None => {
                    set(&|s| {
                        s.runtime_status = RuntimeStatus::Stopped;
                        s.status_description = Some("stopped".into());
                    });
                    return;
                }
            }
        }
        restart_count += 1;
        set(&|s| {
            s.restart_count = restart_count;
            s.last_restart_time_utc = Some(Utc::now());
        });
    }
}

#[cfg(test)]
mod tests;

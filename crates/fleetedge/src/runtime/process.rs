//! Modules as OS processes (deployment module `type: "process"`): one supervisor task per
//! module starts the command in its own process group, captures stdout/stderr to the module's
//! log file, restarts it per `restartPolicy` with exponential back-off (status `backoff`
//! while waiting) and stops it with SIGTERM, then SIGKILL after a grace period.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::backoff::{Backoff, should_restart};
use super::logs::LogFile;
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

enum Ctl {
    Restart,
    Stop,
}

struct Handle {
    spec: ModuleSpec,
    state: Arc<Mutex<ModuleState>>,
    ctl: mpsc::UnboundedSender<Ctl>,
    task: JoinHandle<()>,
}

/// A module's spec and its live state.
type Observed = (ModuleSpec, Arc<Mutex<ModuleState>>);

/// The OS-process [`ModuleRuntime`].
pub struct ProcessRuntime {
    settings: ProcessSettings,
    modules: tokio::sync::Mutex<BTreeMap<String, Handle>>,
    /// Snapshot for the synchronous `list`.
    states: Mutex<BTreeMap<String, Observed>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ProcessRuntime {
    pub fn new(settings: ProcessSettings) -> ProcessRuntime {
        ProcessRuntime {
            settings,
            modules: tokio::sync::Mutex::new(BTreeMap::new()),
            states: Mutex::new(BTreeMap::new()),
        }
    }

    fn start(&self, spec: ModuleSpec) -> Handle {
        let state = Arc::new(Mutex::new(ModuleState::new(&spec)));
        let (tx, rx) = mpsc::unbounded_channel();
        let log = LogFile::new(
            self.settings
                .logs_dir
                .join(format!("{}.log", safe_name(&spec.name))),
            self.settings.log_max_bytes,
        );
        let task = tokio::spawn(supervise(
            spec.clone(),
            state.clone(),
            rx,
            self.settings.clone(),
            Arc::new(Mutex::new(log)),
        ));
        lock(&self.states).insert(spec.name.clone(), (spec.clone(), state.clone()));
        Handle {
            spec,
            state,
            ctl: tx,
            task,
        }
    }

    async fn stop_handle(&self, h: Handle) {
        let _ = h.ctl.send(Ctl::Stop);
        let bound = self.settings.stop_timeout + Duration::from_secs(5);
        let mut task = h.task;
        if tokio::time::timeout(bound, &mut task).await.is_err() {
            task.abort();
        }
        let _ = h.state;
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
        let mut modules = self.modules.lock().await;
        if let Some(h) = modules.get(&spec.name) {
            if h.spec == spec {
                return Ok(());
            }
            let old = modules.remove(&spec.name).expect("present");
            tracing::info!(module = spec.name, "module changed; restarting it");
            self.stop_handle(old).await;
        }
        let name = spec.name.clone();
        let handle = self.start(spec);
        modules.insert(name, handle);
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let h = self
            .modules
            .lock()
            .await
            .remove(name)
            .ok_or_else(|| RuntimeError::NotFound(name.into()))?;
        self.stop_handle(h).await;
        lock(&self.states).remove(name);
        Ok(())
    }

    async fn restart(&self, name: &str) -> Result<(), RuntimeError> {
        let modules = self.modules.lock().await;
        let h = modules
            .get(name)
            .ok_or_else(|| RuntimeError::NotFound(name.into()))?;
        h.ctl.send(Ctl::Restart).map_err(|_| RuntimeError::Failed {
            module: name.into(),
            reason: "the module's supervisor has ended".into(),
        })
    }

    fn list(&self) -> Vec<ModuleState> {
        lock(&self.states)
            .values()
            .map(|(_, s)| lock(s).clone())
            .collect()
    }

    fn spec(&self, name: &str) -> Option<ModuleSpec> {
        lock(&self.states).get(name).map(|(s, _)| s.clone())
    }

    async fn shutdown(&self) {
        let all: Vec<Handle> = std::mem::take(&mut *self.modules.lock().await)
            .into_values()
            .collect();
        let stops = all.into_iter().map(|h| self.stop_handle(h));
        futures_join_all(stops).await;
        lock(&self.states).clear();
    }
}

/// Awaits every future (small local join_all).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    for f in set {
        f.await;
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

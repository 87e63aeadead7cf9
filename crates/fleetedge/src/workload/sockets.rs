//! One workload socket per module (`<homedir>/mnt/<module>.sock`, like aziot-edged's
//! `/var/lib/aziot/edged/mnt/<module>.sock`): created before the module starts, removed with
//! the module. Each socket runs its own server loop with its own connection limit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{IdentityLookup, MAX_CONCURRENT, Workload};
use crate::state::{StateDir, create_private_dir};
use crate::uds;

/// Permissions of a module socket: the daemon user only (module processes run as that user).
pub const SOCKET_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot prepare the workload socket directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on the workload socket {path} of module '{module}': {source}")]
    Bind {
        module: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Served {
    path: PathBuf,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The per-module workload sockets of one daemon generation.
pub struct WorkloadSockets {
    state: StateDir,
    trust_bundle_pem: String,
    identities: IdentityLookup,
    served: Mutex<BTreeMap<String, Served>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WorkloadSockets {
    /// Creates the socket directory (0700) and removes sockets a previous run left behind.
    pub fn new(
        state: StateDir,
        trust_bundle_pem: String,
        identities: IdentityLookup,
    ) -> Result<WorkloadSockets, SocketError> {
        let dir = state.workload_dir();
        let dir_err = |source| SocketError::Dir {
            path: dir.clone(),
            source,
        };
        create_private_dir(&dir).map_err(dir_err)?;
        for entry in std::fs::read_dir(&dir).map_err(dir_err)? {
            let path = entry.map_err(dir_err)?.path();
            if path.extension().is_some_and(|e| e == "sock") {
                std::fs::remove_file(&path).map_err(dir_err)?;
            }
        }
        Ok(WorkloadSockets {
            state,
            trust_bundle_pem,
            identities,
            served: Mutex::new(BTreeMap::new()),
        })
    }

    /// Serves `module`'s socket (binding it when it is not served yet, or when its file
    /// disappeared) and returns its path. Must run inside a tokio runtime.
    pub fn ensure(&self, module: &str) -> Result<PathBuf, SocketError> {
        let mut served = lock(&self.served);
        if let Some(s) = served.get(module) {
            if s.path.exists() && !s.task.is_finished() {
                return Ok(s.path.clone());
            }
            if let Some(old) = served.remove(module) {
                old.stop.send_replace(true);
            }
        }
        let path = self.state.module_workload_socket(module);
        let listener = uds::bind(&path, SOCKET_MODE).map_err(|source| SocketError::Bind {
            module: module.to_string(),
            path: path.clone(),
            source,
        })?;
        let workload = Workload {
            module: module.to_string(),
            trust_bundle_pem: self.trust_bundle_pem.clone(),
            identities: self.identities.clone(),
        };
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(uds::serve(
            listener,
            workload.handler(),
            MAX_CONCURRENT,
            stop_rx,
        ));
        tracing::debug!(module, socket = %path.display(), "workload socket created");
        served.insert(
            module.to_string(),
            Served {
                path: path.clone(),
                stop,
                task,
            },
        );
        Ok(path)
    }

    /// Stops serving `module`'s socket and deletes it.
    pub fn remove(&self, module: &str) {
        let removed = lock(&self.served).remove(module);
        if let Some(s) = removed {
            close(s, module);
        }
    }

    /// Removes the sockets of every module not in `keep`.
    pub fn retain(&self, keep: &BTreeSet<String>) {
        let gone: Vec<(String, Served)> = {
            let mut served = lock(&self.served);
            let names: Vec<String> = served
                .keys()
                .filter(|m| !keep.contains(*m))
                .cloned()
                .collect();
            names
                .into_iter()
                .filter_map(|m| served.remove(&m).map(|s| (m, s)))
                .collect()
        };
        for (m, s) in gone {
            close(s, &m);
        }
    }

    /// Modules with a socket, sorted.
    pub fn modules(&self) -> Vec<String> {
        lock(&self.served).keys().cloned().collect()
    }

    /// Removes every socket (daemon generation teardown).
    pub fn shutdown(&self) {
        let all = std::mem::take(&mut *lock(&self.served));
        for (m, s) in all {
            close(s, &m);
        }
    }
}

impl Drop for WorkloadSockets {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "closing ends the socket's life: the caller gives it up"
)]
fn close(s: Served, module: &str) {
    s.stop.send_replace(true);
    match std::fs::remove_file(&s.path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(module, socket = %s.path.display(), error = %e, "cannot delete the workload socket");
        }
    }
    tracing::debug!(module, "workload socket removed");
}

#[cfg(test)]
mod tests;

//! The supervisor of one container module: prepare (network, image, container), start, watch,
//! restart per `restartPolicy` with back-off; on stop, the container is removed.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, StartContainerOptions, StopContainerOptions,
};
use chrono::Utc;
use tokio::sync::mpsc;

use super::ContainerSettings;
use super::create::{self, Additions, Networking};
use super::engine::{self, EngineError};
use super::spec::privileged_request;
use crate::runtime::backoff::should_restart;
use crate::runtime::supervisors::Ctl;
use crate::runtime::{DesiredStatus, ModuleSpec, ModuleState, RuntimeStatus};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A container name for a module (Docker allows `[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
pub fn container_name(module: &str) -> String {
    let mut n: String = module
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !n.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        n.insert(0, 'm');
    }
    n
}

/// Creates the module's container (replacing an older one of this daemon); returns its ID and
/// the image ID.
async fn prepare(
    docker: &Docker,
    spec: &ModuleSpec,
    s: &ContainerSettings,
) -> Result<(String, String), String> {
    let uri = &s.moby.uri;
    let c = spec.container.as_ref().ok_or("not a container module")?;
    let opts = create::options(spec)?;
    if !s.moby.allow_privileged
        && let Some(what) = privileged_request(&opts)
    {
        return Err(format!(
            "refused: the module asks for {what} and [moby_runtime] allow_privileged is false"
        ));
    }
    let own_network = opts
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref())
        .is_some_and(|m| !m.is_empty());
    let networking = if own_network || s.edge_hub_on_loopback {
        Networking::Host
    } else {
        let gateway = engine::ensure_network(docker, uri, &s.moby.network)
            .await
            .map_err(|e| e.to_string())?;
        Networking::Network {
            name: s.moby.network.clone(),
            gateway,
        }
    };
    let image_id =
        engine::ensure_image(docker, uri, &c.image, c.pull_policy, c.credentials.as_ref())
            .await
            .map_err(|e| e.to_string())?;
    for id in engine::our_containers(docker, uri, &s.owner, Some(&spec.name))
        .await
        .map_err(|e| e.to_string())?
    {
        engine::stop_and_remove(docker, uri, &id, 10)
            .await
            .map_err(|e| e.to_string())?;
    }
    let add = Additions {
        owner: s.owner.clone(),
        gateway_hostname: s.gateway_hostname.clone(),
        edge_ca: s.edge_ca.clone(),
        networking,
    };
    let body = create::body(spec, opts, &add);
    let name = container_name(&spec.name);
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(|e| match e {
            // Docker: 409; Podman: 500 "... is already in use"
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                ref message,
            } if status_code == 409 || message.contains("already in use") => format!(
                "a container named {name} exists that fleetedge does not manage; remove or rename it"
            ),
            e => engine::map_err(uri, "cannot create the container", &e).to_string(),
        })?;
    Ok((created.id, image_id))
}

/// How a run of the container ended.
enum Ended {
    Exited {
        code: Option<i32>,
        description: String,
    },
    /// The container vanished or the engine failed: prepare again.
    Lost(String),
}

/// Watches a started container until it exits or a control message arrives.
async fn watch(
    docker: &Docker,
    id: &str,
    s: &ContainerSettings,
    ctl: &mut mpsc::UnboundedReceiver<Ctl>,
) -> Result<Ended, Option<Ctl>> {
    loop {
        tokio::select! {
            () = tokio::time::sleep(s.poll_interval) => {}
            c = ctl.recv() => return Err(c),
        }
        let st = match docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => i.state.unwrap_or_default(),
            Err(e) if engine::is_not_found(&e) => {
                return Ok(Ended::Lost(
                    "the container was removed outside fleetedge".into(),
                ));
            }
            Err(e) => {
                return Ok(Ended::Lost(
                    engine::map_err(&s.moby.uri, "cannot inspect the container", &e).to_string(),
                ));
            }
        };
        if st.running == Some(true) {
            continue;
        }
        let code = st.exit_code.and_then(|c| i32::try_from(c).ok());
        let mut description = match code {
            Some(c) => format!("exited with code {c}"),
            None => "exited".to_string(),
        };
        if st.oom_killed == Some(true) {
            description.push_str(" (out of memory)");
        }
        if let Some(err) = st.error.filter(|e| !e.is_empty()) {
            description.push_str(": ");
            description.push_str(&err);
        }
        return Ok(Ended::Exited { code, description });
    }
}

#[allow(clippy::too_many_lines)]
pub(super) async fn run(
    spec: ModuleSpec,
    state: Arc<Mutex<ModuleState>>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    s: ContainerSettings,
) {
    let set = |f: &dyn Fn(&mut ModuleState)| f(&mut lock(&state));
    let uri = s.moby.uri.clone();
    let backoff = s.backoff;
    let mut attempt: u32 = 0;
    // the engine's socket may appear later (engine started after the daemon): retry
    let docker = loop {
        match engine::connect(&uri, &s.moby.socket) {
            Ok(d) => break d,
            Err(e) => {
                let delay = backoff.delay(attempt);
                attempt = attempt.saturating_add(1);
                let msg = format!("{e} (retrying in {:.1} s)", delay.as_secs_f64());
                set(&|st| {
                    st.runtime_status = RuntimeStatus::Failed;
                    st.status_description = Some(msg.clone());
                });
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    c = ctl.recv() => match c {
                        Some(Ctl::Restart) => attempt = 0,
                        Some(Ctl::Stop) | None => return,
                    }
                }
            }
        }
    };
    let remove = |id: String| {
        let docker = docker.clone();
        let uri = uri.clone();
        let grace = i32::try_from(s.stop_timeout.as_secs()).unwrap_or(10);
        async move {
            if let Err(e) = engine::stop_and_remove(&docker, &uri, &id, grace).await {
                tracing::warn!(container = id, error = %e, "cannot remove the container");
            }
        }
    };
    attempt = 0;
    let mut restart_count: u32 = 0;
    loop {
        // 1. network, image, container
        let (id, image_id) = match prepare(&docker, &spec, &s).await {
            Ok(p) => p,
            Err(reason) => {
                let delay = backoff.delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(module = spec.name, %reason, retry_in = ?delay, "container not created");
                set(&|st| {
                    st.runtime_status = RuntimeStatus::Failed;
                    st.status_description = Some(format!(
                        "{reason} (retrying in {:.1} s)",
                        delay.as_secs_f64()
                    ));
                });
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    c = ctl.recv() => match c {
                        Some(Ctl::Restart) => attempt = 0,
                        Some(Ctl::Stop) | None => return,
                    }
                }
                continue;
            }
        };
        attempt = 0;
        set(&|st| st.image_hash = Some(image_id.clone()));
        if spec.desired_status == DesiredStatus::Stopped {
            set(&|st| {
                st.runtime_status = RuntimeStatus::Stopped;
                st.status_description = Some("stopped by the deployment (status: stopped)".into());
            });
            while let Some(c) = ctl.recv().await {
                if matches!(c, Ctl::Stop) {
                    break;
                }
            }
            remove(id).await;
            return;
        }
        // 2. run, watch, restart
        loop {
            let t0 = Instant::now();
            let ended = match docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
            {
                Err(e) if engine::is_not_found(&e) => {
                    Ended::Lost("the container was removed outside fleetedge".into())
                }
                Err(e) => {
                    let err = engine::map_err(&uri, "cannot start the container", &e);
                    match err {
                        EngineError::Unreachable { .. } => Ended::Lost(err.to_string()),
                        EngineError::Failed(m) => Ended::Exited {
                            code: None,
                            description: m,
                        },
                    }
                }
                Ok(()) => {
                    let pid = docker
                        .inspect_container(&id, None::<InspectContainerOptions>)
                        .await
                        .ok()
                        .and_then(|i| i.state?.pid)
                        .and_then(|p| u32::try_from(p).ok())
                        .filter(|p| *p > 0);
                    set(&|st| {
                        st.runtime_status = RuntimeStatus::Running;
                        st.pid = pid;
                        st.exit_code = None;
                        st.last_start_time_utc = Some(Utc::now());
                        st.status_description = None;
                    });
                    tracing::info!(module = spec.name, container = id, "container started");
                    match watch(&docker, &id, &s, &mut ctl).await {
                        Ok(e) => e,
                        Err(Some(Ctl::Restart)) => {
                            let _ = docker
                                .stop_container(
                                    &id,
                                    Some(StopContainerOptions {
                                        t: i32::try_from(s.stop_timeout.as_secs()).ok(),
                                        signal: None,
                                    }),
                                )
                                .await;
                            restart_count = 0;
                            set(&|st| {
                                st.restart_count = 0;
                                st.last_restart_time_utc = Some(Utc::now());
                                st.last_exit_time_utc = Some(Utc::now());
                                st.pid = None;
                            });
                            continue;
                        }
                        Err(Some(Ctl::Stop) | None) => {
                            remove(id).await;
                            set(&|st| {
                                st.runtime_status = RuntimeStatus::Stopped;
                                st.pid = None;
                                st.last_exit_time_utc = Some(Utc::now());
                                st.status_description = Some("stopped".into());
                            });
                            return;
                        }
                    }
                }
            };
            let (exit_code, description) = match ended {
                Ended::Exited { code, description } => (code, description),
                Ended::Lost(reason) => {
                    let delay = backoff.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    set(&|st| {
                        st.runtime_status = RuntimeStatus::Failed;
                        st.pid = None;
                        st.status_description = Some(format!(
                            "{reason} (retrying in {:.1} s)",
                            delay.as_secs_f64()
                        ));
                    });
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        c = ctl.recv() => if !matches!(c, Some(Ctl::Restart)) {
                            remove(id).await;
                            return;
                        }
                    }
                    break; // prepare again
                }
            };
            let ran_for = t0.elapsed();
            tracing::info!(module = spec.name, exit_code, %description, "container exited");
            set(&|st| {
                st.exit_code = exit_code;
                st.pid = None;
                st.last_exit_time_utc = Some(Utc::now());
            });
            if !should_restart(spec.restart_policy, exit_code) {
                set(&|st| {
                    st.runtime_status = if exit_code == Some(0) {
                        RuntimeStatus::Stopped
                    } else {
                        RuntimeStatus::Failed
                    };
                    st.status_description = Some(description.clone());
                });
                match ctl.recv().await {
                    Some(Ctl::Restart) => {
                        restart_count = 0;
                        continue;
                    }
                    Some(Ctl::Stop) | None => {
                        remove(id).await;
                        return;
                    }
                }
            }
            restart_count = backoff.count_after_run(restart_count, ran_for);
            let delay = backoff.delay(restart_count);
            set(&|st| {
                st.runtime_status = RuntimeStatus::Backoff;
                st.status_description = Some(format!(
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
                        remove(id).await;
                        set(&|st| {
                            st.runtime_status = RuntimeStatus::Stopped;
                            st.status_description = Some("stopped".into());
                        });
                        return;
                    }
                }
            }
            restart_count += 1;
            set(&|st| {
                st.restart_count = restart_count;
                st.last_restart_time_utc = Some(Utc::now());
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::container_name;

    #[test]
    fn container_names() {
        assert_eq!(container_name("filter"), "filter");
        assert_eq!(container_name("my$mod:1"), "my_mod_1");
        assert_eq!(container_name("_x"), "m_x");
    }
}

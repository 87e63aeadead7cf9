//! `container-engine`: the Docker Engine API at `[moby_runtime] uri` answers, its version,
//! and the module network. Skipped while the deployment has no container module and no
//! engine socket exists.

use bollard::query_parameters::InspectNetworkOptions;

use crate::cli::check::{Check, CheckContext, CheckResult};
use crate::runtime::container::engine;
use crate::state::StateDir;

pub struct ContainerEngine;

/// The images of the cached deployment's `"type": "docker"` modules.
fn deployment_images(state: &StateDir) -> Vec<String> {
    std::fs::read(state.deployment_cache())
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|d| d.get("modules").and_then(|m| m.as_object()).cloned())
        .map(|m| {
            m.values()
                .filter(|v| v["type"] == "docker")
                .filter_map(|v| v["settings"]["image"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Creates (without starting) and removes a container from `image`: the engine's storage and
/// OCI runtime set-up work. `None` when the image is not on the engine.
async fn try_create(docker: &bollard::Docker, image: &str) -> Option<Result<(), String>> {
    docker.inspect_image(image).await.ok()?;
    let name = format!("fleetedge-check-{}", std::process::id());
    let body = bollard::models::ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec!["true".into()]),
        labels: Some([("net.fleetedge.check".to_string(), "1".to_string())].into()),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await;
    Some(match created {
        Ok(c) => {
            let _ = docker
                .remove_container(
                    &c.id,
                    Some(bollard::query_parameters::RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    })
}

#[async_trait::async_trait]
impl Check for ContainerEngine {
    fn id(&self) -> &'static str {
        "container-engine"
    }
    fn description(&self) -> &'static str {
        "container engine is reachable and has the module network"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        let moby = &c.moby;
        let images = deployment_images(&StateDir::new(&c.homedir));
        if images.is_empty() && !moby.socket.exists() {
            return CheckResult::skipped(format!(
                "no container modules deployed and no engine socket at {}",
                moby.socket.display()
            ));
        }
        let fix = "start Docker (`systemctl start docker`) or Podman's API (`podman system service --time=0 unix:///run/podman/podman.sock`) and point [moby_runtime] uri at its socket";
        let docker = match engine::connect(&moby.uri, &moby.socket) {
            Ok(d) => d,
            Err(e) => return CheckResult::error(e.to_string(), fix),
        };
        let version =
            match tokio::time::timeout(std::time::Duration::from_secs(5), docker.version()).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    return CheckResult::error(
                        engine::map_err(&moby.uri, "version", &e).to_string(),
                        fix,
                    );
                }
                Err(_) => {
                    return CheckResult::error(
                        format!("{} did not answer within 5 s", moby.uri),
                        fix,
                    );
                }
            };
        let product = version
            .components
            .as_ref()
            .and_then(|c| c.first())
            .map_or_else(|| "engine".to_string(), |c| c.name.clone());
        let details = format!(
            "{product} {} (API {}) at {}",
            version.version.as_deref().unwrap_or("?"),
            version.api_version.as_deref().unwrap_or("?"),
            moby.uri
        );
        let mut created = String::new();
        for image in &images {
            match try_create(&docker, image).await {
                Some(Ok(())) => {
                    created = format!("; created and removed a test container from {image}");
                    break;
                }
                Some(Err(e)) => {
                    return CheckResult::error(
                        format!("{details}; cannot create a container from {image}: {e}"),
                        "see the engine's log (`journalctl -u docker`, or the output of `podman system service`); docs/edge.md, \"Podman in a container or CI\"",
                    );
                }
                None => {}
            }
        }
        let loopback =
            !c.edge_hub.listen.is_empty() && c.edge_hub.listen.iter().all(|a| a.ip().is_loopback());
        if loopback {
            return CheckResult::ok(format!(
                "{details}{created}; containers use host networking (the edge hub listens on loopback only), network {} is not used",
                moby.network
            ));
        }
        match docker
            .inspect_network(&moby.network, None::<InspectNetworkOptions>)
            .await
        {
            Ok(_) => CheckResult::ok(format!(
                "{details}; network {} present{created}",
                moby.network
            )),
            Err(e) if engine::is_not_found(&e) => CheckResult::warn(
                format!("{details}; network {} does not exist yet", moby.network),
                "the daemon creates it when it starts the first container module",
            ),
            Err(e) => CheckResult::error(
                format!("{details}; {}", engine::map_err(&moby.uri, "network", &e)),
                fix,
            ),
        }
    }
}

//! `container-engine`: the Docker Engine API at `[moby_runtime] uri` answers, its version,
//! and the module network. Skipped while the deployment has no container module and no
//! engine socket exists.

use bollard::query_parameters::InspectNetworkOptions;

use crate::cli::check::{Check, CheckContext, CheckResult};
use crate::runtime::container::engine;
use crate::state::StateDir;

pub struct ContainerEngine;

/// Whether the cached deployment has a `"type": "docker"` module.
fn deployment_has_containers(state: &StateDir) -> bool {
    std::fs::read(state.deployment_cache())
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|d| d.get("modules").and_then(|m| m.as_object()).cloned())
        .is_some_and(|m| m.values().any(|v| v["type"] == "docker"))
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
        let needed = deployment_has_containers(&StateDir::new(&c.homedir));
        if !needed && !moby.socket.exists() {
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
        match docker
            .inspect_network(&moby.network, None::<InspectNetworkOptions>)
            .await
        {
            Ok(_) => CheckResult::ok(format!("{details}; network {} present", moby.network)),
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

//! Calls to the container engine (Docker Engine API over its unix socket, via `bollard`):
//! the module network, images, and fleetedge's own containers (found by label).

use std::collections::HashMap;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{
    CreateImageOptions, InspectNetworkOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use futures_util::StreamExt;

use super::spec::{PullPolicy, RegistryCredential};

/// Label on every container fleetedge creates: the state directory of the daemon that owns it
/// (two daemons on one engine never touch each other's containers, nor anybody else's).
pub const LABEL_OWNER: &str = "net.fleetedge.owner";
/// Label: the module name.
pub const LABEL_MODULE: &str = "net.fleetedge.module";

/// The Docker Engine API version requested (Docker >= 20.10 and Podman >= 3 serve it).
const API_VERSION: &bollard::ClientVersion = &bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Seconds a request to the engine may take (an image pull may take long).
const TIMEOUT_SECS: u64 = 600;

/// An engine error, worded for `statusDescription`.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the container engine at {uri} is unreachable: {reason}")]
    Unreachable { uri: String, reason: String },
    #[error("{0}")]
    Failed(String),
}

/// A client for `unix://` `socket`.
pub fn connect(uri: &str, socket: &std::path::Path) -> Result<Docker, EngineError> {
    Docker::connect_with_socket(&socket.to_string_lossy(), TIMEOUT_SECS, API_VERSION).map_err(|e| {
        EngineError::Unreachable {
            uri: uri.to_string(),
            reason: e.to_string(),
        }
    })
}

/// Maps a `bollard` error: connection failures say the engine is unreachable.
pub fn map_err(uri: &str, context: &str, e: &bollard::errors::Error) -> EngineError {
    use bollard::errors::Error as E;
    match e {
        E::HyperResponseError { .. } | E::IOError { .. } | E::RequestTimeoutError => {
            EngineError::Unreachable {
                uri: uri.to_string(),
                reason: e.to_string(),
            }
        }
        E::DockerResponseServerError { message, .. } => {
            EngineError::Failed(format!("{context}: {message}"))
        }
        other => EngineError::Failed(format!("{context}: {other}")),
    }
}

/// Whether the engine said 404.
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Creates the bridge network `name` when it is missing; returns its gateway address (the
/// host's address on it), when the engine reports one.
pub async fn ensure_network(
    docker: &Docker,
    uri: &str,
    name: &str,
) -> Result<Option<String>, EngineError> {
    let inspect = docker
        .inspect_network(name, None::<InspectNetworkOptions>)
        .await;
    let network = match inspect {
        Ok(n) => n,
        Err(e) if is_not_found(&e) => {
            tracing::info!(network = name, "creating the module network");
            docker
                .create_network(NetworkCreateRequest {
                    name: name.to_string(),
                    driver: Some("bridge".into()),
                    ..Default::default()
                })
                .await
                .map_err(|e| map_err(uri, &format!("cannot create network {name}"), &e))?;
            docker
                .inspect_network(name, None::<InspectNetworkOptions>)
                .await
                .map_err(|e| map_err(uri, &format!("cannot inspect network {name}"), &e))?
        }
        Err(e) => return Err(map_err(uri, &format!("cannot inspect network {name}"), &e)),
    };
    Ok(network
        .ipam
        .and_then(|i| i.config)
        .into_iter()
        .flatten()
        .find_map(|c| c.gateway.filter(|g| !g.is_empty())))
}

/// Makes sure `image` is on the engine (pulling it under `on-create`); returns its image ID.
pub async fn ensure_image(
    docker: &Docker,
    uri: &str,
    image: &str,
    policy: PullPolicy,
    credentials: Option<&RegistryCredential>,
) -> Result<String, EngineError> {
    if policy == PullPolicy::OnCreate {
        let creds = credentials.map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            serveraddress: Some(c.address.clone()),
            ..Default::default()
        });
        let mut pull = docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(image.to_string()),
                ..Default::default()
            }),
            None,
            creds,
        );
        let mut failure = None;
        while let Some(item) = pull.next().await {
            if let Err(e) = item {
                failure = Some(e);
                break;
            }
        }
        if let Some(e) = failure {
            // A local image still runs when the registry is unreachable (as IoT Edge does).
            match docker.inspect_image(image).await {
                Ok(i) => {
                    tracing::warn!(image, error = %e, "cannot pull the image; using the local copy");
                    return Ok(i.id.unwrap_or_default());
                }
                Err(_) => return Err(map_err(uri, &format!("cannot pull image {image}"), &e)),
            }
        }
    }
    match docker.inspect_image(image).await {
        Ok(i) => Ok(i.id.unwrap_or_default()),
        Err(e) if is_not_found(&e) => Err(EngineError::Failed(match policy {
            PullPolicy::Never => {
                format!("image {image} is not on the container engine and imagePullPolicy is never")
            }
            PullPolicy::OnCreate => format!("image {image} is not on the container engine"),
        })),
        Err(e) => Err(map_err(uri, &format!("cannot inspect image {image}"), &e)),
    }
}

/// IDs of the containers this daemon owns (`module`: only that module's).
pub async fn our_containers(
    docker: &Docker,
    uri: &str,
    owner: &str,
    module: Option<&str>,
) -> Result<Vec<String>, EngineError> {
    let mut labels = vec![format!("{LABEL_OWNER}={owner}")];
    if let Some(m) = module {
        labels.push(format!("{LABEL_MODULE}={m}"));
    }
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_string(), labels)])),
            ..Default::default()
        }))
        .await
        .map_err(|e| map_err(uri, "cannot list containers", &e))?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// Stops (SIGTERM, SIGKILL after `grace_secs`) and removes a container.
pub async fn stop_and_remove(
    docker: &Docker,
    uri: &str,
    id: &str,
    grace_secs: i32,
) -> Result<(), EngineError> {
    match docker
        .stop_container(
            id,
            Some(StopContainerOptions {
                t: Some(grace_secs),
                signal: None,
            }),
        )
        .await
    {
        Err(e) if is_not_found(&e) => return Ok(()),
        // Ok, or 304: already stopped
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(e) => tracing::debug!(container = id, error = %e, "stop failed; removing by force"),
    }
    match docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(map_err(uri, &format!("cannot remove container {id}"), &e)),
    }
}

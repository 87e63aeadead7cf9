//! `fleetedge logs` for container modules: the engine's log of the module's container
//! (stdout and stderr), with `--tail`, `--since` and `--follow`.

use std::io::Write;

use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::engine;
use crate::config::MobySettings;

/// Writes the container's log to `out`. `Ok(false)`: this daemon has no container for the
/// module (it is not a container module, or the engine is not reachable).
pub async fn write_logs(
    moby: &MobySettings,
    owner: &str,
    module: &str,
    tail: Option<usize>,
    since: Option<i64>,
    follow: bool,
    out: &mut (dyn Write + Send),
) -> Result<bool, String> {
    let Ok(docker) = engine::connect(&moby.uri, &moby.socket) else {
        return Ok(false);
    };
    let Ok(ids) = engine::our_containers(&docker, &moby.uri, owner, Some(module)).await else {
        return Ok(false);
    };
    let Some(id) = ids.first() else {
        return Ok(false);
    };
    let mut stream = docker.logs(
        id,
        Some(LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            since: since
                .and_then(|s| i32::try_from(s.max(0)).ok())
                .unwrap_or(0),
            tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        }),
    );
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                let _ = out.write_all(chunk.as_ref());
                let _ = out.flush();
            }
            Err(e) => return Err(format!("cannot read the logs of container {id}: {e}")),
        }
    }
    Ok(true)
}

/// The last `tail` lines of every container of this daemon, by module name (for the support
/// bundle). Empty when the engine is not reachable.
pub async fn all_logs(moby: &MobySettings, owner: &str, tail: usize) -> Vec<(String, Vec<u8>)> {
    let Ok(docker) = engine::connect(&moby.uri, &moby.socket) else {
        return Vec::new();
    };
    let list = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(std::collections::HashMap::from([(
                "label".to_string(),
                vec![format!("{}={owner}", engine::LABEL_OWNER)],
            )])),
            ..Default::default()
        }))
        .await;
    let Ok(list) = list else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in list {
        let Some(module) = c
            .labels
            .as_ref()
            .and_then(|l| l.get(engine::LABEL_MODULE))
            .cloned()
        else {
            continue;
        };
        let mut buf = Vec::new();
        if write_logs(moby, owner, &module, Some(tail), None, false, &mut buf)
            .await
            .is_ok()
        {
            out.push((module, buf));
        }
    }
    out.sort();
    out
}

//! `fleetedge logs <module> [--tail N] [--since T] [--follow]`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::runtime::logs::read_since;
use crate::state::StateDir;

pub async fn show(
    config: &crate::config::Config,
    state: &StateDir,
    module: &str,
    tail: Option<usize>,
    since: Option<i64>,
    follow: bool,
) -> Result<i32, String> {
    // edgeAgent and edgeHub run inside the daemon, which keeps their lines in the same
    // directory as the modules' (crate::daemon_log).
    let system = match module.trim_start_matches('$') {
        "edgeAgent" => Some(crate::daemon_log::AGENT),
        "edgeHub" => Some(crate::daemon_log::EDGE_HUB),
        _ => None,
    };
    if system.is_none() {
        // a container module: the engine keeps its log
        let owner = config.homedir.display().to_string();
        let mut out = std::io::stdout();
        if crate::runtime::container::logs::write_logs(
            &config.moby,
            &owner,
            module,
            tail,
            since,
            follow,
            &mut out,
        )
        .await?
        {
            return Ok(0);
        }
    }
    let module = system.unwrap_or(module);
    let path = state.module_log(module);
    let text = read_since(&path, since, tail).map_err(|e| match system {
        Some(_) => format!(
            "no logs for {module} yet ({}: {e}): the daemon writes them once it has started; `fleetedge system status` tells whether it runs",
            path.display()
        ),
        None => format!(
            "no logs for module '{module}' ({}: {e}); `fleetedge list` shows the modules",
            path.display()
        ),
    })?;
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if !follow {
        return Ok(0);
    }
    let mut pos = std::fs::metadata(&path).map_or(0, |m| m.len());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        if len < pos {
            pos = 0; // rotated
        }
        if len > pos
            && let Ok(mut f) = std::fs::File::open(&path)
            && f.seek(SeekFrom::Start(pos)).is_ok()
        {
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).is_ok() {
                pos += buf.len() as u64;
                let _ = out.write_all(&buf);
                let _ = out.flush();
            }
        }
    }
}

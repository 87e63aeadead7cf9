//! `fleetedge system status|logs|restart|reprovision`.

use std::path::Path;

use super::{SystemCmd, load_config};
use crate::mgmt::{self, DaemonStatus};
use crate::state::StateDir;

pub async fn run(flag: Option<&Path>, cmd: SystemCmd) -> Result<i32, String> {
    match cmd {
        SystemCmd::Status => {
            let c = load_config(flag)?;
            let sock = StateDir::new(&c.homedir).mgmt_socket();
            match mgmt::call(&sock, http::Method::GET, "/status").await {
                Ok(v) => {
                    let s: DaemonStatus = serde_json::from_value(v).map_err(|e| e.to_string())?;
                    println!(
                        "fleetedge: running (pid {}, version {}, since {})",
                        s.pid, s.version, s.started_at_utc
                    );
                    println!("  configuration: {}", s.config_path);
                    println!("  state directory: {}", s.homedir);
                    println!(
                        "  device: {} on {} ({})",
                        s.device_id, s.hub_hostname, s.provisioning
                    );
                    println!("  gateway hostname: {}", s.gateway_hostname);
                    println!(
                        "  device connection to the hub: {}",
                        s.device_connection.summary()
                    );
                    println!("  management socket: {}", sock.display());
                    println!(
                        "  workload sockets: {}/<module>.sock (one per module)",
                        StateDir::new(&c.homedir).workload_dir().display()
                    );
                    let a = &s.agent;
                    println!(
                        "  agent: {}; last deployment version {} -> {} {}",
                        if a["connected"] == true {
                            "connected"
                        } else {
                            "not connected"
                        },
                        a["lastDesiredVersion"],
                        a["lastDesiredStatusCode"],
                        a["lastDesiredStatusDescription"]
                            .as_str()
                            .unwrap_or_default()
                    );
                    println!("  edge hub: {}", s.edge_hub);
                    Ok(0)
                }
                Err(e) => {
                    println!("fleetedge: not running\n  {e}");
                    Ok(3)
                }
            }
        }
        SystemCmd::Logs { args } => {
            let mut cmd = std::process::Command::new("journalctl");
            if args.is_empty() {
                cmd.args(["-u", "fleetedge", "-e", "--no-pager"]);
            } else {
                cmd.args(&args);
            }
            let status = cmd.status().map_err(|e| {
                format!("cannot run journalctl: {e}; when running `fleetedge run` by hand the logs go to stderr")
            })?;
            Ok(status.code().unwrap_or(1))
        }
        SystemCmd::Restart => {
            let status = std::process::Command::new("systemctl")
                .args(["restart", "fleetedge"])
                .status()
                .map_err(|e| format!("cannot run systemctl: {e}"))?;
            if !status.success() {
                return Err("systemctl restart fleetedge failed; without systemd, stop `fleetedge run` and start it again".into());
            }
            Ok(0)
        }
        SystemCmd::Reprovision => {
            let c = load_config(flag)?;
            mgmt::call(
                &StateDir::new(&c.homedir).mgmt_socket(),
                http::Method::POST,
                "/reprovision",
            )
            .await?;
            println!("reprovisioning requested; see `fleetedge system status`");
            Ok(0)
        }
    }
}

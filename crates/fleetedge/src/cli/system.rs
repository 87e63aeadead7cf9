//! `fleetedge system status|logs|restart|reprovision`.

use std::path::Path;

use super::{SystemCmd, load_config};
use crate::agent::link::LinkStatus;
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
                    print!(
                        "{}",
                        render_status(&s, &sock, &StateDir::new(&c.homedir), chrono::Utc::now())
                    );
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

/// `fleetedge system status` for a person: one line per fact, connection states with the
/// time of the change and of the last answer from the hub.
pub fn render_status(
    s: &DaemonStatus,
    sock: &Path,
    state: &StateDir,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "fleetedge: running (pid {}, version {}, since {})",
        s.pid, s.version, s.started_at_utc
    );
    let _ = writeln!(o, "  configuration: {}", s.config_path);
    let _ = writeln!(o, "  state directory: {}", s.homedir);
    let _ = writeln!(
        o,
        "  device: {} on {} ({})",
        s.device_id, s.hub_hostname, s.provisioning
    );
    let _ = writeln!(o, "  gateway hostname: {}", s.gateway_hostname);
    let _ = writeln!(
        o,
        "  device connection to the hub: {}",
        s.device_connection.summary_at(now)
    );
    let a = &s.agent;
    let link: LinkStatus = serde_json::from_value(a.clone()).unwrap_or_default();
    let _ = writeln!(
        o,
        "  agent ($edgeAgent) connection: {}",
        link.summary_at(now)
    );
    let deployment = match a["lastDesiredVersion"].as_u64() {
        Some(v) => format!(
            "version {v} -> {} {}",
            a["lastDesiredStatusCode"],
            a["lastDesiredStatusDescription"]
                .as_str()
                .unwrap_or_default()
        ),
        None => "none processed yet".into(),
    };
    let _ = writeln!(o, "  deployment: {}", deployment.trim_end());
    let h = &s.edge_hub;
    let mut hub = h["runtimeStatus"].as_str().unwrap_or("unknown").to_string();
    if let Some(d) = h["statusDescription"].as_str() {
        let _ = write!(hub, " ({d})");
    }
    let _ = writeln!(o, "  edge hub: {hub}");
    if let Some(listen) = h["listen"].as_array() {
        let addrs: Vec<&str> = listen.iter().filter_map(|v| v.as_str()).collect();
        let _ = writeln!(o, "    listening on: {}", addrs.join(", "));
        let _ = writeln!(
            o,
            "    upstream: {}; {} module(s) connected; queue: {} message(s), {} bytes",
            if h["upstreamConnected"] == true {
                "connected".to_string()
            } else {
                format!(
                    "not connected{}",
                    h["lastError"]
                        .as_str()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )
            },
            h["connectedModules"],
            h["queuedMessages"],
            h["queuedBytes"]
        );
    }
    let _ = writeln!(o, "  management socket: {}", sock.display());
    let _ = writeln!(
        o,
        "  workload sockets: {}/<module>.sock (one per module)",
        state.workload_dir().display()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_for_people_and_tells_a_lost_connection() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut device = LinkStatus::default();
        device.set_up(now - chrono::Duration::seconds(50));
        device.set_down(
            now - chrono::Duration::seconds(20),
            Some("connection refused".into()),
        );
        let s = DaemonStatus {
            pid: 7,
            device_id: "edge-1".into(),
            device_connection: device,
            agent: serde_json::json!({"connected": false,
                "disconnectedSinceUtc": "2026-01-01T00:00:40+00:00",
                "lastError": "connection reset", "lastDesiredVersion": 3,
                "lastDesiredStatusCode": 200, "lastDesiredStatusDescription": ""}),
            edge_hub: serde_json::json!({"runtimeStatus": "failed",
                "statusDescription": "cannot listen on 127.0.0.1:8883: address in use"}),
            ..Default::default()
        };
        let text = render_status(&s, Path::new("/x/mgmt.sock"), &StateDir::new("/x"), now);
        assert!(
            text.contains("device connection to the hub: disconnected since 2026-01-01T00:00:40+00:00 (20 seconds ago): connection refused"),
            "{text}"
        );
        assert!(
            text.contains("agent ($edgeAgent) connection: disconnected since 2026-01-01T00:00:40+00:00 (20 seconds ago): connection reset"),
            "{text}"
        );
        assert!(text.contains("deployment: version 3 -> 200"), "{text}");
        assert!(
            text.contains("edge hub: failed (cannot listen on 127.0.0.1:8883: address in use)"),
            "{text}"
        );
        assert!(!text.contains('{'), "no raw JSON: {text}");
    }
}

use std::net::SocketAddr;

use crate::cli::check::{Check, CheckContext, CheckResult};

/// The edge hub's listen addresses (`[edge_hub] listen`) are free or bound by the edge hub:
/// from the running daemon's edge hub state, else by binding them for a moment.
pub struct EdgeHubPorts;

#[async_trait::async_trait]
impl Check for EdgeHubPorts {
    fn id(&self) -> &'static str {
        "edge-hub-ports"
    }
    fn description(&self) -> &'static str {
        "edge hub can bind its ports"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        if !c.edge_hub.enabled {
            return CheckResult::skipped("the edge hub is disabled ([edge_hub] enabled = false)");
        }
        match &ctx.daemon {
            Some(d) => judge_running(&d.edge_hub),
            None => judge_free(&c.edge_hub.listen),
        }
    }
}

/// The fix for a failed bind, by its cause.
pub(crate) fn fix_for(message: &str) -> String {
    let m = message.to_ascii_lowercase();
    if m.contains("address already in use")
        || m.contains("address in use")
        || m.contains("os error 98")
    {
        "another process listens there (a `fleethub serve` on this machine uses 8883 too; `ss -ltnp` shows which): give the edge hub its own address, e.g. `[edge_hub] listen = [\"127.0.0.2:8883\"]` with `hostname` naming it, and the server another one (`fleethub serve --bind 127.0.0.1`), or another port if your modules read FLEETEDGE_GATEWAY_PORT; then `fleetedge config apply` (docs/edge.md, \"Server and edge on one machine\")".into()
    } else if m.contains("permission denied") || m.contains("os error 13") {
        "ports below 1024 need CAP_NET_BIND_SERVICE (the systemd unit keeps it; `fleetedge run` by hand does not): use a port >= 1024 in `[edge_hub] listen`, or run under the unit".into()
    } else if m.contains("cannot assign requested address") || m.contains("os error 99") {
        "the address is not one of this machine's: use 0.0.0.0 (all) or an address `ip addr` shows, in `[edge_hub] listen`".into()
    } else {
        "check `[edge_hub] listen` in the configuration and `fleetedge logs edgeHub`".into()
    }
}

fn judge_running(h: &serde_json::Value) -> CheckResult {
    let listen: Vec<&str> = h["listen"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    match h["runtimeStatus"].as_str() {
        Some("running") => CheckResult::ok(format!("listening on {}", listen.join(", "))),
        Some("failed") => {
            let why = h["statusDescription"]
                .as_str()
                .unwrap_or("the edge hub did not start");
            CheckResult::error(format!("the edge hub did not start: {why}"), fix_for(why))
        }
        other => CheckResult::skipped(format!(
            "the edge hub is {}",
            other.unwrap_or("in an unknown state")
        )),
    }
}

fn judge_free(listen: &[SocketAddr]) -> CheckResult {
    for addr in listen {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            let why = format!("cannot listen on {addr}: {e}");
            return CheckResult::error(why.clone(), fix_for(&why));
        }
    }
    CheckResult::ok(format!(
        "{} free (the daemon is not running)",
        listen
            .iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::check::Outcome;

    #[test]
    fn a_taken_port_is_an_error_with_a_fix_that_names_the_setting() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let r = judge_free(&[addr]);
        assert_eq!(r.result, Outcome::Error);
        assert!(
            r.details
                .unwrap()
                .contains(&format!("cannot listen on {addr}"))
        );
        assert!(r.fix.unwrap().contains("[edge_hub] listen"));
        drop(taken);
        assert_eq!(judge_free(&[addr]).result, Outcome::Ok);

        let failed = serde_json::json!({"runtimeStatus": "failed",
            "statusDescription": "cannot listen on 0.0.0.0:8883: Address in use (os error 98)"});
        let r = judge_running(&failed);
        assert_eq!(r.result, Outcome::Error);
        assert!(r.fix.unwrap().contains("fleethub serve"));
        let up = serde_json::json!({"runtimeStatus": "running", "listen": ["127.0.0.4:18883"]});
        assert_eq!(
            judge_running(&up).details.unwrap(),
            "listening on 127.0.0.4:18883"
        );
        assert!(fix_for("Permission denied (os error 13)").contains("CAP_NET_BIND_SERVICE"));
    }
}

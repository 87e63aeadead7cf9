use crate::certs::{module_trust_bundle, verify_chain};
use crate::cli::check::{Check, CheckContext, CheckResult};
use crate::state::StateDir;

/// The edge hub's server certificate chains to the stored edge CA for the gateway host name,
/// and the edge CA is in the trust bundle the workload API hands to modules (what an
/// official-SDK module verifies the edge hub against).
pub struct EdgeCaChain;

#[async_trait::async_trait]
impl Check for EdgeCaChain {
    fn id(&self) -> &'static str {
        "edge-ca-chain"
    }
    fn description(&self) -> &'static str {
        "edge hub certificate chains to the edge CA in the modules' trust bundle"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        if !c.edge_hub.enabled {
            return CheckResult::skipped("the edge hub is disabled ([edge_hub] enabled = false)");
        }
        judge(
            &StateDir::new(&c.homedir),
            &c.hostname,
            c.trust_bundle_cert.as_deref(),
        )
    }
}

const FIX: &str = "restart the daemon (`systemctl restart fleetedge`): it issues a new edge hub certificate from the stored edge CA, or a new CA when the stored one is unusable";

pub(crate) fn judge(
    state: &StateDir,
    hostname: &str,
    trust_bundle_cert: Option<&std::path::Path>,
) -> CheckResult {
    let ca_path = state.edge_ca_cert();
    let server_path = state.edge_hub_server_cert();
    let (ca, chain) = match (
        std::fs::read_to_string(&ca_path),
        std::fs::read_to_string(&server_path),
    ) {
        (Ok(ca), Ok(chain)) => (ca, chain),
        (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return CheckResult::skipped(format!(
                "cannot read {}: run the check as root or as the fleetedge user",
                state.certs_dir().display()
            ));
        }
        _ => {
            return CheckResult::skipped(format!(
                "no edge CA or edge hub certificate in {} yet (the daemon issues them at start)",
                state.certs_dir().display()
            ));
        }
    };
    if let Err(e) = verify_chain(&ca, &chain, hostname) {
        return CheckResult::error(
            format!(
                "{} does not verify against the edge CA {} for '{hostname}': {e}; modules fail TLS with UnknownCA",
                server_path.display(),
                ca_path.display()
            ),
            FIX,
        );
    }
    let bundle = module_trust_bundle(&ca, trust_bundle_cert);
    if let Err(e) = verify_chain(&bundle, &chain, hostname) {
        return CheckResult::error(
            format!("the modules' trust bundle does not verify the edge hub certificate: {e}"),
            FIX,
        );
    }
    CheckResult::ok(format!(
        "{} verifies against {} for '{hostname}'",
        server_path.display(),
        ca_path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::check::Outcome;

    #[test]
    fn a_server_certificate_from_another_ca_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(judge(&state, "gw.local", None).result, Outcome::Skipped);
        crate::certs::ensure(&state, "device-a", "gw.local").unwrap();
        crate::certs::ensure(&state, "device-b", "gw.local").unwrap();
        assert_eq!(judge(&state, "gw.local", None).result, Outcome::Ok);
        // a server certificate that names another host
        assert_eq!(judge(&state, "elsewhere", None).result, Outcome::Error);
        // a CA replaced behind the daemon's back: the served chain no longer verifies
        let other = tempfile::tempdir().unwrap();
        let pki = crate::certs::ensure(&StateDir::new(other.path()), "x", "gw.local").unwrap();
        std::fs::write(state.edge_ca_cert(), pki.ca_pem).unwrap();
        let r = judge(&state, "gw.local", None);
        assert_eq!(r.result, Outcome::Error);
        assert!(r.details.unwrap().contains("UnknownCA"));
    }
}

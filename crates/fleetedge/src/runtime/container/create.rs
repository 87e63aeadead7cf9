//! The Docker Engine API create body of a module's container: the module's `createOptions`
//! plus what IoT Edge gives every module (its environment, its workload socket, the edge CA,
//! the module network, the gateway host name) and fleetedge's labels.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{ContainerCreateBody, RestartPolicy, RestartPolicyNameEnum};

use super::engine::{LABEL_MODULE, LABEL_OWNER};
use crate::runtime::ModuleSpec;

/// Where the edge CA certificate is mounted inside every container (read-only); its path is
/// also in `EdgeModuleCACertificateFile`, the variable IoT Edge uses for it.
pub const CA_MOUNT: &str = "/etc/fleetedge/edge-ca.pem";

/// How a module's container reaches the edge hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Networking {
    /// The edge hub listens on loopback only: the container shares the host's network (the
    /// gateway host name resolves and connects as it does on the host).
    Host,
    /// The module network; `gateway` (the host's address on it) is added to the container's
    /// `/etc/hosts` under the gateway host name.
    Network {
        name: String,
        gateway: Option<String>,
    },
}

/// What the daemon adds to every container.
#[derive(Debug, Clone)]
pub struct Additions {
    /// The daemon's state directory (the owner label).
    pub owner: String,
    pub gateway_hostname: String,
    /// The edge CA certificate on the host, mounted at [`CA_MOUNT`].
    pub edge_ca: Option<PathBuf>,
    pub networking: Networking,
}

/// The workload socket path from `IOTEDGE_WORKLOADURI` (`unix:///...`).
fn workload_socket(spec: &ModuleSpec) -> Option<&Path> {
    spec.env
        .get("IOTEDGE_WORKLOADURI")
        .and_then(|u| u.strip_prefix("unix://"))
        .map(Path::new)
}

/// Builds the create body. `opts` are the module's validated `createOptions`.
pub fn body(spec: &ModuleSpec, opts: ContainerCreateBody, add: &Additions) -> ContainerCreateBody {
    let mut body = opts;
    let container = spec
        .container
        .as_ref()
        .expect("a container module has a container spec");
    body.image = Some(container.image.clone());

    // Environment: createOptions.Env, then the manifest's env and the IoT Edge variables
    // (these win, as on IoT Edge).
    let mut env: Vec<String> = body
        .env
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            let name = e.split('=').next().unwrap_or_default();
            !spec.env.contains_key(name) && name != "EdgeModuleCACertificateFile"
        })
        .collect();
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    if add.edge_ca.is_some() {
        env.push(format!("EdgeModuleCACertificateFile={CA_MOUNT}"));
    }
    body.env = Some(env);

    let mut labels = body.labels.take().unwrap_or_default();
    labels.insert(LABEL_OWNER.into(), add.owner.clone());
    labels.insert(LABEL_MODULE.into(), spec.name.clone());
    body.labels = Some(labels);

    let mut hc = body.host_config.take().unwrap_or_default();
    // The manifest's restartPolicy applies (the agent restarts the container), not Docker's.
    hc.restart_policy = Some(RestartPolicy {
        name: Some(RestartPolicyNameEnum::NO),
        maximum_retry_count: None,
    });
    let mut binds = hc.binds.take().unwrap_or_default();
    if let Some(sock) = workload_socket(spec) {
        binds.push(format!("{0}:{0}", sock.display()));
    }
    if let Some(ca) = &add.edge_ca {
        binds.push(format!("{}:{CA_MOUNT}:ro", ca.display()));
    }
    hc.binds = Some(binds);
    if hc.network_mode.as_deref().is_none_or(str::is_empty) {
        match &add.networking {
            Networking::Host => hc.network_mode = Some("host".into()),
            Networking::Network { name, gateway } => {
                hc.network_mode = Some(name.clone());
                // an IP address as the gateway host name is dialed as it is
                if let Some(gw) = gateway
                    .as_ref()
                    .filter(|_| add.gateway_hostname.parse::<std::net::IpAddr>().is_err())
                {
                    let mut hosts = hc.extra_hosts.take().unwrap_or_default();
                    hosts.push(format!("{}:{gw}", add.gateway_hostname));
                    hc.extra_hosts = Some(hosts);
                }
            }
        }
    }
    body.host_config = Some(hc);
    if body.hostname.is_none() && !matches!(add.networking, Networking::Host) {
        body.hostname = Some(spec.name.to_lowercase().replace('_', "-"));
    }
    body
}

/// `createOptions` as the typed create body (validated when the deployment was parsed).
pub fn options(spec: &ModuleSpec) -> Result<ContainerCreateBody, String> {
    let c = spec
        .container
        .as_ref()
        .ok_or_else(|| "not a container module".to_string())?;
    serde_json::from_value(serde_json::Value::Object(c.create_options.clone()))
        .map_err(|e| format!("settings.createOptions: {e}"))
}

/// Labels as a map (for tests and inspection).
pub fn labels(body: &ContainerCreateBody) -> HashMap<String, String> {
    body.labels.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::container::spec::{ContainerSpec, PullPolicy};
    use crate::runtime::{DesiredStatus, RestartPolicy as Policy};
    use serde_json::json;

    fn spec(opts: &serde_json::Value) -> ModuleSpec {
        ModuleSpec {
            name: "filter".into(),
            command: "localhost/filter:1".into(),
            args: vec![],
            working_dir: None,
            env: [
                ("A".to_string(), "manifest".to_string()),
                (
                    "IOTEDGE_WORKLOADURI".to_string(),
                    "unix:///var/lib/fleetedge/mnt/filter.sock".to_string(),
                ),
            ]
            .into(),
            restart_policy: Policy::Always,
            desired_status: DesiredStatus::Running,
            version: None,
            container: Some(ContainerSpec {
                image: "localhost/filter:1".into(),
                create_options: opts.as_object().unwrap().clone(),
                pull_policy: PullPolicy::Never,
                credentials: None,
            }),
        }
    }

    fn add(networking: Networking) -> Additions {
        Additions {
            owner: "/var/lib/fleetedge".into(),
            gateway_hostname: "edge-gw".into(),
            edge_ca: Some(PathBuf::from("/var/lib/fleetedge/certs/edge-ca.pem")),
            networking,
        }
    }

    #[test]
    fn module_network_env_mounts_labels() {
        let s = spec(&json!({
            "Env": ["A=create", "B=create"],
            "HostConfig": {"Binds": ["data:/data"], "RestartPolicy": {"Name": "always"},
                           "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}
        }));
        let b = body(
            &s,
            options(&s).unwrap(),
            &add(Networking::Network {
                name: "azure-iot-edge".into(),
                gateway: Some("10.89.0.1".into()),
            }),
        );
        assert_eq!(b.image.as_deref(), Some("localhost/filter:1"));
        let env = b.env.clone().unwrap();
        assert!(env.contains(&"A=manifest".to_string()), "{env:?}");
        assert!(!env.contains(&"A=create".to_string()), "{env:?}");
        assert!(env.contains(&"B=create".to_string()), "{env:?}");
        assert!(env.contains(&format!("EdgeModuleCACertificateFile={CA_MOUNT}")));
        let hc = b.host_config.clone().unwrap();
        assert_eq!(
            hc.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        let binds = hc.binds.unwrap();
        assert!(binds.contains(&"data:/data".to_string()));
        assert!(binds.contains(
            &"/var/lib/fleetedge/mnt/filter.sock:/var/lib/fleetedge/mnt/filter.sock".to_string()
        ));
        assert!(binds.contains(&format!(
            "/var/lib/fleetedge/certs/edge-ca.pem:{CA_MOUNT}:ro"
        )));
        assert_eq!(hc.network_mode.as_deref(), Some("azure-iot-edge"));
        assert_eq!(hc.extra_hosts.unwrap(), vec!["edge-gw:10.89.0.1"]);
        assert!(hc.port_bindings.is_some());
        // a gateway given as an IP address needs no hosts entry
        let mut by_ip = add(Networking::Network {
            name: "azure-iot-edge".into(),
            gateway: Some("10.89.0.1".into()),
        });
        by_ip.gateway_hostname = "192.168.1.10".into();
        let b2 = body(&s, options(&s).unwrap(), &by_ip);
        assert!(b2.host_config.unwrap().extra_hosts.is_none());
        let l = labels(&b);
        assert_eq!(l[LABEL_OWNER], "/var/lib/fleetedge");
        assert_eq!(l[LABEL_MODULE], "filter");
    }

    #[test]
    fn host_networking_when_the_edge_hub_is_on_loopback() {
        let s = spec(&json!({}));
        let b = body(&s, options(&s).unwrap(), &add(Networking::Host));
        let hc = b.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert!(hc.extra_hosts.is_none());
        // a module's own NetworkMode is kept
        let s = spec(&json!({"HostConfig": {"NetworkMode": "none"}}));
        let b = body(&s, options(&s).unwrap(), &add(Networking::Host));
        assert_eq!(b.host_config.unwrap().network_mode.as_deref(), Some("none"));
    }
}

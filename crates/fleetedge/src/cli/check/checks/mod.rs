//! The checks, one per file, in run order.

mod clock_skew;
mod config_applied;
mod config_well_formed;
mod container_engine;
mod credentials;
mod daemon_running;
mod device_connection;
mod disk_space;
mod dps_connect;
mod edge_agent;
mod edge_ca_chain;
mod edge_hub_ports;
mod hostname;
mod hub_connect;
mod modules_healthy;
mod trust_bundle;

use super::Check;

pub fn all() -> Vec<Box<dyn Check>> {
    vec![
        Box::new(config_well_formed::ConfigWellFormed),
        Box::new(config_applied::ConfigApplied),
        Box::new(hostname::Hostname),
        Box::new(trust_bundle::TrustBundle),
        Box::new(edge_ca_chain::EdgeCaChain),
        Box::new(dps_connect::DpsConnect),
        Box::new(hub_connect::HubConnect::Https),
        Box::new(hub_connect::HubConnect::Mqtt),
        Box::new(clock_skew::ClockSkew),
        Box::new(credentials::Credentials),
        Box::new(daemon_running::DaemonRunning),
        Box::new(edge_hub_ports::EdgeHubPorts),
        Box::new(device_connection::DeviceConnection),
        Box::new(edge_agent::EdgeAgent),
        Box::new(container_engine::ContainerEngine),
        Box::new(modules_healthy::ModulesHealthy),
        Box::new(disk_space::DiskSpace),
    ]
}

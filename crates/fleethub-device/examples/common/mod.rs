//! Settings and connection shared by the device-client examples: provision with DPS (like
//! the `provision_symmetric_key` example) then connect to the assigned hub, or connect with
//! a device connection string.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use fleethub_device::provisioning::{ProvisioningClient, Transport};
use fleethub_device::{DeviceClient, DeviceClientOptions};

/// `(flag, env, help)`.
pub type Setting = (&'static str, &'static str, &'static str);

/// Settings every device example understands.
pub const CONNECT_SETTINGS: [Setting; 12] = [
    (
        "--connection-string",
        "IOTHUB_DEVICE_CONNECTION_STRING",
        "device connection string (instead of DPS)",
    ),
    ("--host", "PROVISIONING_HOST", "DPS host name"),
    ("--id-scope", "PROVISIONING_IDSCOPE", "DPS ID scope"),
    (
        "--registration-id",
        "PROVISIONING_REGISTRATION_ID",
        "registration ID",
    ),
    (
        "--symmetric-key",
        "PROVISIONING_SYMMETRIC_KEY",
        "individual enrollment key",
    ),
    (
        "--group-key",
        "PROVISIONING_GROUP_KEY",
        "group enrollment key (derives the device key)",
    ),
    (
        "--port",
        "PROVISIONING_PORT",
        "DPS port (default 8883 mqtt, 443 https)",
    ),
    (
        "--transport",
        "PROVISIONING_TRANSPORT",
        "DPS transport: mqtt (default) or https",
    ),
    (
        "--ca-cert",
        "FLEETHUB_CA_CERT",
        "CA PEM to trust (default: system bundle)",
    ),
    (
        "--hub-port",
        "FLEETHUB_HUB_MQTT_PORT",
        "hub MQTT/TLS port (default 8883)",
    ),
    (
        "--hub-address",
        "FLEETHUB_HUB_ADDRESS",
        "dial this address instead of the hub host name (cert still checked for the host)",
    ),
    (
        "--timeout",
        "PROVISIONING_TIMEOUT_SECS",
        "DPS timeout in seconds (default 60)",
    ),
];

pub struct Settings {
    values: HashMap<&'static str, String>,
    table: Vec<Setting>,
}

/// The `main` of a device-client example: `-h`/`--help` prints the usage of
/// [`CONNECT_SETTINGS`] plus `extra`; otherwise runs `run`, printing its error and exiting with
/// 1 when it fails.
pub async fn main<F>(name: &str, extra: &[Setting], run: impl FnOnce() -> F) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        let table: Vec<_> = CONNECT_SETTINGS.iter().chain(extra).copied().collect();
        print!("{}", Settings::usage(name, &table));
        return ExitCode::SUCCESS;
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Settings {
    pub fn usage(name: &str, table: &[Setting]) -> String {
        let mut s = format!("usage: {name} [--flag value]...\n");
        for (flag, env, help) in table {
            let _ = writeln!(s, "  {flag:<22} (env {env:<32}) {help}");
        }
        s
    }

    /// Environment first, then `--flag value` / `--flag=value` arguments on top.
    pub fn load(name: &str, extra: &[Setting]) -> Result<Settings, String> {
        let table: Vec<Setting> = CONNECT_SETTINGS.iter().chain(extra).copied().collect();
        let mut values = HashMap::new();
        for (_, env, _) in &table {
            if let Ok(v) = std::env::var(env)
                && !v.trim().is_empty()
            {
                values.insert(*env, v);
            }
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let Some((_, env, _)) = table.iter().find(|(f, _, _)| *f == flag) else {
                return Err(format!(
                    "unknown argument '{arg}'\n{}",
                    Self::usage(name, &table)
                ));
            };
            let value = match inline {
                Some(v) => v,
                None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
            };
            values.insert(*env, value);
        }
        Ok(Settings { values, table })
    }

    pub fn get(&self, env: &str) -> Option<&str> {
        self.values.get(env).map(String::as_str)
    }

    fn need(&self, env: &str) -> Result<&str, String> {
        self.get(env).ok_or_else(|| {
            let flag = self
                .table
                .iter()
                .find(|(_, e, _)| *e == env)
                .map_or("", |(f, _, _)| *f);
            format!("{env} (or {flag}) is not set; or give a device connection string")
        })
    }

    pub fn parse<T: std::str::FromStr>(&self, env: &str, default: T) -> Result<T, String> {
        match self.get(env) {
            Some(v) => v.parse().map_err(|_| format!("invalid {env} '{v}'")),
            None => Ok(default),
        }
    }

    fn options(&self) -> Result<DeviceClientOptions, String> {
        let mut options = DeviceClientOptions::default();
        if let Some(ca) = self.get("FLEETHUB_CA_CERT") {
            options = options.with_ca_pem_file(ca);
        }
        options = options.with_port(self.parse("FLEETHUB_HUB_MQTT_PORT", 8883u16)?);
        if let Some(address) = self.get("FLEETHUB_HUB_ADDRESS") {
            options = options.with_connect_address(address);
        }
        Ok(options)
    }

    /// Connects with the connection string, or provisions with DPS and connects to the
    /// assigned hub.
    pub async fn connect(&self) -> Result<DeviceClient, String> {
        let options = self.options()?;
        if let Some(cs) = self.get("IOTHUB_DEVICE_CONNECTION_STRING") {
            println!("Connecting with the device connection string ...");
            return DeviceClient::from_connection_string(cs, options)
                .await
                .map_err(|e| e.to_string());
        }
        let transport: Transport = self
            .get("PROVISIONING_TRANSPORT")
            .unwrap_or("mqtt")
            .parse()?;
        let mut builder = ProvisioningClient::builder()
            .global_endpoint(self.need("PROVISIONING_HOST")?)
            .id_scope(self.need("PROVISIONING_IDSCOPE")?)
            .registration_id(self.need("PROVISIONING_REGISTRATION_ID")?)
            .transport(transport);
        builder = match (
            self.get("PROVISIONING_SYMMETRIC_KEY"),
            self.get("PROVISIONING_GROUP_KEY"),
        ) {
            (Some(key), _) => builder.symmetric_key(key),
            (None, Some(group)) => builder.group_key(group),
            (None, None) => {
                return Err(
                    "set PROVISIONING_SYMMETRIC_KEY (or PROVISIONING_GROUP_KEY)".to_string()
                );
            }
        };
        if let Some(port) = self.get("PROVISIONING_PORT") {
            builder = builder.port(port.parse().map_err(|_| format!("invalid port '{port}'"))?);
        }
        if let Some(ca) = self.get("FLEETHUB_CA_CERT") {
            builder = builder.ca_pem_file(ca);
        }
        builder = builder.timeout(Duration::from_secs(
            self.parse("PROVISIONING_TIMEOUT_SECS", 60u64)?,
        ));
        let provisioning = builder.build().map_err(|e| e.to_string())?;
        println!(
            "Provisioning '{}' with {}:{} over {} ...",
            provisioning.registration_id(),
            provisioning.host(),
            provisioning.port(),
            provisioning.transport()
        );
        let registration = provisioning.register().await.map_err(|e| e.to_string())?;
        println!(
            "Assigned to hub {} as device {} ({})",
            registration.assigned_hub,
            registration.device_id,
            registration.substatus.as_deref().unwrap_or("-")
        );
        println!("Connecting to {} ...", registration.assigned_hub);
        DeviceClient::from_provisioning(&registration, provisioning.device_key(), options)
            .await
            .map_err(|e| e.to_string())
    }
}

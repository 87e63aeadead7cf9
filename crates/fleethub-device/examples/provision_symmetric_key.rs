//! Provision a device with a symmetric key, like the Azure DPS tutorials' sample.
//!
//! Settings come from the environment, each overridable by a `--flag value` argument:
//!
//! | env                              | flag                 | default            |
//! |----------------------------------|----------------------|--------------------|
//! | `PROVISIONING_HOST`              | `--host`             | required           |
//! | `PROVISIONING_IDSCOPE`           | `--id-scope`         | required           |
//! | `PROVISIONING_REGISTRATION_ID`   | `--registration-id`  | required           |
//! | `PROVISIONING_SYMMETRIC_KEY`     | `--symmetric-key`    | this or group key  |
//! | `PROVISIONING_GROUP_KEY`         | `--group-key`        | (derives the key)  |
//! | `PROVISIONING_PORT`              | `--port`             | 8883 mqtt, 443 https |
//! | `PROVISIONING_TRANSPORT`         | `--transport`        | `mqtt`             |
//! | `FLEETHUB_CA_CERT` (CA PEM path) | `--ca-cert`          | system CA bundle   |
//! | `PROVISIONING_TIMEOUT_SECS`      | `--timeout`          | 60                 |
//!
//! ```sh
//! PROVISIONING_HOST=localhost PROVISIONING_IDSCOPE=0ne00000A0A \
//! PROVISIONING_REGISTRATION_ID=dev-01 PROVISIONING_SYMMETRIC_KEY=... \
//! FLEETHUB_CA_CERT=fleethub-data/certs/ca.pem \
//!   cargo run -p fleethub-device --example provision_symmetric_key -- --transport https
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use fleethub_device::provisioning::{ProvisioningClient, Transport};

const SETTINGS: [(&str, &str); 9] = [
    ("--host", "PROVISIONING_HOST"),
    ("--id-scope", "PROVISIONING_IDSCOPE"),
    ("--registration-id", "PROVISIONING_REGISTRATION_ID"),
    ("--symmetric-key", "PROVISIONING_SYMMETRIC_KEY"),
    ("--group-key", "PROVISIONING_GROUP_KEY"),
    ("--port", "PROVISIONING_PORT"),
    ("--transport", "PROVISIONING_TRANSPORT"),
    ("--ca-cert", "FLEETHUB_CA_CERT"),
    ("--timeout", "PROVISIONING_TIMEOUT_SECS"),
];

fn usage() -> String {
    let mut s = String::from("usage: provision_symmetric_key [--flag value]...\n");
    for (flag, env) in SETTINGS {
        let _ = writeln!(s, "  {flag:<18} (env {env})");
    }
    s
}

/// Environment first, then `--flag value` / `--flag=value` arguments on top.
fn settings() -> Result<HashMap<&'static str, String>, String> {
    let mut out = HashMap::new();
    for (_, env) in SETTINGS {
        if let Ok(v) = std::env::var(env)
            && !v.trim().is_empty()
        {
            out.insert(env, v);
        }
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let Some((_, env)) = SETTINGS.iter().find(|(f, _)| *f == flag) else {
            return Err(format!("unknown argument '{arg}'\n{}", usage()));
        };
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        out.insert(env, value);
    }
    Ok(out)
}

async fn run() -> Result<(), String> {
    let s = settings()?;
    let get = |env: &str| s.get(env).map(String::as_str);
    let need = |env: &str| get(env).ok_or_else(|| format!("{env} is not set\n{}", usage()));

    let transport: Transport = get("PROVISIONING_TRANSPORT").unwrap_or("mqtt").parse()?;
    let mut builder = ProvisioningClient::builder()
        .global_endpoint(need("PROVISIONING_HOST")?)
        .id_scope(need("PROVISIONING_IDSCOPE")?)
        .registration_id(need("PROVISIONING_REGISTRATION_ID")?)
        .transport(transport);
    builder = match (
        get("PROVISIONING_SYMMETRIC_KEY"),
        get("PROVISIONING_GROUP_KEY"),
    ) {
        (Some(key), _) => builder.symmetric_key(key),
        (None, Some(group)) => builder.group_key(group),
        (None, None) => {
            return Err("set PROVISIONING_SYMMETRIC_KEY (or PROVISIONING_GROUP_KEY)".to_string());
        }
    };
    if let Some(port) = get("PROVISIONING_PORT") {
        builder = builder.port(port.parse().map_err(|_| format!("invalid port '{port}'"))?);
    }
    if let Some(ca) = get("FLEETHUB_CA_CERT") {
        builder = builder.ca_pem_file(ca);
    }
    if let Some(t) = get("PROVISIONING_TIMEOUT_SECS") {
        let secs: u64 = t.parse().map_err(|_| format!("invalid timeout '{t}'"))?;
        builder = builder.timeout(Duration::from_secs(secs));
    }
    let client = builder.build().map_err(|e| e.to_string())?;

    println!(
        "Registering '{}' with {}:{} over {} ...",
        client.registration_id(),
        client.host(),
        client.port(),
        client.transport()
    );
    let result = client.register().await.map_err(|e| e.to_string())?;
    println!("The complete registration result is");
    println!("  status:       {}", result.status);
    println!("  assigned hub: {}", result.assigned_hub);
    println!("  device id:    {}", result.device_id);
    println!(
        "  substatus:    {}",
        result.substatus.as_deref().unwrap_or("-")
    );
    if let Some(payload) = &result.payload {
        println!("  payload:      {payload}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        print!("{}", usage());
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

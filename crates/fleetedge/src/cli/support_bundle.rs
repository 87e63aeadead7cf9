//! `fleetedge support-bundle [--out FILE] [--tail N]`: one tar file with what a person helping
//! needs, and no secrets: version, daemon status and modules (from the management API),
//! the `check` report, the configuration with every key and password replaced by
//! `<redacted>`, the applied settings and provisioning cache (secret-free by design), the
//! daemon's and modules' logs (last N lines) and the public certificates. Never the key
//! files, module identities, the edge CA key or the message queue.

use std::path::{Path, PathBuf};

use crate::config::{Config, config_path};
use crate::state::StateDir;

/// The bundle's files: (name inside the archive, content).
pub type Entries = Vec<(String, Vec<u8>)>;

/// Replaces secrets in configuration text: `SharedAccessKey=...` in connection strings,
/// inline `value = "..."` keys, and `password`/`pk`-style string values.
pub fn redact_config(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut l = line.to_string();
        // connection strings: SharedAccessKey=<key> up to ';', a quote or the line end
        let mut from = 0;
        while let Some(rel) = l[from..].find("SharedAccessKey=") {
            let start = from + rel + "SharedAccessKey=".len();
            let end = l[start..]
                .find([';', '"', '\'', '\n', '\r', ' '])
                .map_or(l.len(), |e| start + e);
            l.replace_range(start..end, "<redacted>");
            from = start + "<redacted>".len();
        }
        // `value = "<key>"` (inline keys) and `password = "..."`
        for key in [
            "value",
            "password",
            "symmetric_key",
            "device_connection_string",
        ] {
            let mut from = 0;
            while let Some(rel) = l[from..].find(key) {
                let i = from + rel;
                from = i + key.len();
                let before_ok = i == 0
                    || !l.as_bytes()[i - 1].is_ascii_alphanumeric() && l.as_bytes()[i - 1] != b'_';
                let after = l[from..].trim_start();
                if !before_ok || !after.starts_with('=') {
                    continue;
                }
                let after_eq = after[1..].trim_start();
                let Some(q) = after_eq.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                    continue;
                };
                let open = l.len() - after_eq.len();
                let Some(close_rel) = l[open + 1..].find(q) else {
                    continue;
                };
                l.replace_range(open + 1..open + 1 + close_rel, "<redacted>");
                from = open + 1 + "<redacted>".len() + 1;
            }
        }
        out.push_str(&l);
    }
    out
}

/// A ustar archive of `entries` (files 0600, under `fleetedge-support/`).
pub fn tar(entries: &Entries, mtime: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let name = format!("fleetedge-support/{name}");
        let mut h = [0u8; 512];
        let n = name.as_bytes();
        let len = n.len().min(100);
        h[..len].copy_from_slice(&n[..len]);
        let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
            let s = format!("{v:0w$o}\0", w = width - 1);
            h[at..at + width].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, 0o600);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, data.len() as u64);
        octal(&mut h, 136, 12, mtime);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn json(v: &serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Collects the bundle's files for the configuration at `config_file`.
pub async fn collect(config_file: &Path, tail: usize) -> Entries {
    let mut e: Entries = vec![(
        "version.txt".into(),
        format!("fleetedge {}\n", env!("CARGO_PKG_VERSION")).into_bytes(),
    )];
    match std::fs::read_to_string(config_file) {
        Ok(t) => e.push(("config.toml".into(), redact_config(&t).into_bytes())),
        Err(err) => e.push((
            "config.toml.error".into(),
            format!("cannot read {}: {err}\n", config_file.display()).into_bytes(),
        )),
    }
    let report = super::check::run_all(config_file.to_path_buf(), &[]).await;
    e.push((
        "check.json".into(),
        json(&serde_json::to_value(&report).unwrap_or_default()),
    ));
    let Ok(config) = Config::load(config_file) else {
        return e;
    };
    let state = StateDir::new(&config.homedir);
    let sock = state.mgmt_socket();
    for (name, route) in [("status.json", "/status"), ("modules.json", "/modules")] {
        match crate::mgmt::call(&sock, http::Method::GET, route).await {
            Ok(v) => e.push((name.into(), json(&v))),
            Err(err) => e.push((format!("{name}.error"), format!("{err}\n").into_bytes())),
        }
    }
    for (name, path) in [
        ("applied-config.json", state.applied_config()),
        ("provisioning.json", state.provisioning_cache()),
        ("certs/edge-ca.pem", state.edge_ca_cert()),
        ("certs/edge-hub-server.pem", state.edge_hub_server_cert()),
    ] {
        if let Ok(b) = std::fs::read(&path) {
            e.push((name.into(), b));
        }
    }
    let mut logs: Vec<PathBuf> = std::fs::read_dir(state.logs_dir())
        .map(|d| d.filter_map(|x| x.ok().map(|x| x.path())).collect())
        .unwrap_or_default();
    logs.retain(|p| p.extension().is_some_and(|x| x == "log"));
    logs.sort();
    for p in logs {
        if let Ok(text) = crate::runtime::logs::read_tail(&p, Some(tail)) {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            e.push((format!("logs/{name}"), text.into_bytes()));
        }
    }
    // container modules: their logs are kept by the engine
    let owner = config.homedir.display().to_string();
    for (module, text) in
        crate::runtime::container::logs::all_logs(&config.moby, &owner, tail).await
    {
        let name = crate::state::safe_name(&module);
        e.push((format!("logs/container-{name}.log"), text));
    }
    e
}

pub async fn run(flag: Option<&Path>, out: Option<PathBuf>, tail: usize) -> Result<i32, String> {
    let now = chrono::Utc::now();
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "fleetedge-support-{}.tar",
            now.format("%Y%m%dT%H%M%SZ")
        ))
    });
    let entries = collect(&config_path(flag), tail).await;
    let bytes = tar(&entries, u64::try_from(now.timestamp()).unwrap_or(0));
    crate::state::write_private(&out, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!(
        "wrote {} ({} files, owner only; keys and passwords are redacted, key files are not included)",
        out.display(),
        entries.len()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

    #[test]
    fn secrets_are_redacted() {
        let text = format!(
            "hostname = \"gw\"\n[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey={KEY}\"\n[provisioning.attestation]\nsymmetric_key = {{ value = \"{KEY}\" }}\ndevice_id_pk = {{value='{KEY}'}}\n[cert_issuance.est.auth]\nusername = \"u\"\npassword = \"hunter2\"\n"
        );
        let r = redact_config(&text);
        assert!(!r.contains(KEY), "{r}");
        assert!(!r.contains("hunter2"), "{r}");
        assert!(r.contains("SharedAccessKey=<redacted>\""), "{r}");
        assert!(
            r.contains("symmetric_key = { value = \"<redacted>\" }"),
            "{r}"
        );
        assert!(
            r.contains("hostname = \"gw\"") && r.contains("username = \"u\""),
            "{r}"
        );
        assert_eq!(r.lines().count(), text.lines().count());
        assert_eq!(
            redact_config("cs: HostName=h;SharedAccessKey=abc;DeviceId=d SharedAccessKey=xyz\n"),
            "cs: HostName=h;SharedAccessKey=<redacted>;DeviceId=d SharedAccessKey=<redacted>\n"
        );
    }

    #[tokio::test]
    async fn the_bundle_holds_logs_and_config_but_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "homedir = \"{}\"\n[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=127.0.0.1;DeviceId=d;SharedAccessKey={KEY}\"\n[edge_hub]\nenabled = false\n",
                home.display()
            ),
        )
        .unwrap();
        let state = StateDir::new(&home);
        state.create().unwrap();
        crate::state::write_private(&state.device_key_file(), KEY.as_bytes()).unwrap();
        std::fs::write(state.module_log("sensor"), "reading 1\nreading 2\n").unwrap();
        crate::certs::ensure(&state, "d", "gw").unwrap();
        let entries = collect(&config, 1).await;
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        for n in [
            "version.txt",
            "config.toml",
            "check.json",
            "status.json.error",
            "logs/sensor.log",
            "certs/edge-ca.pem",
        ] {
            assert!(names.contains(&n), "{n} missing: {names:?}");
        }
        let log = &entries
            .iter()
            .find(|(n, _)| n == "logs/sensor.log")
            .unwrap()
            .1;
        assert_eq!(log, b"reading 2\n");
        let archive = tar(&entries, 0);
        assert_eq!(archive.len() % 512, 0);
        let text = String::from_utf8_lossy(&archive);
        assert!(
            !text.contains(KEY),
            "the device key must not be in the bundle"
        );
        assert!(!text.contains("PRIVATE KEY"), "no private keys");
        // a real tar reads it, when the machine has one
        let path = dir.path().join("b.tar");
        std::fs::write(&path, &archive).unwrap();
        if let Ok(out) = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&path)
            .output()
        {
            let list = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(list.contains("fleetedge-support/logs/sensor.log"), "{list}");
        }
    }
}

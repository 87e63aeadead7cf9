//! `fleetedge config import`: converts IoT Edge 1.1's `/etc/iotedge/config.yaml` into
//! fleetedge's `config.toml`, as Azure's `iotedge config import` does for 1.1 -> 1.2. The
//! provisioning section (manual with a device connection string; DPS with a symmetric key),
//! the reprovisioning flags, `hostname` and `certificates.trusted_ca_certs` are carried over;
//! everything else is reported with the reason it does not apply. The old file is only read.

use std::path::Path;

use super::yaml::{self, Node, YamlError};
use super::{Config, normalize_key};

/// Where IoT Edge 1.1 keeps its configuration.
pub const DEFAULT_FROM: &str = "/etc/iotedge/config.yaml";

/// One setting of the old file and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Dotted key in the old file, e.g. `provisioning.scope_id`.
    pub key: String,
    pub line: usize,
    /// Where it went (carried) or why it was left out (dropped).
    pub note: String,
}

/// The converted configuration and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub toml: String,
    pub carried: Vec<Item>,
    pub dropped: Vec<Item>,
}

/// Why the file cannot be converted (always with the YAML line when there is one).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImportError {
    #[error("not valid YAML: {0}")]
    Yaml(#[from] YamlError),
    #[error("line {line}: `{key}`: {message}\n  fix: {fix}")]
    Invalid {
        line: usize,
        key: String,
        message: String,
        fix: String,
    },
}

impl ImportError {
    pub fn line(&self) -> usize {
        match self {
            ImportError::Yaml(e) => e.line,
            ImportError::Invalid { line, .. } => *line,
        }
    }
}

fn invalid(
    node_line: usize,
    key: &str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> ImportError {
    ImportError::Invalid {
        line: node_line,
        key: key.to_string(),
        message: message.into(),
        fix: fix.into(),
    }
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A required, non-placeholder string.
fn text<'a>(parent: &'a Node, name: &str, key: &str, fix: &str) -> Result<&'a str, ImportError> {
    let Some(node) = parent.get(name) else {
        return Err(invalid(parent.line, key, "is missing", fix));
    };
    match node.as_str().map(str::trim) {
        None | Some("") => Err(invalid(node.line, key, "is empty", fix)),
        Some(t) if t.starts_with('<') && t.ends_with('>') => Err(invalid(
            node.line,
            key,
            format!("still holds the template placeholder {t}"),
            fix,
        )),
        Some(t) => Ok(t),
    }
}

/// `file:///abs` stays; an absolute path becomes a file URI.
fn file_uri(node: &Node, key: &str) -> Result<String, ImportError> {
    let t = node.as_str().unwrap_or_default().trim();
    if t.starts_with("file:///") {
        return Ok(t.to_string());
    }
    if t.starts_with('/') {
        return Ok(format!("file://{t}"));
    }
    Err(invalid(
        node.line,
        key,
        format!("'{t}' is not a file:/// URI or an absolute path"),
        "use file:///path/to/ca.pem",
    ))
}

struct Out {
    top: Vec<String>,
    provisioning: Vec<String>,
    attestation: Vec<String>,
    carried: Vec<Item>,
    dropped: Vec<Item>,
}

impl Out {
    fn carry(&mut self, key: &str, line: usize, note: impl Into<String>) {
        self.carried.push(Item {
            key: key.into(),
            line,
            note: note.into(),
        });
    }
    fn drop_(&mut self, key: &str, line: usize, why: impl Into<String>) {
        self.dropped.push(Item {
            key: key.into(),
            line,
            note: why.into(),
        });
    }
}

fn provisioning(p: &Node, out: &mut Out) -> Result<(), ImportError> {
    if !p.is_map() {
        return Err(invalid(
            p.line,
            "provisioning",
            "is not a mapping",
            "indent the provisioning settings under `provisioning:`",
        ));
    }
    let source = text(
        p,
        "source",
        "provisioning.source",
        "set source: \"manual\" or \"dps\"",
    )?;
    let mut handled = vec!["source"];
    match source {
        "manual" => {
            manual_provisioning(p, out)?;
            handled.push("device_connection_string");
        }
        "dps" => {
            dps_provisioning(p, out)?;
            handled.extend(["global_endpoint", "scope_id", "attestation"]);
        }
        other => {
            return Err(invalid(
                p.get("source").map_or(p.line, |n| n.line),
                "provisioning.source",
                format!("provisioning source '{other}' is not supported by fleetedge"),
                "use source: \"manual\" (device connection string) or \"dps\" (symmetric key)",
            ));
        }
    }

    let mut mode = None;
    if let Some(d) = p.get("dynamic_reprovisioning") {
        let Some(b) = d.as_bool() else {
            return Err(invalid(
                d.line,
                "provisioning.dynamic_reprovisioning",
                "is not true or false",
                "use true or false",
            ));
        };
        mode = Some((
            if b { "Dynamic" } else { "OnErrorOnly" },
            d.line,
            "provisioning.dynamic_reprovisioning",
        ));
        handled.push("dynamic_reprovisioning");
    }
    if let Some(a) = p.get("always_reprovision_on_startup") {
        let Some(b) = a.as_bool() else {
            return Err(invalid(
                a.line,
                "provisioning.always_reprovision_on_startup",
                "is not true or false",
                "use true or false",
            ));
        };
        if b {
            mode = Some((
                "AlwaysOnStartup",
                a.line,
                "provisioning.always_reprovision_on_startup",
            ));
        }
        handled.push("always_reprovision_on_startup");
    }
    if let Some((m, line, key)) = mode {
        out.top.push(format!("auto_reprovisioning_mode = {}", q(m)));
        out.carry(key, line, format!("auto_reprovisioning_mode = \"{m}\""));
    }
    for (name, k, _) in p.entries() {
        if !handled.contains(&name) {
            out.drop_(
                &format!("provisioning.{name}"),
                k.line,
                "not an IoT Edge 1.1 provisioning setting fleetedge knows",
            );
        }
    }
    Ok(())
}

/// `source: "manual"`: the device connection string.
fn manual_provisioning(p: &Node, out: &mut Out) -> Result<(), ImportError> {
    out.provisioning.push("source = \"manual\"".into());
    if let Some(auth) = p.get("authentication") {
        let method = auth.get("method").and_then(Node::as_str).unwrap_or("?");
        return Err(invalid(
            auth.line,
            "provisioning.authentication",
            format!(
                "manual provisioning with method '{method}' (X.509) is not supported by fleetedge"
            ),
            "use the device's connection string (symmetric key): device_connection_string",
        ));
    }
    let cs = text(
        p,
        "device_connection_string",
        "provisioning.device_connection_string",
        "set the device connection string (`fleethub hub device-identity connection-string show`)",
    )?;
    let line = p.get("device_connection_string").map_or(p.line, |n| n.line);
    let parsed = fleethub_core::connection_string::ConnectionString::parse(cs).map_err(|e| {
        invalid(
            line,
            "provisioning.device_connection_string",
            e.to_string(),
            "use HostName=<hub>;DeviceId=<device>;SharedAccessKey=<base64 key>",
        )
    })?;
    if parsed.device_id.is_none()
        || parsed.shared_access_key.is_none()
        || parsed.module_id.is_some()
        || parsed.shared_access_key_name.is_some()
    {
        return Err(invalid(
            line,
            "provisioning.device_connection_string",
            "is not a device connection string with a SharedAccessKey",
            "use HostName=<hub>;DeviceId=<device>;SharedAccessKey=<base64 key>",
        ));
    }
    out.provisioning
        .push(format!("connection_string = {}", q(cs)));
    out.carry(
        "provisioning.device_connection_string",
        line,
        "[provisioning] source = \"manual\", connection_string",
    );
    Ok(())
}

/// `source: "dps"`: the global endpoint, the ID scope and a symmetric-key attestation.
fn dps_provisioning(p: &Node, out: &mut Out) -> Result<(), ImportError> {
    out.provisioning.push("source = \"dps\"".into());
    let endpoint = match p.get("global_endpoint") {
        Some(_) => text(
            p,
            "global_endpoint",
            "provisioning.global_endpoint",
            "set global_endpoint: \"https://<dps host>\"",
        )?,
        None => "https://global.azure-devices-provisioning.net",
    };
    let endpoint_line = p.get("global_endpoint").map_or(p.line, |n| n.line);
    super::Endpoint::parse(endpoint).map_err(|m| {
        invalid(
            endpoint_line,
            "provisioning.global_endpoint",
            m,
            "use https://<dps host>[:port]",
        )
    })?;
    out.provisioning
        .push(format!("global_endpoint = {}", q(endpoint)));
    out.carry(
        "provisioning.global_endpoint",
        endpoint_line,
        "[provisioning] global_endpoint",
    );
    let scope = text(
        p,
        "scope_id",
        "provisioning.scope_id",
        "set scope_id: \"<ID scope>\" (`fleethub info` shows it)",
    )?;
    out.provisioning.push(format!("id_scope = {}", q(scope)));
    out.carry(
        "provisioning.scope_id",
        p.get("scope_id").map_or(p.line, |n| n.line),
        "[provisioning] id_scope",
    );
    let Some(att) = p.get("attestation") else {
        return Err(invalid(
            p.line,
            "provisioning.attestation",
            "is missing",
            "add attestation: with method: \"symmetric_key\", registration_id and symmetric_key",
        ));
    };
    let method = text(
        att,
        "method",
        "provisioning.attestation.method",
        "set method: \"symmetric_key\"",
    )?;
    if method != "symmetric_key" {
        return Err(invalid(
            att.get("method").map_or(att.line, |n| n.line),
            "provisioning.attestation.method",
            format!(
                "attestation method '{method}' is not supported by fleetedge (symmetric keys only)"
            ),
            "create a symmetric-key enrollment for the device and use method: \"symmetric_key\"",
        ));
    }
    let reg = text(
        att,
        "registration_id",
        "provisioning.attestation.registration_id",
        "set registration_id: \"<registration id>\"",
    )?;
    let key = text(
        att,
        "symmetric_key",
        "provisioning.attestation.symmetric_key",
        "set symmetric_key: \"<base64 key>\" (for a group enrollment: the derived device key)",
    )?;
    let key_line = att.get("symmetric_key").map_or(att.line, |n| n.line);
    let key = normalize_key(key).map_err(|m| {
        invalid(
            key_line,
            "provisioning.attestation.symmetric_key",
            m,
            "paste the key exactly as DPS shows it (base64)",
        )
    })?;
    out.attestation.push("method = \"symmetric_key\"".into());
    out.attestation
        .push(format!("registration_id = {}", q(reg)));
    out.attestation
        .push(format!("symmetric_key = {{ value = {} }}", q(&key)));
    out.carry(
        "provisioning.attestation",
        att.line,
        "[provisioning.attestation] method = \"symmetric_key\", registration_id, symmetric_key",
    );
    for (name, k, _) in att.entries() {
        if !matches!(name, "method" | "registration_id" | "symmetric_key") {
            out.drop_(
                &format!("provisioning.attestation.{name}"),
                k.line,
                "not used with symmetric-key attestation",
            );
        }
    }
    Ok(())
}

fn certificates(c: &Node, out: &mut Out) -> Result<(), ImportError> {
    for (name, k, v) in c.entries() {
        let key = format!("certificates.{name}");
        match name {
            "trusted_ca_certs" if !v.is_null() => {
                let uri = file_uri(v, &key)?;
                out.top.push(format!("trust_bundle_cert = {}", q(&uri)));
                out.carry(&key, k.line, "trust_bundle_cert");
            }
            "device_ca_cert" | "device_ca_pk" => out.drop_(
                &key,
                k.line,
                "fleetedge issues the edge hub certificate from its own edge CA (<homedir>/certs); a device CA cannot be imported",
            ),
            "auto_generated_ca_lifetime_days" => out.drop_(
                &key,
                k.line,
                "fleetedge's generated edge CA has a fixed lifetime",
            ),
            _ => out.drop_(&key, k.line, "not a certificate setting fleetedge knows"),
        }
    }
    Ok(())
}

/// Converts the text of a 1.1 `config.yaml`.
pub fn convert(text: &str) -> Result<Imported, ImportError> {
    let doc = yaml::parse(text)?;
    if !doc.is_map() {
        return Err(invalid(
            doc.line,
            "",
            "the file is not a YAML mapping of settings",
            format!("pass IoT Edge 1.1's config file ({DEFAULT_FROM})"),
        ));
    }
    let mut out = Out {
        top: Vec::new(),
        provisioning: Vec::new(),
        attestation: Vec::new(),
        carried: Vec::new(),
        dropped: Vec::new(),
    };
    let Some(p) = doc.get("provisioning") else {
        return Err(invalid(
            doc.line,
            "provisioning",
            "there is no provisioning section",
            "this does not look like IoT Edge 1.1's config.yaml",
        ));
    };
    provisioning(p, &mut out)?;
    for (name, k, v) in doc.entries() {
        match name {
            "provisioning" => {}
            "hostname" => match v.as_str().map(str::trim) {
                Some(h) if !h.is_empty() && !h.starts_with('<') => {
                    if !super::is_valid_hostname(h) {
                        return Err(invalid(
                            v.line,
                            "hostname",
                            format!("'{h}' is not a valid host name"),
                            "use letters, digits, '-' and '.' (or an IP address)",
                        ));
                    }
                    out.top.insert(0, format!("hostname = {}", q(h)));
                    out.carry("hostname", k.line, "hostname");
                }
                _ => out.drop_("hostname", k.line, "empty or a placeholder: the machine's host name is used"),
            },
            "parent_hostname" => {
                if v.as_str().is_some_and(|s| !s.trim().is_empty()) {
                    out.drop_(name, k.line, "nested edge (a parent gateway) is not supported by fleetedge");
                }
            }
            "certificates" => certificates(v, &mut out)?,
            "agent" => out.drop_(
                name,
                k.line,
                "fleetedge runs the agent in-process: the edgeAgent container settings (image, env, createOptions) do not apply",
            ),
            "connect" | "listen" => out.drop_(
                name,
                k.line,
                "fleetedge's management and workload sockets live in its state directory (mgmt.sock, mnt/<module>.sock)",
            ),
            "homedir" => out.drop_(
                name,
                k.line,
                "the 1.1 directory holds iotedged's state; fleetedge keeps its own (default /var/lib/fleetedge)",
            ),
            "moby_runtime" => out.drop_(
                name,
                k.line,
                "not carried over: 1.1's engine settings; for container modules set [moby_runtime] uri and network in config.toml (defaults: unix:///var/run/docker.sock, azure-iot-edge; docs/edge.md, \"Container modules\")",
            ),
            "watchdog" => out.drop_(name, k.line, "there is no edgeAgent container to watch"),
            _ => out.drop_(name, k.line, "not an IoT Edge 1.1 setting fleetedge knows"),
        }
    }

    let mut toml = String::from(
        "# fleetedge configuration imported from IoT Edge 1.1's config.yaml by `fleetedge config import`\n# (see docs/edge.md, \"Configuration reference\").\n",
    );
    for l in &out.top {
        toml.push_str(l);
        toml.push('\n');
    }
    toml.push_str("\n[provisioning]\n");
    for l in &out.provisioning {
        toml.push_str(l);
        toml.push('\n');
    }
    if !out.attestation.is_empty() {
        toml.push_str("\n[provisioning.attestation]\n");
        for l in &out.attestation {
            toml.push_str(l);
            toml.push('\n');
        }
    }
    // What was carried over must be a valid fleetedge configuration.
    Config::parse(Path::new("config.toml"), &toml).map_err(|e| {
        invalid(
            p.line,
            "provisioning",
            e.to_string(),
            "fix the old file and import again",
        )
    })?;
    Ok(Imported {
        toml,
        carried: out.carried,
        dropped: out.dropped,
    })
}

/// Reads `from`, converts it and writes `out` (0600; refuses to replace an existing file
/// without `force`). `from` is only read.
pub fn import(from: &Path, out: &Path, force: bool) -> Result<Imported, String> {
    let text = std::fs::read_to_string(from)
        .map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    let imported = convert(&text).map_err(|e| format!("cannot import {}: {e}", from.display()))?;
    if out.exists() && !force {
        return Err(format!(
            "{} already exists; pass --force to replace it, or --out FILE",
            out.display()
        ));
    }
    if let Some(dir) = out.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    crate::state::write_private(out, imported.toml.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(imported)
}

#[cfg(test)]
mod tests;

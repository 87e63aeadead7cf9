//! The `[provisioning]` section: manual (connection string or host + device + key) or DPS.

use toml::Spanned;

use super::error::Reporter;
use super::raw::{RawProvisioning, RawSecret};
use super::{ConfigError, Endpoint, KeySource, Provisioning, file_uri_path, normalize_key};

fn secret(
    r: &Reporter<'_>,
    s: &Spanned<RawSecret>,
    key: &str,
    example: &str,
) -> Result<KeySource, ConfigError> {
    match (&s.get_ref().value, &s.get_ref().uri) {
        (Some(v), None) => normalize_key(v.get_ref())
            .map(KeySource::Value)
            .map_err(|m| {
                r.at(
                    Some(v.span()),
                    key,
                    m,
                    "paste the key exactly as the hub or DPS shows it (base64)",
                )
            }),
        (None, Some(u)) => file_uri_path(u.get_ref())
            .map(KeySource::File)
            .map_err(|m| {
                r.at(
                    Some(u.span()),
                    key,
                    m,
                    "use { uri = \"file:///etc/fleetedge/device-id.key\" }",
                )
            }),
        _ => Err(r.at(
            Some(s.span()),
            key,
            "give exactly one of `value` or `uri`",
            format!("e.g. {key} = {example}"),
        )),
    }
}

fn required<'a>(
    r: &Reporter<'_>,
    v: Option<&'a Spanned<String>>,
    section: &Spanned<impl Sized>,
    key: &str,
    fix: &str,
) -> Result<&'a Spanned<String>, ConfigError> {
    match v {
        Some(s) if !s.get_ref().trim().is_empty() => Ok(s),
        Some(s) => Err(r.at(Some(s.span()), key, "must not be empty", fix)),
        None => Err(r.at(Some(section.span()), key, "is missing", fix)),
    }
}

pub(super) fn resolve_provisioning(
    r: &Reporter<'_>,
    section: &Spanned<RawProvisioning>,
) -> Result<Provisioning, ConfigError> {
    let p = section.get_ref();
    match p.source.get_ref().as_str() {
        "manual" => resolve_manual(r, section),
        "dps" => resolve_dps(r, section),
        other => Err(r.at(
            Some(p.source.span()),
            "provisioning.source",
            format!("unknown provisioning source '{other}'"),
            "use source = \"manual\" or source = \"dps\"",
        )),
    }
}

/// `source = "manual"`: a connection string, or host name + device ID + key.
fn resolve_manual(
    r: &Reporter<'_>,
    section: &Spanned<RawProvisioning>,
) -> Result<Provisioning, ConfigError> {
    let p = section.get_ref();
    if let Some(cs) = &p.connection_string {
        let parsed = fleethub_core::connection_string::ConnectionString::parse(cs.get_ref())
            .map_err(|e| {
                r.at(
                    Some(cs.span()),
                    "provisioning.connection_string",
                    e.to_string(),
                    "use HostName=<hub>;DeviceId=<device>;SharedAccessKey=<base64 key>",
                )
            })?;
        let bad = |m: &str| {
            r.at(
                Some(cs.span()),
                "provisioning.connection_string",
                m.to_string(),
                "use the device connection string: HostName=<hub>;DeviceId=<device>;SharedAccessKey=<base64 key>",
            )
        };
        if parsed.shared_access_key_name.is_some() {
            return Err(bad(
                "this is a service (policy) connection string, not a device's",
            ));
        }
        if parsed.module_id.is_some() {
            return Err(bad("this is a module connection string, not a device's"));
        }
        let device_id = parsed
            .device_id
            .ok_or_else(|| bad("the connection string has no DeviceId"))?;
        let key = parsed
            .shared_access_key
            .ok_or_else(|| bad("the connection string has no SharedAccessKey"))?;
        let key = normalize_key(&key).map_err(|m| bad(&format!("SharedAccessKey: {m}")))?;
        return Ok(Provisioning::Manual {
            iothub_hostname: parsed.host_name,
            device_id,
            key: KeySource::Value(key),
        });
    }
    let hub = required(
        r,
        p.iothub_hostname.as_ref(),
        section,
        "provisioning.iothub_hostname",
        "set connection_string, or iothub_hostname + device_id + [provisioning.authentication]",
    )?;
    let device = required(
        r,
        p.device_id.as_ref(),
        section,
        "provisioning.device_id",
        "add device_id = \"<device id>\"",
    )?;
    let Some(auth) = &p.authentication else {
        return Err(r.at(
            Some(section.span()),
            "provisioning.authentication",
            "is missing",
            "add [provisioning.authentication] with method = \"sas\" and device_id_pk = { value = \"<base64>\" }",
        ));
    };
    if auth.get_ref().method.get_ref() != "sas" {
        return Err(r.at(
            Some(auth.get_ref().method.span()),
            "provisioning.authentication.method",
            format!(
                "method '{}' is not supported (only symmetric keys)",
                auth.get_ref().method.get_ref()
            ),
            "use method = \"sas\" with device_id_pk",
        ));
    }
    let Some(pk) = &auth.get_ref().device_id_pk else {
        return Err(r.at(
            Some(auth.span()),
            "provisioning.authentication.device_id_pk",
            "is missing",
            "add device_id_pk = { value = \"<base64 key>\" }",
        ));
    };
    Ok(Provisioning::Manual {
        iothub_hostname: hub.get_ref().trim().to_string(),
        device_id: device.get_ref().trim().to_string(),
        key: secret(
            r,
            pk,
            "provisioning.authentication.device_id_pk",
            "{ value = \"<base64>\" }",
        )?,
    })
}

/// `source = "dps"`: endpoint, ID scope and a symmetric-key attestation.
fn resolve_dps(
    r: &Reporter<'_>,
    section: &Spanned<RawProvisioning>,
) -> Result<Provisioning, ConfigError> {
    let p = section.get_ref();
    let endpoint = match &p.global_endpoint {
        Some(g) => Endpoint::parse(g.get_ref()).map_err(|m| {
            r.at(
                Some(g.span()),
                "provisioning.global_endpoint",
                m,
                "use global_endpoint = \"https://<dps host>[:port]\"",
            )
        })?,
        None => {
            Endpoint::parse("https://global.azure-devices-provisioning.net").expect("valid default")
        }
    };
    let scope = p.id_scope.as_ref().or(p.scope_id.as_ref());
    let scope = required(
        r,
        scope,
        section,
        "provisioning.id_scope",
        "add id_scope = \"<ID scope>\" (`fleethub info` shows it)",
    )?
    .get_ref()
    .trim()
    .to_string();
    let Some(att) = &p.attestation else {
        return Err(r.at(
            Some(section.span()),
            "provisioning.attestation",
            "is missing",
            "add [provisioning.attestation] with method = \"symmetric_key\", registration_id and symmetric_key",
        ));
    };
    let a = att.get_ref();
    if a.method.get_ref() != "symmetric_key" {
        return Err(r.at(
            Some(a.method.span()),
            "provisioning.attestation.method",
            format!(
                "attestation method '{}' is not supported",
                a.method.get_ref()
            ),
            "use method = \"symmetric_key\"",
        ));
    }
    let reg = required(
        r,
        a.registration_id.as_ref(),
        att,
        "provisioning.attestation.registration_id",
        "add registration_id = \"<registration id>\"",
    )?;
    if reg.get_ref().contains(['/', '#', '+']) {
        return Err(r.at(
            Some(reg.span()),
            "provisioning.attestation.registration_id",
            "must not contain '/', '#' or '+'",
            "use letters, digits, '-', '.', '_' and ':'",
        ));
    }
    let Some(sk) = &a.symmetric_key else {
        return Err(r.at(
            Some(att.span()),
            "provisioning.attestation.symmetric_key",
            "is missing",
            "add symmetric_key = { value = \"<base64 key>\" } (for a group enrollment: the derived device key)",
        ));
    };
    let payload = match &p.payload {
        Some(pl) => match &pl.get_ref().uri {
            Some(u) => Some(file_uri_path(u.get_ref()).map_err(|m| {
                r.at(
                    Some(u.span()),
                    "provisioning.payload",
                    m,
                    "use payload = { uri = \"file:///etc/fleetedge/dps-payload.json\" }",
                )
            })?),
            None => {
                return Err(r.at(
                    Some(pl.span()),
                    "provisioning.payload",
                    "needs `uri`",
                    "use payload = { uri = \"file:///etc/fleetedge/dps-payload.json\" }",
                ));
            }
        },
        None => None,
    };
    Ok(Provisioning::Dps {
        endpoint,
        id_scope: scope,
        registration_id: reg.get_ref().trim().to_string(),
        key: secret(
            r,
            sk,
            "provisioning.attestation.symmetric_key",
            "{ value = \"<base64>\" }",
        )?,
        payload,
    })
}

//! The validated `[provisioning]` section: manual (connection string or split fields) or DPS
//! with a symmetric key, and where the key material comes from.

use std::fmt::Write as _;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where a symmetric key comes from.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub enum KeySource {
    /// Inline `{ value = "<base64>" }`, normalised to padded base64.
    Value(String),
    /// `{ uri = "file:///path" }`: the file holds the base64 text or the raw key bytes.
    File(PathBuf),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Value(_) => f.write_str("Value(<redacted>)"),
            KeySource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// Decodes a base64 key with or without `=` padding; returns the padded form.
pub fn normalize_key(text: &str) -> Result<String, String> {
    let t = text.trim();
    let bytes = STANDARD
        .decode(t)
        .or_else(|_| STANDARD_NO_PAD.decode(t.trim_end_matches('=')))
        .map_err(|_| "the key is not valid base64".to_string())?;
    if !(16..=64).contains(&bytes.len()) {
        return Err(format!(
            "the key decodes to {} bytes; IoT Hub keys are 16 to 64 bytes",
            bytes.len()
        ));
    }
    Ok(STANDARD.encode(bytes))
}

impl KeySource {
    /// The key as padded base64. A file may hold base64 text or raw key bytes (as
    /// `iotedge config apply` writes them).
    pub fn load(&self) -> Result<String, String> {
        match self {
            KeySource::Value(v) => Ok(v.clone()),
            KeySource::File(p) => {
                let bytes = std::fs::read(p)
                    .map_err(|e| format!("cannot read the key file {}: {e}", p.display()))?;
                if let Ok(text) = std::str::from_utf8(&bytes)
                    && let Ok(k) = normalize_key(text)
                {
                    return Ok(k);
                }
                if (16..=64).contains(&bytes.len()) {
                    return Ok(STANDARD.encode(&bytes));
                }
                Err(format!(
                    "the key file {} holds neither base64 text nor 16-64 raw key bytes",
                    p.display()
                ))
            }
        }
    }
}

/// A DPS endpoint from `global_endpoint` (`https://host[:port][/]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub url: String,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .trim()
            .strip_prefix("https://")
            .ok_or_else(|| format!("'{url}' is not an https:// URL"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("'{url}' has no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("'{p}' in '{url}' is not a port number"))?;
                (h.to_string(), port)
            }
            _ => (authority.to_string(), 443),
        };
        Ok(Endpoint {
            url: url.trim().to_string(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        })
    }
}

/// How the device gets its identity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Provisioning {
    Manual {
        iothub_hostname: String,
        device_id: String,
        key: KeySource,
    },
    Dps {
        endpoint: Endpoint,
        id_scope: String,
        registration_id: String,
        key: KeySource,
        payload: Option<PathBuf>,
    },
}

impl Provisioning {
    pub fn source(&self) -> &'static str {
        match self {
            Provisioning::Manual { .. } => "manual",
            Provisioning::Dps { .. } => "dps",
        }
    }

    pub fn key(&self) -> &KeySource {
        match self {
            Provisioning::Manual { key, .. } | Provisioning::Dps { key, .. } => key,
        }
    }

    /// SHA-256 (hex) over the provisioning settings and the key itself: a changed digest
    /// means the cached provisioning result no longer applies.
    pub fn digest(&self) -> String {
        let key = self.key().load().unwrap_or_default();
        let key_digest = hex(&Sha256::digest(key.as_bytes()));
        let doc = match self {
            Provisioning::Manual {
                iothub_hostname,
                device_id,
                ..
            } => serde_json::json!({"source": "manual", "hub": iothub_hostname,
                "device": device_id, "key": key_digest}),
            Provisioning::Dps {
                endpoint,
                id_scope,
                registration_id,
                payload,
                ..
            } => serde_json::json!({"source": "dps", "endpoint": endpoint.url,
                "scope": id_scope, "registration": registration_id, "key": key_digest,
                "payload": payload}),
        };
        hex(&Sha256::digest(doc.to_string().as_bytes()))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_and_without_padding() {
        let padded = STANDARD.encode([7u8; 32]);
        assert!(padded.ends_with('='));
        assert_eq!(normalize_key(&padded).unwrap(), padded);
        assert_eq!(normalize_key(padded.trim_end_matches('=')).unwrap(), padded);
        assert!(normalize_key("not*base64").is_err());
        assert!(
            normalize_key(&STANDARD.encode([1u8; 4]))
                .unwrap_err()
                .contains("4 bytes")
        );
    }

    #[test]
    fn key_files_hold_text_or_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text");
        let raw = dir.path().join("raw");
        std::fs::write(&text, format!("{}\n", STANDARD.encode([3u8; 32]))).unwrap();
        std::fs::write(&raw, [200u8; 32]).unwrap();
        assert_eq!(
            KeySource::File(text).load().unwrap(),
            STANDARD.encode([3u8; 32])
        );
        assert_eq!(
            KeySource::File(raw).load().unwrap(),
            STANDARD.encode([200u8; 32])
        );
        let missing = KeySource::File(dir.path().join("nope")).load().unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://global.azure-devices-provisioning.net").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port),
            ("global.azure-devices-provisioning.net", 443)
        );
        let e = Endpoint::parse("https://localhost:48443/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("localhost", 48443));
        assert!(Endpoint::parse("http://x").is_err());
        assert!(Endpoint::parse("https://x:port").is_err());
    }

    #[test]
    fn digest_changes_with_the_key() {
        let p = |k: u8| Provisioning::Manual {
            iothub_hostname: "h".into(),
            device_id: "d".into(),
            key: KeySource::Value(STANDARD.encode([k; 32])),
        };
        assert_eq!(p(1).digest(), p(1).digest());
        assert_ne!(p(1).digest(), p(2).digest());
        assert!(!format!("{:?}", p(1)).contains(&STANDARD.encode([1u8; 32])));
    }
}

//! Azure IoT connection strings (docs/protocol-notes.md, "Connection strings"):
//! `;`-separated `key=value` pairs, split at the first `=` so base64 padding
//! survives. Keys are case-sensitive, exactly as Azure spells them.

use std::fmt;

use crate::pct::for_log;

const HOST_NAME: &str = "HostName";
const DEVICE_ID: &str = "DeviceId";
const MODULE_ID: &str = "ModuleId";
const SHARED_ACCESS_KEY: &str = "SharedAccessKey";
const SHARED_ACCESS_KEY_NAME: &str = "SharedAccessKeyName";
const SHARED_ACCESS_SIGNATURE: &str = "SharedAccessSignature";
const GATEWAY_HOST_NAME: &str = "GatewayHostName";
const X509: &str = "x509";

/// All keys accepted by [`ConnectionString::parse`].
pub const VALID_KEYS: [&str; 8] = [
    HOST_NAME,
    DEVICE_ID,
    MODULE_ID,
    SHARED_ACCESS_KEY,
    SHARED_ACCESS_KEY_NAME,
    SHARED_ACCESS_SIGNATURE,
    GATEWAY_HOST_NAME,
    X509,
];

/// Why a connection string was rejected. Messages never echo values
/// (which may be keys), only short excerpts of unparseable parts.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ConnectionStringError {
    /// The whole string is empty or whitespace.
    #[error(
        "connection string is empty: expected e.g. \
         'HostName=myhub.example.net;DeviceId=dev-01;SharedAccessKey=...'"
    )]
    Empty,
    /// A `;`-separated part has no `=` (the excerpt is shortened).
    #[error("connection string part '{0}' is not key=value: parts are separated by ';'")]
    Malformed(String),
    /// A key that Azure does not define (keys are case-sensitive).
    #[error("unknown connection string key '{0}'{hint}", hint = unknown_key_hint(.0))]
    UnknownKey(String),
    /// A required key is absent.
    #[error("connection string is missing {0}=...")]
    Missing(&'static str),
    /// A key appears more than once.
    #[error("connection string key '{0}' appears more than once")]
    Duplicate(&'static str),
    /// A key has an empty value.
    #[error("connection string key '{0}' has an empty value")]
    EmptyValue(&'static str),
    /// A value is not acceptable for its key (only `x509` is checked).
    #[error("connection string key '{key}' must be 'true' or 'false', got '{value}'")]
    InvalidValue { key: &'static str, value: String },
}

fn unknown_key_hint(key: &str) -> String {
    match VALID_KEYS.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        Some(k) => format!(": did you mean '{k}'? (keys are case-sensitive)"),
        None => format!(": valid keys are {}", VALID_KEYS.join(", ")),
    }
}

/// A parsed device, module or service connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionString {
    pub host_name: String,
    pub device_id: Option<String>,
    pub module_id: Option<String>,
    pub shared_access_key: Option<String>,
    pub shared_access_key_name: Option<String>,
    pub shared_access_signature: Option<String>,
    pub gateway_host_name: Option<String>,
    pub x509: bool,
}

impl ConnectionString {
    /// Parses `Key=Value;Key=Value...`. Surrounding whitespace and empty
    /// parts (e.g. a trailing `;`) are ignored. `HostName` is required, and
    /// `ModuleId` requires `DeviceId`.
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ConnectionStringError::Empty);
        }
        let mut host_name = None;
        let mut cs = ConnectionString::default();
        let mut x509 = None;
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(ConnectionStringError::Malformed(for_log(part, 24)));
            };
            let key = key.trim();
            let value = value.trim();
            let (name, slot) = match key {
                HOST_NAME => (HOST_NAME, &mut host_name),
                DEVICE_ID => (DEVICE_ID, &mut cs.device_id),
                MODULE_ID => (MODULE_ID, &mut cs.module_id),
                SHARED_ACCESS_KEY => (SHARED_ACCESS_KEY, &mut cs.shared_access_key),
                SHARED_ACCESS_KEY_NAME => (SHARED_ACCESS_KEY_NAME, &mut cs.shared_access_key_name),
                SHARED_ACCESS_SIGNATURE => {
                    (SHARED_ACCESS_SIGNATURE, &mut cs.shared_access_signature)
                }
                GATEWAY_HOST_NAME => (GATEWAY_HOST_NAME, &mut cs.gateway_host_name),
                X509 => (X509, &mut x509),
                _ => return Err(ConnectionStringError::UnknownKey(for_log(key, 40))),
            };
            if slot.is_some() {
                return Err(ConnectionStringError::Duplicate(name));
            }
            if value.is_empty() && name != X509 {
                return Err(ConnectionStringError::EmptyValue(name));
            }
            *slot = Some(value.to_owned());
        }
        cs.host_name = host_name.ok_or(ConnectionStringError::Missing(HOST_NAME))?;
        if let Some(v) = x509 {
            cs.x509 = parse_bool(&v).ok_or_else(|| ConnectionStringError::InvalidValue {
                key: X509,
                value: for_log(&v, 24),
            })?;
        }
        if cs.module_id.is_some() && cs.device_id.is_none() {
            return Err(ConnectionStringError::Missing(DEVICE_ID));
        }
        Ok(cs)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl fmt::Display for ConnectionString {
    /// `HostName=..;DeviceId=..;[ModuleId=..;]SharedAccessKey=..` for
    /// devices, `HostName=..;SharedAccessKeyName=..;SharedAccessKey=..` for
    /// services; other present fields follow; `x509=true` only when set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HOST_NAME}={}", self.host_name)?;
        let fields = [
            (DEVICE_ID, &self.device_id),
            (MODULE_ID, &self.module_id),
            (SHARED_ACCESS_KEY_NAME, &self.shared_access_key_name),
            (SHARED_ACCESS_KEY, &self.shared_access_key),
            (SHARED_ACCESS_SIGNATURE, &self.shared_access_signature),
            (GATEWAY_HOST_NAME, &self.gateway_host_name),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                write!(f, ";{key}={v}")?;
            }
        }
        if self.x509 {
            write!(f, ";{X509}=true")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionStringError as E;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn roundtrip(s: &str) -> ConnectionString {
        let cs = ConnectionString::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(cs.to_string(), s, "display reproduces canonical input");
        assert_eq!(ConnectionString::parse(&cs.to_string()).unwrap(), cs);
        cs
    }

    #[test]
    fn device_string() {
        let s = format!("HostName=myhub.example.net;DeviceId=dev-01;SharedAccessKey={KEY}");
        let cs = roundtrip(&s);
        assert_eq!(cs.host_name, "myhub.example.net");
        assert_eq!(cs.device_id.as_deref(), Some("dev-01"));
        assert_eq!(cs.shared_access_key.as_deref(), Some(KEY));
        assert_eq!(cs.module_id, None);
        assert!(!cs.x509);
    }

    #[test]
    fn module_and_gateway_string() {
        let s = format!(
            "HostName=h;DeviceId=edge1;ModuleId=$edgeHub;SharedAccessKey={KEY};GatewayHostName=gw.local"
        );
        let cs = roundtrip(&s);
        assert_eq!(cs.module_id.as_deref(), Some("$edgeHub"));
        assert_eq!(cs.gateway_host_name.as_deref(), Some("gw.local"));
    }

    #[test]
    fn service_string() {
        let s = format!(
            "HostName=myhub.example.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        );
        let cs = roundtrip(&s);
        assert_eq!(cs.shared_access_key_name.as_deref(), Some("iothubowner"));
        assert_eq!(cs.device_id, None);
    }

    #[test]
    fn sas_and_x509_strings() {
        let sas = "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=AA%3D%3D&se=1";
        let cs = roundtrip(&format!(
            "HostName=h;DeviceId=d;SharedAccessSignature={sas}"
        ));
        assert_eq!(cs.shared_access_signature.as_deref(), Some(sas));
        let cs = roundtrip("HostName=h;DeviceId=d;x509=true");
        assert!(cs.x509);
        let cs = ConnectionString::parse("HostName=h;DeviceId=d;x509=TRUE").unwrap();
        assert!(cs.x509);
        let cs = ConnectionString::parse("HostName=h;DeviceId=d;x509=false").unwrap();
        assert!(!cs.x509);
        assert_eq!(cs.to_string(), "HostName=h;DeviceId=d");
    }

    #[test]
    fn order_whitespace_and_trailing_semicolon_are_tolerated() {
        let a = ConnectionString::parse(&format!(
            "  SharedAccessKey={KEY} ; DeviceId=dev-01;HostName=myhub.example.net;;\n"
        ))
        .unwrap();
        let b = ConnectionString::parse(&format!(
            "HostName=myhub.example.net;DeviceId=dev-01;SharedAccessKey={KEY};"
        ))
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn struct_roundtrip_through_display() {
        let cs = ConnectionString {
            host_name: "h.example".into(),
            device_id: Some("d".into()),
            module_id: Some("m".into()),
            shared_access_key: Some(KEY.into()),
            shared_access_key_name: Some("p".into()),
            shared_access_signature: Some("SharedAccessSignature sr=a&sig=AA==&se=1".into()),
            gateway_host_name: Some("gw".into()),
            x509: true,
        };
        assert_eq!(ConnectionString::parse(&cs.to_string()).unwrap(), cs);
    }

    #[test]
    fn errors() {
        assert_eq!(ConnectionString::parse(""), Err(E::Empty));
        assert_eq!(ConnectionString::parse(" ;"), Err(E::Missing("HostName")));
        assert_eq!(
            ConnectionString::parse("DeviceId=d;SharedAccessKey=k"),
            Err(E::Missing("HostName"))
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;ModuleId=m;SharedAccessKey=k"),
            Err(E::Missing("DeviceId"))
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;Foo=bar"),
            Err(E::UnknownKey("Foo".into()))
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;deviceid=d"),
            Err(E::UnknownKey("deviceid".into()))
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;HostName=g"),
            Err(E::Duplicate("HostName"))
        );
        assert_eq!(
            ConnectionString::parse("HostName=;DeviceId=d"),
            Err(E::EmptyValue("HostName"))
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;DeviceId=d;x509=yes"),
            Err(E::InvalidValue {
                key: "x509",
                value: "yes".into()
            })
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;DeviceId=d;x509="),
            Err(E::InvalidValue {
                key: "x509",
                value: String::new()
            })
        );
        assert_eq!(
            ConnectionString::parse("HostName=h;garbage"),
            Err(E::Malformed("garbage".into()))
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            E::UnknownKey("deviceid".into()).to_string(),
            "unknown connection string key 'deviceid': did you mean 'DeviceId'? (keys are case-sensitive)"
        );
        let m = E::UnknownKey("Foo".into()).to_string();
        assert!(m.contains("valid keys are HostName, DeviceId"), "{m}");
        assert_eq!(
            E::Missing("HostName").to_string(),
            "connection string is missing HostName=..."
        );
        assert!(E::Empty.to_string().contains("HostName=myhub.example.net"));
        // Long unparseable parts (possibly secrets) are shortened.
        let long = "x".repeat(100);
        match ConnectionString::parse(&format!("HostName=h;{long}")) {
            Err(E::Malformed(p)) => assert!(p.chars().count() <= 25, "{p}"),
            other => panic!("{other:?}"),
        }
    }
}

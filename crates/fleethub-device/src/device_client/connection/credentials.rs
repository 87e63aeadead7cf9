//! Credentials from a device connection string.

use fleethub_core::connection_string::ConnectionString;

use super::super::{DeviceError, Ids};

/// How the client authenticates.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// A device/module key: a fresh token per connection.
    Key(String),
    /// A fixed token from the connection string (`SharedAccessSignature=`).
    Token(String),
}

impl Credentials {
    pub(crate) fn renewable(&self) -> bool {
        matches!(self, Credentials::Key(_))
    }
}

pub(crate) fn identity_from_connection_string(
    cs: ConnectionString,
) -> Result<(Ids, Credentials), DeviceError> {
    if cs.x509 {
        return Err(DeviceError::Config(
            "x509=true: X.509 authentication is not supported by this client; use a symmetric key"
                .into(),
        ));
    }
    if let Some(name) = &cs.shared_access_key_name {
        return Err(DeviceError::Config(format!(
            "this is a service connection string (SharedAccessKeyName={name}); \
             a device needs HostName=..;DeviceId=..;SharedAccessKey=.."
        )));
    }
    let device_id = cs
        .device_id
        .ok_or_else(|| DeviceError::Config("the connection string has no DeviceId".into()))?;
    let credentials = match (cs.shared_access_key, cs.shared_access_signature) {
        (Some(key), _) => {
            fleethub_core::keys::decode_key(&key)?;
            Credentials::Key(key)
        }
        (None, Some(sas)) => Credentials::Token(sas),
        (None, None) => {
            return Err(DeviceError::Config(
                "the connection string has neither SharedAccessKey nor SharedAccessSignature"
                    .into(),
            ));
        }
    };
    Ok((
        Ids {
            host: cs.host_name,
            device_id,
            module_id: cs.module_id,
            gateway: cs.gateway_host_name,
        },
        credentials,
    ))
}

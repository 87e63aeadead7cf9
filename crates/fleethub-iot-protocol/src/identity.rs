//! Who connects: MQTT CONNECT user names and client IDs, and the SAS resource URIs their
//! tokens cover (`docs/protocol-notes.md`, "Hub MQTT user names and client ids" and "SAS tokens").

use crate::encoding::encode_component;

/// `skn` of DPS device SAS tokens.
pub const DPS_SAS_KEY_NAME: &str = "registration";

/// What a CONNECT user name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    /// `{idScope}/registrations/{registrationId}/api-version=...`
    Dps {
        id_scope: String,
        registration_id: String,
    },
    /// `{hubHost}/{deviceId}[/{moduleId}]/?api-version=...`
    Hub {
        host: String,
        device_id: String,
        module_id: Option<String>,
    },
}

/// Reads a CONNECT user name; `None` when it is neither a DPS nor a hub user name.
pub fn parse_username(username: &str) -> Option<ConnectTarget> {
    let parts: Vec<&str> = username.split('/').collect();
    if parts.len() >= 3
        && parts[1] == "registrations"
        && !parts[0].is_empty()
        && !parts[2].is_empty()
    {
        return Some(ConnectTarget::Dps {
            id_scope: parts[0].to_string(),
            registration_id: parts[2].to_string(),
        });
    }
    // hub: cut the query part ("/?api-version=..."). Device and module IDs may contain '?',
    // so a "/?" that starts the api-version wins over an earlier one (module ID "?x").
    let query = username
        .match_indices("/?")
        .find(|(i, _)| username[i + 2..].starts_with("api-version="))
        .or_else(|| username.match_indices("/?").next())
        .map(|(i, _)| i);
    let path = match query {
        Some(i) => &username[..i],
        None => username.trim_end_matches('/'),
    };
    let p: Vec<&str> = path.split('/').collect();
    match p.as_slice() {
        [host, dev] if !host.is_empty() && !dev.is_empty() => Some(ConnectTarget::Hub {
            host: host.to_string(),
            device_id: dev.to_string(),
            module_id: None,
        }),
        [host, dev, module] if !host.is_empty() && !dev.is_empty() && !module.is_empty() => {
            Some(ConnectTarget::Hub {
                host: host.to_string(),
                device_id: dev.to_string(),
                module_id: Some(module.to_string()),
            })
        }
        _ => None,
    }
}

/// DPS CONNECT user name:
/// `{idScope}/registrations/{regId}/api-version={v}&ClientVersion={client, encoded}`.
pub fn dps_username(
    id_scope: &str,
    registration_id: &str,
    api_version: &str,
    client_version: &str,
) -> String {
    format!(
        "{id_scope}/registrations/{registration_id}/api-version={api_version}&ClientVersion={}",
        encode_component(client_version)
    )
}

/// Hub CONNECT user name:
/// `{host}/{deviceId}[/{moduleId}]/?api-version={v}[&DeviceClientType={client, encoded}]`.
pub fn hub_username(
    host: &str,
    device_id: &str,
    module_id: Option<&str>,
    api_version: &str,
    client_type: Option<&str>,
) -> String {
    let mut u = format!(
        "{host}/{}/?api-version={api_version}",
        client_id(device_id, module_id)
    );
    if let Some(c) = client_type {
        u.push_str("&DeviceClientType=");
        u.push_str(&encode_component(c));
    }
    u
}

/// Hub MQTT client ID: `{deviceId}` or `{deviceId}/{moduleId}`.
pub fn client_id(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{device_id}/{m}"),
        None => device_id.to_string(),
    }
}

/// SAS `sr` (before encoding) of a DPS registration: `{idScope}/registrations/{regId}`.
pub fn dps_sas_resource(id_scope: &str, registration_id: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}")
}

/// SAS `sr` (before encoding) of a hub identity: `{host}/devices/{deviceId}[/modules/{moduleId}]`.
pub fn hub_sas_resource(host: &str, device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{host}/devices/{device_id}/modules/{m}"),
        None => format!("{host}/devices/{device_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_of_every_sdk() {
        let py = "0ne00000A0A/registrations/dev-01/api-version=2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%28x%29";
        assert_eq!(
            parse_username(py),
            Some(ConnectTarget::Dps {
                id_scope: "0ne00000A0A".into(),
                registration_id: "dev-01".into()
            })
        );
        let c = "0ne00000A0A/registrations/dev-01/api-version=2021-06-01&ClientVersion=1.15.0";
        assert!(matches!(parse_username(c), Some(ConnectTarget::Dps { .. })));
        let hub = "hub.fleethub.local/dev-01/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0";
        assert_eq!(
            parse_username(hub),
            Some(ConnectTarget::Hub {
                host: "hub.fleethub.local".into(),
                device_id: "dev-01".into(),
                module_id: None
            })
        );
        let module = "hub.fleethub.local/dev-01/$edgeAgent/?api-version=2021-04-12";
        assert_eq!(
            parse_username(module),
            Some(ConnectTarget::Hub {
                host: "hub.fleethub.local".into(),
                device_id: "dev-01".into(),
                module_id: Some("$edgeAgent".into())
            })
        );
        assert_eq!(parse_username("garbage"), None);
        assert_eq!(parse_username(""), None);
    }

    /// Found by `tests/fuzz_protocol.rs`: IDs may contain '?', and a module ID that starts
    /// with one made the user name name the device instead.
    #[test]
    fn ids_with_question_marks() {
        assert_eq!(
            parse_username("h/d/?m/?api-version=2021-04-12"),
            Some(ConnectTarget::Hub {
                host: "h".into(),
                device_id: "d".into(),
                module_id: Some("?m".into())
            })
        );
        assert_eq!(
            parse_username("h/d?/?api-version=2021-04-12&DeviceClientType=x"),
            Some(ConnectTarget::Hub {
                host: "h".into(),
                device_id: "d?".into(),
                module_id: None
            })
        );
        // Without api-version the first "/?" still ends the path.
        assert_eq!(
            parse_username("h/d/?x=1"),
            Some(ConnectTarget::Hub {
                host: "h".into(),
                device_id: "d".into(),
                module_id: None
            })
        );
    }

    #[test]
    fn connect_names() {
        assert_eq!(
            hub_username(
                "hub.fleethub.local",
                "dev-01",
                None,
                "2021-04-12",
                Some("fleethub-device/0.1.0")
            ),
            "hub.fleethub.local/dev-01/?api-version=2021-04-12&DeviceClientType=fleethub-device%2F0.1.0"
        );
        assert_eq!(
            hub_username("h", "d", Some("m"), "2021-04-12", Some("x/1")),
            "h/d/m/?api-version=2021-04-12&DeviceClientType=x%2F1"
        );
        assert_eq!(
            hub_username("hub.test", "d1", None, "2021-04-12", None),
            "hub.test/d1/?api-version=2021-04-12"
        );
        assert_eq!(
            dps_username(
                "0ne00000A0A",
                "dev-01",
                "2019-03-31",
                "fleethub-device/0.1.0"
            ),
            "0ne00000A0A/registrations/dev-01/api-version=2019-03-31&ClientVersion=fleethub-device%2F0.1.0"
        );
        assert_eq!(client_id("d", None), "d");
        assert_eq!(client_id("d", Some("m")), "d/m");
        assert_eq!(hub_sas_resource("h", "d", None), "h/devices/d");
        assert_eq!(
            hub_sas_resource("h", "d", Some("m")),
            "h/devices/d/modules/m"
        );
        assert_eq!(
            dps_sas_resource("0ne1", "dev-01"),
            "0ne1/registrations/dev-01"
        );
        // What we build, we read back.
        assert_eq!(
            parse_username(&hub_username("h", "d", Some("$edgeHub"), "v", Some("c"))),
            Some(ConnectTarget::Hub {
                host: "h".into(),
                device_id: "d".into(),
                module_id: Some("$edgeHub".into())
            })
        );
    }
}

//! Device-plane link addresses (see `docs/protocol-notes.md`, "AMQP device links"):
//! `/devices/{d}[/modules/{m}]/messages/events` (telemetry), `/devices/{d}/messages/devicebound`
//! (cloud-to-device), `/devices/{d}[/modules/{m}]/twin` and
//! `/devices/{d}[/modules/{m}]/methods/devicebound`, bare, rooted or as `amqps://{host}/...`
//! URLs; keywords compare case-insensitively, identities exactly (percent-decoded).

use crate::addresses::path_of;

/// Which device-plane node a link names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceLink {
    /// `messages/events`: device-to-cloud telemetry (the client sends).
    Telemetry,
    /// `messages/devicebound`: cloud-to-device messages (the client receives).
    C2d,
    /// `twin`: twin requests (client sends) and replies and desired patches (client receives).
    Twin,
    /// `methods/devicebound`: method requests (client receives) and responses (client sends).
    Methods,
}

/// A device-plane address: whose, and which node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAddress {
    pub device_id: String,
    pub module_id: Option<String>,
    pub link: DeviceLink,
}

impl DeviceAddress {
    /// `d` or `d/m`: the identity whose grant the link needs.
    pub fn identity(&self) -> String {
        identity(&self.device_id, self.module_id.as_deref())
    }
}

/// `d` or `d/m`.
pub fn identity(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{device_id}/{m}"),
        None => device_id.to_string(),
    }
}

/// Parses a device-plane address; `None` for anything else.
pub fn parse(address: &str) -> Option<DeviceAddress> {
    let path = path_of(address).trim_end_matches('/');
    let rest = strip_keyword(path, "devices/")?;
    let (device, rest) = rest.split_once('/')?;
    let (module, rest) = match strip_keyword(rest, "modules/") {
        Some(after) => {
            let (m, rest) = after.split_once('/')?;
            (Some(m), rest)
        }
        None => (None, rest),
    };
    let link = match rest.to_ascii_lowercase().as_str() {
        "messages/events" => DeviceLink::Telemetry,
        "messages/devicebound" => DeviceLink::C2d,
        "twin" => DeviceLink::Twin,
        "methods/devicebound" => DeviceLink::Methods,
        _ => return None,
    };
    if device.is_empty() || module.is_some_and(str::is_empty) {
        return None;
    }
    Some(DeviceAddress {
        device_id: percent_decode(device),
        module_id: module.map(percent_decode),
        link,
    })
}

/// The identity a device-plane SAS resource or CBS audience names: `{host}/devices/{d}` or
/// `{host}/devices/{d}/modules/{m}` (percent-encoded or not, with or without a scheme);
/// `None` for any other resource.
pub fn identity_of_resource(resource: &str) -> Option<(String, Option<String>)> {
    let decoded = percent_decode(resource);
    let path = match decoded.find("://") {
        Some(i) => &decoded[i + 3..],
        None => decoded.as_str(),
    };
    let (_host, rest) = path.split_once('/')?;
    let rest = strip_keyword(rest.trim_end_matches('/'), "devices/")?;
    match rest.split_once('/') {
        None if !rest.is_empty() => Some((rest.to_string(), None)),
        Some((d, after)) => {
            let m = strip_keyword(after, "modules/")?;
            (!d.is_empty() && !m.is_empty() && !m.contains('/'))
                .then(|| (d.to_string(), Some(m.to_string())))
        }
        None => None,
    }
}

fn strip_keyword<'a>(s: &'a str, keyword: &str) -> Option<&'a str> {
    let head = s.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &s[keyword.len()..])
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)]
    fn addr(d: &str, m: Option<&str>, link: DeviceLink) -> Option<DeviceAddress> {
        Some(DeviceAddress {
            device_id: d.into(),
            module_id: m.map(str::to_string),
            link,
        })
    }

    #[test]
    fn device_links() {
        assert_eq!(
            parse("/devices/d1/messages/events"),
            addr("d1", None, DeviceLink::Telemetry)
        );
        assert_eq!(
            parse("amqps://h.example/devices/d1/modules/m1/messages/events"),
            addr("d1", Some("m1"), DeviceLink::Telemetry)
        );
        assert_eq!(
            parse("/devices/d1/messages/deviceBound"),
            addr("d1", None, DeviceLink::C2d)
        );
        assert_eq!(
            parse("/devices/d1/modules/m1/twin"),
            addr("d1", Some("m1"), DeviceLink::Twin)
        );
        assert_eq!(
            parse("devices/d%3A1/methods/devicebound/"),
            addr("d:1", None, DeviceLink::Methods)
        );
        assert_eq!(parse("/devices/d1/files"), None);
        assert_eq!(parse("/devices//twin"), None);
        assert_eq!(parse("/messages/devicebound"), None);
        assert_eq!(parse("$cbs"), None);
        assert_eq!(
            parse("/devices/d1/messages/events").unwrap().identity(),
            "d1"
        );
        assert_eq!(
            parse("/devices/d1/modules/m1/twin").unwrap().identity(),
            "d1/m1"
        );
    }

    #[test]
    fn resources() {
        assert_eq!(
            identity_of_resource("h.example/devices/d1"),
            Some(("d1".into(), None))
        );
        assert_eq!(
            identity_of_resource("h.example%2Fdevices%2Fd1%2Fmodules%2Fm1"),
            Some(("d1".into(), Some("m1".into())))
        );
        assert_eq!(
            identity_of_resource("amqps://h.example/devices/d1/"),
            Some(("d1".into(), None))
        );
        assert_eq!(identity_of_resource("h.example"), None);
        assert_eq!(identity_of_resource("sb://h.example/hub"), None);
        assert_eq!(identity_of_resource("h.example/devices/d1/twin"), None);
        assert_eq!(identity_of_resource("h.example/messages/devicebound"), None);
    }
}
